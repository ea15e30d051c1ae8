"""Wan2.1 checkpoints in diffusers' layout: import them as kinetoscope model directories, and
export kinetoscope's transformer (and its LoRA adapters) back to diffusers.

diffusers is needed for the conversion only (``pip install 'kinetoscope[wan]'``); a converted
model directory loads and runs without it. See docs/wan.md.
"""

from kinetoscope.wan.checkpoint import export_wan, import_wan
from kinetoscope.wan.transformer import load_dit, save_transformer
from kinetoscope.wan.vae import load_vae

__all__ = ["export_wan", "import_wan", "load_dit", "load_vae", "save_transformer"]
