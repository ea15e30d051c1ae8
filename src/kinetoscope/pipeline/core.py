"""``Pipeline``: a model directory loaded once, and one call that makes every mode.

``pipe(prompt, ...)`` checks everything it was given before computing anything, runs the
prompt policy, expands the prompt, plans the mode (:mod:`kinetoscope.pipeline.plan`), samples
the clip's latents with :func:`kinetoscope.flow.sample` (known latents, a tie for loops, or an
SDEdit start), decodes them with the VAE (in tiles when frames are large), pastes the given
frames back, and watermarks every frame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinetoscope.dit import DiT, PackedBatch, pack
from kinetoscope.errors import CheckpointError, InvalidInputError
from kinetoscope.flow import FlowConfig, sample, sampling_shift
from kinetoscope.io import Video, frames_to_tensor, write_image, write_video
from kinetoscope.pipeline import plan as plans
from kinetoscope.pipeline.limits import Limits, nearest_multiple
from kinetoscope.pipeline.media import Media, load_video
from kinetoscope.pipeline.request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    EDIT_STRENGTH,
    UPSCALE_STRENGTH,
    Job,
    Request,
    plan_request,
)
from kinetoscope.vae import CausalVAE
from kinetoscope.vae.model import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class GenerationResult:
    """What one call made: uint8 ``frames (T, H, W, 3)`` (watermarked), their ``fps``, the
    ``seed`` and ``prompt`` actually used, ``notes`` on anything adjusted, and the sampled clip's
    clean ``latents (C, t, h, w)``."""

    frames: np.ndarray
    fps: float
    seed: int
    prompt: str
    notes: list[str]
    latents: torch.Tensor

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.frames if dtype is None else self.frames.astype(dtype)

    def save(self, path: str | os.PathLike) -> Path:
        """Write by suffix: ``.mp4``, ``.gif``, ``.webp``, a folder (no suffix), or ``.png``/``.jpg`` for one frame."""
        path = Path(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if len(self.frames) != 1:
                raise InvalidInputError(
                    f"{path} is an image but the result has {len(self.frames)} frames; save it as .mp4, .gif, .webp "
                    "or a folder.",
                    param="path",
                )
            return write_image(path, self.frames[0])
        return write_video(path, self.frames, self.fps)


class Pipeline:
    """Text, image or video in; frames out. See :meth:`__call__` for the modes."""

    def __init__(
        self,
        vae: CausalVAE,
        dit: DiT,
        text_encoder: Any,
        flow: FlowConfig,
        model_id: str,
        expand_prompts: bool = True,
        guidance: float = DEFAULT_GUIDANCE,
    ):
        if dit.config.patch_size[0] != 1 or dit.config.in_channels != vae.latent_channels:
            raise CheckpointError(
                f"The DiT (patch {dit.config.patch_size}, {dit.config.in_channels} channels) does not fit the VAE "
                f"({vae.latent_channels} latent channels); generation needs a temporal patch of 1."
            )
        self.vae, self.dit, self.text_encoder, self.flow = vae, dit, text_encoder, flow
        self.model_id = model_id
        #: False for a model whose text encoder never read the world's captions (an imported Wan2.1):
        #: the expander would rewrite its prompts into them, so they go to it as written.
        self.expand_prompts = expand_prompts
        #: The guidance a call gets when it names none: the model's own, measured when it was bundled.
        self.guidance = guidance
        self.limits = Limits.for_model(vae.spatial_compression, vae.temporal_compression, dit.config.patch_size)
        #: VAE tiles for large frames (pixels): a 2048x2048 image decodes in 512-pixel tiles.
        self.tile_size, self.tile_overlap = DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
    ) -> Pipeline:
        """Load a model directory (:mod:`kinetoscope.model_dir`) onto ``device`` (``auto``: CUDA, MPS,
        else the CPU), every component in ``dtype``: float32 unless given (``"auto"`` picks the faster
        precision for the device, :mod:`kinetoscope.devices`; the command line's default)."""
        from kinetoscope.devices import resolve_device, resolve_dtype
        from kinetoscope.model_dir import hf_text_encoder_dir, model_guidance, model_id_for, read_index
        from kinetoscope.text import HFTextEncoder, TextEncoder

        device = resolve_device(device)
        dtype = torch.float32 if dtype is None else resolve_dtype(dtype, device)
        model_dir = Path(model_dir)
        index = read_index(model_dir)
        vae = CausalVAE.from_pretrained(model_dir / "vae", device=device, dtype=dtype).requires_grad_(False)
        dit = DiT.from_pretrained(model_dir / "dit", device=device, dtype=dtype).requires_grad_(False)
        hf_dir = hf_text_encoder_dir(model_dir, index)
        if hf_dir is not None:
            text = HFTextEncoder(hf_dir, device=device, dtype=dtype)
        else:
            text = TextEncoder.from_pretrained(model_dir / "text", device=device, dtype=dtype).requires_grad_(False)
        flow = FlowConfig.from_dict(index.get("flow", {}))
        return cls(
            vae, dit, text, flow, model_id_for(model_dir),
            expand_prompts=index.get("expand_prompts", True), guidance=model_guidance(model_dir, index, DEFAULT_GUIDANCE),
        )  # fmt: skip

    def save_pretrained(self, out_dir: str | os.PathLike, name: str | None = None) -> Path:
        """Write the model directory that :meth:`from_pretrained` loads; its model id is ``name``
        (default: the directory's name) and a digest of the transformer's weights."""
        from kinetoscope.model_dir import save_model_dir
        from kinetoscope.text import HFTextEncoder

        hf = self.text_encoder.path if isinstance(self.text_encoder, HFTextEncoder) else None
        extra = ({} if self.expand_prompts else {"expand_prompts": False}) | (
            {} if self.guidance == DEFAULT_GUIDANCE else {"guidance": self.guidance}
        )
        return save_model_dir(
            out_dir, vae=self.vae, dit=self.dit, flow=self.flow.to_dict(), name=name or Path(out_dir).name,
            text=None if hf else self.text_encoder, hf_text_encoder=hf, extra=extra or None,
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    # ------------------------------------------------------------------ the one call
    def __call__(
        self,
        prompt: str,
        negative_prompt: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        num_frames: int | None = None,
        seconds: float | None = None,
        fps: float | None = None,
        steps: int = DEFAULT_STEPS,
        guidance: float | None = None,
        guidance_rescale: float = 0.0,
        seed: int | None = None,
        expand: bool = True,
        image: Media | None = None,
        image_frame: int = 0,
        video: Media | None = None,
        direction: str | None = None,
        loop: bool = False,
        strength: float | None = None,
        video_b: Media | None = None,
        progress: Progress | None = None,
    ) -> GenerationResult:
        """Make frames; the mode follows from the inputs given.

        - nothing given: text to video (``num_frames=1``: an image);
        - ``image``: image to video with the image at ``image_frame`` (0, -1 = last, or any);
        - ``video`` (+ ``direction``, default forward): extension; ``seconds`` is the time
          added, or ``num_frames`` the whole output's length; the given frames stay as they were;
        - ``loop=True``: a clip whose last frame flows into its first, optionally starting
          with ``video``'s (or ``image``'s) frames;
        - ``video`` + ``strength``: edit (SDEdit; at another ``width``/``height``: upscale);
        - ``video`` + ``video_b``: a transition of ``seconds`` (or ``num_frames``) between them.

        ``seconds`` is otherwise the clip's duration, an alternative to ``num_frames``.
        Widths and heights off the model's grid are rounded (see ``notes``); durations are exact.
        ``guidance`` left out is the model's own (:attr:`guidance`). ``progress(step, total)`` is
        called after every sampling step.
        """
        guidance = self.guidance if guidance is None else guidance
        request = Request(**{k: v for k, v in locals().items() if k not in ("self", "progress")})
        request.check()
        job = plan_request(request, self.limits)
        used = self._expand(request, job)
        negative = negative_prompt or ""
        guidance = 1.0 if used == negative else guidance  # nothing to guide towards: one model call per step
        with torch.inference_mode():
            latents = self._sample(job, used, negative, request, guidance, progress)
            decoded = self._decode(latents)
        frames = _watermark(plans.output_frames(job.plan, decoded, job.notes), self.model_id)
        return GenerationResult(frames, job.fps, job.seed, used, job.notes, latents.cpu())

    # ------------------------------------------------------------------ modes by name
    def generate(self, prompt: str, **options: Any) -> GenerationResult:
        return self(prompt, **options)

    def image(self, prompt: str, **options: Any) -> GenerationResult:
        return self(prompt, num_frames=1, **options)

    def animate(self, image: Media, prompt: str, image_frame: int = 0, **options: Any) -> GenerationResult:
        return self(prompt, image=image, image_frame=image_frame, **options)

    def extend(self, video: Media, prompt: str, direction: str = "forward", **options: Any) -> GenerationResult:
        return self(prompt, video=video, direction=direction, **options)

    def loop(self, prompt: str, video: Media | None = None, **options: Any) -> GenerationResult:
        return self(prompt, video=video, loop=True, **options)

    def edit(self, video: Media, prompt: str, strength: float = EDIT_STRENGTH, **options: Any) -> GenerationResult:
        return self(prompt, video=video, strength=strength, **options)

    def connect(self, a: Media, b: Media, prompt: str, **options: Any) -> GenerationResult:
        return self(prompt, video=a, video_b=b, **options)

    def preview(self, prompt: str, **options: Any) -> GenerationResult:
        """Text to video at half the width and height with half the steps (at least 4): pick one, then :meth:`upscale`."""
        width, height = options.pop("width", None), options.pop("height", None)
        width, height = self.preview_size(width or self.limits.default_width, height or self.limits.default_height)
        steps = max(4, options.pop("steps", DEFAULT_STEPS) // 2)
        return self(prompt, width=width, height=height, steps=steps, **options)

    def preview_size(self, width: int, height: int) -> tuple[int, int]:
        multiple = self.limits.size_multiple
        return tuple(max(multiple, nearest_multiple(side / 2, multiple)) for side in (width, height))

    def upscale(
        self, preview: Media, prompt: str, strength: float = UPSCALE_STRENGTH, **options: Any
    ) -> GenerationResult:
        """SDEdit a preview at full size (default: twice the preview's width and height)."""
        frames, fps = load_video(preview, "video")
        limits = self.limits
        if options.get("width") is None:
            options["width"] = min(limits.max_width, 2 * frames.shape[2])
        if options.get("height") is None:
            options["height"] = min(limits.max_height, 2 * frames.shape[1])
        return self(prompt, video=Video(frames, fps or limits.default_fps), strength=strength, **options)

    def _expand(self, request: Request, job: Job) -> str:
        """The prompt as the model reads it: a caption in the training style, when ``expand`` and the model
        reads such captions (``expand_prompts``)."""
        if not (request.expand and self.expand_prompts) or not request.prompt.strip():
            return request.prompt
        from kinetoscope.language import expand_prompt

        frames = job.plan.window[1] - job.plan.window[0]
        return expand_prompt(
            request.prompt, job.seed, width=job.width, height=job.height, frames=frames, fps=job.fps
        ).caption

    # ------------------------------------------------------------------ sampling
    def _sample(
        self, job: Job, prompt: str, negative: str, request: Request, guidance: float, progress: Progress | None
    ) -> torch.Tensor:
        """The clip's clean latents ``(C, t, h, w)``: one run of the flow sampler."""
        plan, device = job.plan, self.device
        shape = self.vae.latent_shape(plan.frames, job.height, job.width)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(job.seed))
        batch = pack([noise.to(device)], self.dit.config.patch_size)
        known, known_mask, tied = self._conditions(plan, batch, shape)
        start = None if plan.source is None else pack([self._encode(plan.source)], batch.patch_size).tokens
        cond = self._velocity(batch, prompt)
        uncond = self._velocity(batch, negative) if guidance != 1 else None
        tokens = sample(
            cond,
            batch.tokens,
            request.steps,
            time_shift=sampling_shift(len(batch.tokens), self.flow),
            uncond_velocity=uncond,
            guidance=guidance,
            guidance_rescale=request.guidance_rescale,
            known=known,
            known_mask=known_mask,
            tied=tied,
            start=start,
            strength=plan.strength,
            callback=progress,
        )
        return batch.unpack(tokens)[0]

    def _conditions(
        self, plan: plans.Plan, batch: PackedBatch, shape: tuple[int, ...]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """Known latent tokens and their mask from the plan's segments, and the loop's tie."""
        tc = self.limits.frame_multiple
        latent_frames = shape[1]
        known = torch.zeros(shape, device=self.device)
        mask = torch.zeros(latent_frames, dtype=torch.bool)
        for segment in plan.segments:
            z = self._encode(segment.encoded(tc))
            at = segment.at // tc
            known[:, at : at + z.shape[1]] = z
            mask[at : at + z.shape[1]] = True
        tied = None
        if plan.loop and mask[0]:
            known[:, -1], mask[-1] = known[:, 0], True
        elif plan.loop:
            frame = batch.positions[:, 0]
            tied = ((frame == latent_frames - 1).nonzero()[:, 0], (frame == 0).nonzero()[:, 0])
        if not mask.any():
            return None, None, tied
        return pack([known], batch.patch_size).tokens, batch.frames_to_tokens([mask]), tied

    def _velocity(self, batch: PackedBatch, prompt: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        embeddings, mask = self.text_encoder.encode([prompt])
        dtype = self.dit.patch_embed.weight.dtype
        embeddings, mask = embeddings.to(self.device, dtype), mask.to(self.device)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.dit(batch.with_tokens(x.to(dtype)), t, embeddings, mask).float()

        return velocity

    def _encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` -> normalised latents ``(C, t, h, w)`` (posterior mean)."""
        x = frames_to_tensor(frames, device=self.device, dtype=self._vae_dtype)[None]
        return self.vae.encode(x, tile_size=self.tile_size, tile_overlap=self.tile_overlap)[0].float()

    @property
    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents -> float frames ``(T, H, W, 3)`` in 0..255, in VAE tiles when frames are large."""
        z = latents[None].to(self._vae_dtype)
        x = self.vae.decode(z, tile_size=self.tile_size, tile_overlap=self.tile_overlap)[0]
        return ((x.float() + 1.0) * 127.5).permute(1, 2, 3, 0).cpu().numpy()


# ---------------------------------------------------------------- safety hooks
def _watermark(frames: np.ndarray, model_id: str) -> np.ndarray:
    """Every output frame carries the invisible watermark naming ``model_id``."""
    from kinetoscope.safety import embed_watermark

    return embed_watermark(frames, model_id)
