"""Train the built-in re-captioner on videos and their detailed captions (``kinetoscope train captioner``).

Before the models are built, the caption tokenizer is trained on the data's captions (or
loaded: from ``task.tokenizer``, or from the run directory when resuming) and saved in the
run directory. The loss is next-token cross-entropy over each caption, its end-of-text
token included. Periodic samples caption a fixed set of held-out world clips and write the
captions beside the true ones.

Train on world clips (``data.source: world``), or on a manifest whose clips are no longer
than the model's ``frames``: captions name frame numbers, and a clip cut to fit would no
longer match its caption.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.config import Config
from kinetoscope.data.datasets import ShapeRule, VideoSample, WorldSource
from kinetoscope.data.loader import SampleSource
from kinetoscope.errors import ConfigError
from kinetoscope.files import atomic_write_text
from kinetoscope.language.captioner import TOKENIZER_NAME, Captioner, CaptionerConfig, square_frames
from kinetoscope.text.tokenizer import CaptionTokenizer
from kinetoscope.train.data import video_source
from kinetoscope.train.distributed import barrier
from kinetoscope.train.tasks.base import LossOutput, StepContext, Task

#: Seed of the held-out clips captioned in periodic samples (training draws from ``train.seed``).
SAMPLE_SEED = 987_654_321
IGNORE = -100


@dataclasses.dataclass
class CaptionerTaskConfig(Config):
    #: The model; ``vocab_size``, ``pad_id`` and ``eos_id`` are taken from the tokenizer.
    model: CaptionerConfig = dataclasses.field(default_factory=CaptionerConfig)
    #: An existing ``tokenizer.json`` to use instead of training one.
    tokenizer: str | None = None
    tokenizer_vocab: int = 1024
    #: Captions the tokenizer is trained on (the first ones of the data).
    tokenizer_captions: int = 2000
    #: World clips captioned in each periodic sample.
    sample_clips: int = 4


class Collate:
    """Samples -> ``(pixels (B, 3, T, S, S), frame counts (B,), inputs (B, L), targets (B, L))``.

    Videos are squared to the model's size and padded with blank frames to the longest
    (the model masks them); inputs are the caption's ids after the start token, targets the
    ids themselves, padding ignored by the loss.
    """

    def __init__(self, tokenizer: CaptionTokenizer, model: CaptionerConfig):
        self.tokenizer = tokenizer
        self.model = model

    def __call__(self, samples: list[VideoSample]) -> tuple[torch.Tensor, ...]:
        c = self.model
        videos = [square_frames(s.pixels, c.image_size, c.frames) for s in samples]
        counts = torch.tensor([v.shape[1] for v in videos])
        pixels = torch.zeros(len(videos), 3, int(counts.max()), c.image_size, c.image_size)
        for i, v in enumerate(videos):
            pixels[i, :, : v.shape[1]] = v
        ids, mask = self.tokenizer.encode([s.caption for s in samples], max_length=c.max_tokens - 1)
        start = torch.full((len(samples), 1), self.tokenizer.eos_id, dtype=torch.long)
        inputs = torch.cat([start, ids[:, :-1]], dim=1)
        targets = ids.masked_fill(~mask, IGNORE)
        return pixels, counts, inputs, targets


class CaptionerTask(Task):
    config_class = CaptionerTaskConfig

    def prepare(self) -> None:
        path = self.run_dir / TOKENIZER_NAME
        if self.options.tokenizer is not None:
            self.tokenizer = CaptionTokenizer.load(self.options.tokenizer)
            if self.info.is_main:
                self.tokenizer.save(path)
        elif path.is_file():  # resuming: the ids must stay the ones the weights learned
            self.tokenizer = CaptionTokenizer.load(path)
        else:
            if self.info.is_main:
                CaptionTokenizer.train(self._captions(), vocab_size=self.options.tokenizer_vocab).save(path)
            barrier(self.info)
            self.tokenizer = CaptionTokenizer.load(path)
        barrier(self.info)

    def _captions(self) -> list[str]:
        count = self.options.tokenizer_captions
        source = self._source()
        if isinstance(source, WorldSource):
            return source.captions(count)
        return [e.caption for e in source.entries[:count] if e.caption]

    @property
    def model_config(self) -> CaptionerConfig:
        t = self.tokenizer
        return self.options.model.replace(vocab_size=t.vocab_size, pad_id=t.pad_id, eos_id=t.eos_id)

    def build_models(self) -> dict[str, nn.Module]:
        return {"captioner": Captioner(self.model_config)}

    def blocks(self, name: str, module: nn.Module) -> list[nn.Module]:
        return list(module.encoder) + list(module.blocks)

    def _source(self) -> SampleSource:
        d, frames = self.train.data, self.options.model.frames
        shape = ShapeRule(size_multiple=1, frame_step=1, max_frames=min(d.max_frames, frames), max_side=d.max_side)
        return video_source(self.train, shape, lambda t, h, w: t * h * w)

    def data(self) -> tuple[SampleSource, Any]:
        if self.train.data.source == "manifest" and not self.train.data.manifest:
            raise ConfigError("data.source is manifest but data.manifest names no file; set data.manifest=PATH.")
        return self._source(), Collate(self.tokenizer, self.model_config)

    def loss(self, models: dict[str, nn.Module], batch: Any, ctx: StepContext) -> LossOutput:
        pixels, counts, inputs, targets = (t.to(ctx.device) for t in batch)
        logits = models["captioner"](pixels, inputs, counts)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        scored = targets != IGNORE
        accuracy = float((logits.detach().argmax(-1) == targets)[scored].float().mean())
        return LossOutput({"main": loss}, metrics={"token_accuracy": accuracy}, tokens=int(scored.sum()))

    def sample(self, models: dict[str, nn.Module], step: int, out_dir: Path) -> list[Path]:
        from kinetoscope.io import frames_to_tensor
        from kinetoscope.world import sample_clip
        from kinetoscope.world.clip import clip_seed

        model: Captioner = models["captioner"]
        model.tokenizer = self.tokenizer
        c = model.config
        clips = [
            sample_clip(
                "mixed", seed=clip_seed(SAMPLE_SEED, i), width=c.image_size, height=c.image_size, frames=c.frames
            )
            for i in range(self.options.sample_clips)
        ]
        pixels = torch.stack([frames_to_tensor(clip.frames) for clip in clips]).to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        captions = model.caption(pixels)
        model.train(was_training)
        lines = [f"true: {clip.caption}\nmodel: {caption}\n" for clip, caption in zip(clips, captions)]
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"captions_{step:08d}.txt"
        atomic_write_text(path, "\n".join(lines))
        return [path]

    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        model: Captioner = models["captioner"]
        model.tokenizer = self.tokenizer
        model.save_pretrained(out_dir)


def load_checkpoint(directory: str | Path, ema: bool = True) -> Captioner:
    """The captioner of a training checkpoint (its EMA weights unless ``ema=False``), tokenizer attached.

    For evaluating or exporting a run before it finishes: ``load_checkpoint(d).save_pretrained(out)``.
    """
    from kinetoscope.train import checkpoint as ckpt
    from kinetoscope.train.config import TrainConfig

    directory = ckpt.resolve_checkpoint(directory)
    run_dir = directory.parent.parent
    options = CaptionerTaskConfig.from_dict(TrainConfig.load_json(run_dir / "config.json").task_options)
    tokenizer = CaptionTokenizer.load(run_dir / TOKENIZER_NAME)
    config = options.model.replace(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id)
    model = Captioner(config)
    prefix = "captioner."
    state = ckpt.load_tensors(directory, "ema" if ema else "model")
    model.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    model.tokenizer = tokenizer
    return model.eval()


TASK = CaptionerTask
