"""Generation: ``Pipeline.from_pretrained(model_dir)`` and one call for every mode of the Sora report.

Text to video and to image, image to video (the image at any frame), extension forwards and
backwards, loops, editing (SDEdit) and upscaling a preview, and connecting two videos are one
sampler (:func:`kinetoscope.flow.sample`) with different known latents, ties and starting
latents; :mod:`kinetoscope.pipeline.plan` holds each mode's few lines.
"""

from kinetoscope.pipeline.core import GenerationResult, Pipeline
from kinetoscope.pipeline.limits import Limits

__all__ = ["GenerationResult", "Limits", "Pipeline"]
