"""Train the diffusion transformer (and the built-in text encoder with it) on frozen-VAE latents.

Per micro-batch: encode each native-size clip with the frozen VAE (or read its latent from a
latent dataset, ``data.source: latents``, encoded once), pack the latents into one
sequence (no padding), draw a time per sample (logit-normal, shifted by token count), a
known-frame mask per sample (so one model learns every conditioning mode), drop captions for
classifier-free guidance, and regress the rectified-flow velocity on the unknown tokens.

Fine-tuning: ``init_from`` a model directory (``vae/``, ``dit/``, ``text/``,
``model_index.json``) and train it all, or only LoRA adapters (``lora.rank > 0``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kinetoscope.config import Config
from kinetoscope.data.batching import latent_tokens
from kinetoscope.data.datasets import VideoSample, WorldSource, collate_videos, group_by_shape
from kinetoscope.data.latents import LatentSample, LatentSource, foreground_cells
from kinetoscope.errors import ConfigError
from kinetoscope.files import atomic_write_json
from kinetoscope.model_dir import INHERITED, hf_text_encoder_dir, read_index, save_model_dir
from kinetoscope.train.data import shape_rule, video_source
from kinetoscope.train.distributed import barrier
from kinetoscope.train.lora import LoRAConfig, apply_lora, lora_state_dict, merge_lora
from kinetoscope.train.tasks.base import LossOutput, OptimizerSpec, StepContext, Task

TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass
class DiTTaskConfig(Config):
    #: ``DiTConfig`` preset and field overrides (``in_channels`` and ``text_dim`` follow the VAE and text encoder).
    #: A fine-tune (``init_from``) keeps its source's shape; a greater ``depth`` grows it by blocks
    #: that start as no-ops, a finer ``patch_size`` refines its tokens (:mod:`kinetoscope.dit.growth`),
    #: so training goes on from what it learned.
    preset: str = "tiny"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The frozen VAE: a saved ``CausalVAE`` directory (default: ``init_from``'s ``vae/``).
    vae: str | None = None
    #: A model directory to fine-tune (``vae/``, ``dit/``, ``text/``).
    init_from: str | None = None
    #: A local Hugging Face encoder directory (T5, UMT5, CLIP text), frozen; None trains the built-in one.
    text_encoder: str | None = None
    text_preset: str = "tiny"
    text: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Captions read from the data to train the built-in tokenizer before the run.
    tokenizer_captions: int = 1000
    #: ``FlowConfig`` fields: time sampling, shift, text dropout, condition-mask probabilities
    #: (over ``init_from``'s own, which a fine-tune starts from: an imported Wan keeps its shift).
    flow: dict[str, Any] = dataclasses.field(default_factory=dict)
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    #: Periodic samples: prompts, shape (frames, height, width), sampler steps and guidance.
    sample_prompts: tuple[str, ...] = ("a red ball bounces",)
    sample_shape: tuple[int, int, int] = (17, 64, 64)
    sample_steps: int = 20
    sample_guidance: float = 1.0
    sample_seed: int = 0
    #: Keep up to this many encoded latents in memory, keyed by the sample's source and shape. With a
    #: finite manifest the frozen VAE then encodes each clip once rather than once per epoch (on a
    #: CPU the encode costs more than the transformer's step). 0 turns the cache off.
    latent_cache: int = 0
    #: Loss weight of the tokens over pixels unlike the clip's background, against 1 for the rest.
    #: Small objects on a plain background are a few tokens of many, so weighing them up puts
    #: the loss on them; but the weight depends on the target, so the model learns a world with
    #: more objects in it than there are (at 10 it drew the named object twice in most clips).
    foreground_weight: float = 1.0


class DiTTask(Task):
    config_class = DiTTaskConfig

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from kinetoscope.flow import FlowConfig

        flow = FlowConfig.from_dict(self._init_index.get("flow", {}))
        if self._source_dit is not None:  # a patch refined to 1/r makes r times the tokens: keep each clip's shift
            r = math.prod(self._source_dit.patch_size) // math.prod(self._patch)
            flow = flow.replace(base_tokens=flow.base_tokens * r, max_tokens=flow.max_tokens * r)
        self.flow = FlowConfig.from_dict({**flow.to_dict(), **self.options.flow})
        self.vae = None
        self.hf_text = None
        self.hf_path: Path | None = None
        self.tokenizer = None
        self._latent_cache: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        self._latent_source: LatentSource | None = None

    # ------------------------------------------------------------------ set-up
    @functools.cached_property
    def _init_index(self) -> dict[str, Any]:
        """``init_from``'s model index (flow settings, a HF encoder, what a fine-tune inherits); {} from scratch."""
        return read_index(self.options.init_from) if self.options.init_from else {}

    @functools.cached_property
    def _source_dit(self):
        """``init_from``'s transformer config; None from scratch."""
        from kinetoscope.dit import DiTConfig

        init_from = self.options.init_from
        return DiTConfig.load_json(Path(init_from) / "dit" / "config.json") if init_from else None

    @functools.cached_property
    def _tuned_dit(self):
        """The transformer config a fine-tune trains (``init_from``'s, deeper or finer as asked); None from scratch."""
        from kinetoscope.dit.growth import grown_config

        return None if self._source_dit is None else grown_config(self._source_dit, self.options.model)

    def prepare(self) -> None:
        """Load the frozen VAE and the text side (a frozen HF encoder, or a tokenizer for the built-in one)."""
        from kinetoscope.vae import CausalVAE

        o = self.options
        vae_dir = o.vae or (o.init_from and str(Path(o.init_from) / "vae"))
        if not vae_dir:
            raise ConfigError(
                "The dit task needs a trained VAE: set task.vae=DIR (a saved CausalVAE) or task.init_from."
            )
        self.vae = CausalVAE.from_pretrained(vae_dir, device=self.info.device).requires_grad_(False)
        if self.train.data.source == "latents":
            self._check_latent_vae(Path(vae_dir))
        if o.lora.rank > 0 and not o.init_from:
            raise ConfigError("LoRA (task.lora.rank > 0) fine-tunes a trained model: set task.init_from=MODEL_DIR.")
        if self.options.model.get("patch_size", (1,))[0] != 1:
            raise ConfigError("Training supports patch_size[0] = 1 (one latent frame per token) only.")
        hf_path = o.text_encoder or (o.init_from and hf_text_encoder_dir(o.init_from, self._init_index))
        if hf_path:
            from kinetoscope.text import HFTextEncoder

            self.hf_text = HFTextEncoder(hf_path, device=self.info.device)
            self.hf_path = Path(hf_path).resolve()
        elif o.init_from:
            from kinetoscope.text import CaptionTokenizer

            self.tokenizer = CaptionTokenizer.load(Path(o.init_from) / "text" / TOKENIZER_FILE)
        else:
            self.tokenizer = self._train_tokenizer()

    def _check_latent_vae(self, vae_dir: Path) -> None:
        from kinetoscope.data.latents import vae_digest

        source, _ = self.data()
        made_by = source.dataset.vae.get("digest")
        if made_by != vae_digest(vae_dir):
            raise ConfigError(
                f"The latent dataset {self.train.data.latents} was encoded by another VAE than {vae_dir} "
                f"(digest {made_by}); set task.vae to the VAE that encoded it, or encode the data again."
            )

    def _train_tokenizer(self):
        """Train the caption tokenizer once (rank 0), save it in the run directory, load it everywhere."""
        from kinetoscope.text import CaptionTokenizer, TextEncoderConfig

        path = self.run_dir / TOKENIZER_FILE
        if self.info.is_main and not path.is_file():  # a resumed run keeps the tokenizer it started with
            vocab = TextEncoderConfig.from_preset(self.options.text_preset, **self.options.text).vocab_size
            CaptionTokenizer.train(self._captions(), vocab_size=vocab).save(path)
        barrier(self.info)
        return CaptionTokenizer.load(path)

    def _captions(self) -> list[str]:
        source, _ = self.data()
        n = self.options.tokenizer_captions
        if isinstance(source, (WorldSource, LatentSource)):
            return source.captions(n)
        return [e.caption for e in source.entries[:n]]

    def _text_config(self):
        from kinetoscope.text import TextEncoderConfig

        return TextEncoderConfig.from_preset(self.options.text_preset, **self.options.text)

    def build_models(self) -> dict[str, nn.Module]:
        from kinetoscope.dit import DiT, DiTConfig
        from kinetoscope.dit.growth import add_frame_position, deepen, refine_patch
        from kinetoscope.text import TextEncoder

        o = self.options
        models: dict[str, nn.Module] = {}
        if o.init_from:
            dit = DiT.from_pretrained(Path(o.init_from) / "dit").train()
            wanted = self._tuned_dit
            if wanted.patch_size != dit.config.patch_size:
                dit = refine_patch(dit, wanted.patch_size)
            if wanted.depth > dit.config.depth:
                dit = deepen(dit, wanted.depth)
            if wanted.frame_position and not dit.config.frame_position:
                dit = add_frame_position(dit)
        else:
            text_dim = self.hf_text.dim if self.hf_text is not None else self._text_config().width
            config = DiTConfig.from_preset(
                o.preset, **{"in_channels": self.vae.latent_channels, "text_dim": text_dim, **o.model}
            )
            dit = DiT(config)
        if o.lora.rank > 0:
            apply_lora(dit, o.lora)
        models["dit"] = dit
        if self.hf_text is None:
            if o.init_from:
                text = TextEncoder.from_pretrained(Path(o.init_from) / "text").train()
            else:
                text = TextEncoder(self._text_config(), self.tokenizer)
            if o.lora.rank > 0:
                text.requires_grad_(False)  # LoRA adapts the transformer only
            models["text"] = text
        return models

    def optimizers(self, models: dict[str, nn.Module]) -> dict[str, OptimizerSpec]:
        return {"main": OptimizerSpec(tuple(models))}

    def blocks(self, name: str, module: nn.Module) -> list[nn.Module]:
        if name == "text":
            return list(module.layers.layers)
        return super().blocks(name, module)

    @functools.cached_property
    def _patch(self) -> tuple[int, int, int]:
        from kinetoscope.dit import DiTConfig

        if self._tuned_dit is not None:
            return self._tuned_dit.patch_size
        return DiTConfig.from_preset(self.options.preset, **self.options.model).patch_size

    def data(self):
        patch = self._patch
        if self.train.data.source == "latents":
            if not self.train.data.latents:
                raise ConfigError("data.source is latents but data.latents names no directory; set data.latents=DIR.")
            if self._latent_source is None:  # read the index once
                self._latent_source = LatentSource(self.train.data.latents, self.train.seed, patch)
            return self._latent_source, collate_videos
        sc, tc = self.vae.spatial_compression, self.vae.temporal_compression
        shape = shape_rule(self.train, sc * max(patch[1], patch[2]), tc)
        cost = functools.partial(latent_tokens, spatial=sc, temporal=tc, patch=patch)
        return video_source(self.train, shape, cost), collate_videos

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _latents(self, batch: list[VideoSample], device: torch.device) -> list[torch.Tensor]:
        """Normalised posterior-mean latents, one ``(C, t, h, w)`` per sample, encoded shape group by shape
        group; samples already in the latent cache are not encoded again."""
        keys = [(sample.source, tuple(sample.pixels.shape)) for sample in batch]
        found = {key: self._latent_cache[key] for key in keys if key in self._latent_cache}
        missing = {key: sample for key, sample in zip(keys, batch) if key not in found}  # each clip once
        for pixels, indices in group_by_shape(list(missing.values())):
            z = self.vae.encode(pixels.to(device, non_blocking=True))
            for key, zi in zip([list(missing)[i] for i in indices], z):
                found[key] = zi
                if len(self._latent_cache) < self.options.latent_cache:
                    self._latent_cache[key] = zi
        return [found[key] for key in keys]

    def _latents_and_foreground(
        self, batch: list[VideoSample | LatentSample], device: torch.device
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Each sample's latent, and (when foreground tokens are weighted) its foreground cells."""
        weighted = self.options.foreground_weight != 1.0
        if all(isinstance(s, LatentSample) for s in batch):
            return [s.latent.to(device) for s in batch], ([s.foreground for s in batch] if weighted else None)
        latents = self._latents(batch, device)
        if not weighted:
            return latents, None
        sc, tc = self.vae.spatial_compression, self.vae.temporal_compression
        return latents, [foreground_cells(s.pixels, sc, tc) for s in batch]

    def _text(self, models: dict[str, nn.Module], prompts: list[str], device: torch.device):
        if self.hf_text is not None:
            return self.hf_text.encode(prompts)
        ids, mask = self.tokenizer.encode(prompts, self._text_max_length(models))
        ids, mask = ids.to(device), mask.to(device)
        return models["text"](ids, mask), mask  # through the (possibly wrapped) module's forward

    def _text_max_length(self, models: dict[str, nn.Module]) -> int:
        text = models["text"]
        return getattr(text, "module", text).config.max_length

    def loss(self, models: dict[str, nn.Module], batch: list[VideoSample], ctx: StepContext) -> LossOutput:
        from kinetoscope.dit import pack
        from kinetoscope.flow import (
            add_noise,
            draw_condition_mask,
            drop_text,
            flow_loss,
            sample_time,
            shift,
            shift_for_tokens,
        )

        g, device = ctx.generator, ctx.device
        latents, foreground = self._latents_and_foreground(batch, device)
        packed = pack(latents, self._patch)
        n = len(batch)
        shifts = torch.tensor([shift_for_tokens(s, self.flow) for s in packed.seq_lens])
        t_sample = shift(sample_time(n, g, self.flow.logit_mean, self.flow.logit_std), shifts)
        known = packed.frames_to_tokens([draw_condition_mask(grid[0], g, self.flow) for grid in packed.grids])
        t = packed.per_sample(t_sample.to(device)).masked_fill(known, 0.0)  # given frames sit at t = 0
        noise = torch.randn(packed.tokens.shape, generator=g).to(device, packed.tokens.dtype)
        x_t, target = add_noise(packed.tokens, noise, t)
        prompts = drop_text([s.caption for s in batch], self.flow.text_dropout, g)
        text, text_mask = self._text(models, prompts, device)
        velocity = models["dit"](packed.with_tokens(x_t), t, text, text_mask)
        weight = None
        if foreground is not None:
            weight = 1.0 + (self.options.foreground_weight - 1.0) * packed.cells_to_tokens(foreground).float()
        loss = flow_loss(velocity, target, loss_mask=~known, weight=weight)
        metrics = {"known_frac": float(known.float().mean()), "tokens_per_batch": float(len(t))}
        return LossOutput({"main": loss}, metrics, tokens=len(t))

    # ------------------------------------------------------------------ samples and export
    def sample(self, models: dict[str, nn.Module], step: int, out_dir: Path) -> list[Path]:
        """The configured prompts through :class:`~kinetoscope.pipeline.Pipeline`, as a user would run
        the model (expanded, guided, watermarked), written as mp4."""
        from kinetoscope.pipeline import Pipeline

        o = self.options
        text = self.hf_text if self.hf_text is not None else models["text"]
        expand = self._init_index.get("expand_prompts", True)
        pipe = Pipeline(self.vae, models["dit"], text, self.flow, self.run_dir.name, expand_prompts=expand)
        frames, height, width = o.sample_shape
        return [
            pipe(
                prompt, width=width, height=height, num_frames=frames, fps=self.train.data.world.fps,
                steps=o.sample_steps, guidance=o.sample_guidance, seed=o.sample_seed + i,
            ).save(out_dir / f"step_{step:08d}_{i}.mp4")
            for i, prompt in enumerate(o.sample_prompts)
        ]  # fmt: skip

    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        """``vae/``, ``dit/`` (LoRA merged in, adapters also in ``lora/``), ``text/`` and ``model_index.json``."""
        from safetensors.torch import save_file

        dit = models["dit"]
        extra = {k: v for k, v in self._init_index.items() if k in INHERITED}
        if self.options.lora.rank > 0:
            adapters = out_dir / "lora"
            adapters.mkdir(parents=True, exist_ok=True)
            save_file(lora_state_dict(dit), str(adapters / "adapter.safetensors"))
            atomic_write_json(adapters / "adapter_config.json", self.options.lora.to_dict())
            merge_lora(dit)
            extra["lora"] = "lora"
        save_model_dir(
            out_dir, vae=self.vae, dit=dit, flow=self.flow.to_dict(), name=self.run_dir.name,
            text=models.get("text"), hf_text_encoder=self.hf_path if self.hf_text is not None else None, extra=extra,
        )  # fmt: skip


TASK = DiTTask
