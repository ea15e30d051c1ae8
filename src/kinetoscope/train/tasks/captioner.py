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
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.config import Config
from kinetoscope.data.datasets import ShapeRule, VideoSample, WorldSource
from kinetoscope.data.loader import SampleSource
from kinetoscope.errors import CheckpointError, ConfigError
from kinetoscope.files import atomic_write_text
from kinetoscope.language.captioner import TOKENIZER_NAME, Captioner, CaptionerConfig, square_frames
from kinetoscope.language.parse import MOTIONS, parse_caption
from kinetoscope.text.tokenizer import CaptionTokenizer
from kinetoscope.train.data import video_source
from kinetoscope.train.distributed import barrier
from kinetoscope.train.tasks.base import LossOutput, StepContext, Task
from kinetoscope.world.captions import detailed_caption
from kinetoscope.world.clip import sample_state
from kinetoscope.world.vocabulary import DIRECTIONS, OBJECT_COLORS, SHAPES, SIZE_WORDS, SPEED_WORDS

#: Seed of the held-out clips captioned in periodic samples (training draws from ``train.seed``).
SAMPLE_SEED = 987_654_321
IGNORE = -100


@dataclasses.dataclass
class CaptionerTaskConfig(Config):
    #: The model; ``vocab_size``, ``pad_id`` and ``eos_id`` are taken from the tokenizer.
    model: CaptionerConfig = dataclasses.field(default_factory=CaptionerConfig)
    #: An existing ``tokenizer.json`` to use instead of training one.
    tokenizer: str | None = None
    #: A saved captioner to fine-tune (``models/captioner-world``, or a run's ``final/``): its
    #: tokenizer and weights start the run. ``model`` must describe it (its ``config.json``),
    #: plus any parts that start as no-ops, such as a ``stem_context`` it lacks.
    init_from: str | None = None
    tokenizer_vocab: int = 1024
    #: Captions the tokenizer is trained on (the first ones of the data).
    tokenizer_captions: int = 2000
    #: World clips captioned in each periodic sample.
    sample_clips: int = 4
    #: Rows of a batch are decoded in this many groups of similar caption length (less padding).
    length_groups: int = 4
    #: Weight of the probe loss on world clips (0 switches the probe off); see :func:`probe_targets`.
    probe_weight: float = 1.0
    #: Weight, relative to the caption's other tokens, of the tokens that spell an object's
    #: heading (the word after "moves" or "thrown"): one or two tokens in a hundred, and the
    #: attribute a small model learns last. See :func:`heading_weights`.
    heading_weight: float = 1.0


def objects_in_palette_order(caption: str) -> str:
    """The caption with its object sentences (which lead it) sorted by colour in the world's palette.

    The world lists objects in the order it made them, which the video does not show; a
    target order the model can see (each object has its own colour) spares it from guessing
    and then repeating or skipping objects. Other sentences and captions not in the world's
    style are left as they are.
    """
    sentences = re.split(r"(?<=\.)\s+", caption.strip())
    objects = []
    for sentence in sentences:
        scene = parse_caption(sentence)
        if len(scene.objects) != 1 or scene.objects[0].color not in OBJECT_COLORS:
            break
        objects.append((OBJECT_COLORS.index(scene.objects[0].color), sentence))
    ordered = [sentence for _, sentence in sorted(objects, key=lambda o: o[0])]
    return " ".join(ordered + sentences[len(objects) :])


#: What a linear probe on each video token of the first time step learns to name, besides
#: the caption: the attributes of the object the token's cell shows (``None``: no value)...
PROBE_CLASSES: dict[str, tuple[str | None, ...]] = {
    "color": OBJECT_COLORS,
    "shape": SHAPES,
    "size": tuple(word for word, _, _ in SIZE_WORDS),
    "motion": MOTIONS,
    "direction": (*DIRECTIONS, None),
    "speed": (*(word for word, _, _ in SPEED_WORDS), None),
}
#: ...and the numbers behind the words: the velocity in frame 0 (y up) in 4-pixel steps per
#: frame and the radius in 8-pixel steps, at the model's size. Words cut these into bins;
#: the numbers tell the encoder how far it is from being right, which sharpens the bins' edges.
PROBE_VALUES = ("velocity_x", "velocity_y", "radius")
PROBE_OUTPUTS = sum(len(c) for c in PROBE_CLASSES.values()) + len(PROBE_VALUES)


def unlabelled(cells: int) -> torch.Tensor:
    """Probe targets of ``cells`` cells that show nothing."""
    targets = torch.full((cells, len(PROBE_CLASSES) + len(PROBE_VALUES)), float("nan"))
    targets[:, : len(PROBE_CLASSES)] = IGNORE
    return targets


def probe_targets(state: dict[str, Any], image_size: int, patch: int) -> torch.Tensor:
    """``(cells, 9)``: class ids of :data:`PROBE_CLASSES` (``IGNORE``: none) then :data:`PROBE_VALUES` (NaN: none).

    An object is labelled on the cells within 3/4 of its radius of its centre (and the one
    holding its centre) in the frame where it is most visible: frame 0 when it is fully in
    view then, so its direction and speed are those of frame 0. Other cells are ignored.
    Captions name an object's attributes; this says where the object is, so the encoder
    learns what each object is and how it moves directly rather than only through the
    caption's few words about it.
    """
    grid = image_size // patch
    targets = unlabelled(grid * grid).reshape(grid, grid, -1)
    scale_x, scale_y = image_size / state["width"], image_size / state["height"]
    unit = state["world"]["px_per_unit"]
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) * patch
    words = parse_caption(detailed_caption(state)).objects  # one per object, in the state's order
    for obj, said in zip(state["objects"], words):
        frame = int(np.argmax(obj["visible_fraction"]))
        if obj["visible_fraction"][frame] <= 0:
            continue
        (x, y), (camera_x, camera_y) = obj["position"][frame], state["camera"]["offset"][frame]
        col = (x - camera_x) * unit * scale_x
        row = (state["height"] - (y - camera_y) * unit) * scale_y
        cells = torch.hypot(centres[None, :] - col, centres[:, None] - row) <= 0.75 * obj["radius"] * unit * scale_y
        if 0 <= row < image_size and 0 <= col < image_size:
            cells[int(row // patch), int(col // patch)] = True
        vx, vy = obj["velocity"][0]
        values = [vx * unit * scale_x / state["fps"] / 4, vy * unit * scale_y / state["fps"] / 4]
        values.append(obj["radius"] * unit * scale_y / 8)
        classes = [options.index(getattr(said, name)) for name, options in PROBE_CLASSES.items()]
        targets[cells] = torch.tensor(classes + values, dtype=torch.float32)
    return targets.reshape(grid * grid, -1)


#: An object's heading in a detailed caption: the direction word after its motion verb.
HEADING = re.compile(r"\b(?:moves|thrown) (" + "|".join(sorted(DIRECTIONS, key=len, reverse=True)) + r")\b")


def heading_weights(tokenizer: CaptionTokenizer, captions: list[str], shape: tuple[int, int], weight: float) -> torch.Tensor:
    """``(B, L)`` loss weights of ``captions``' tokens (as ``tokenizer.encode`` cuts them to ``L``):
    ``weight`` on every token that overlaps a heading word of :data:`HEADING`, 1 elsewhere."""
    weights = torch.ones(shape)
    if weight == 1.0:  # the default: no second tokenisation of every batch's captions
        return weights
    for row, (caption, encoding) in enumerate(zip(captions, tokenizer.tokenizer.encode_batch(captions))):
        spans = [m.span(1) for m in HEADING.finditer(caption)]
        for i, (start, end) in enumerate(encoding.offsets[: shape[1] - 1]):
            if any(start < b and end > a for a, b in spans):
                weights[row, i] = weight
    return weights


class Collate:
    """Samples -> ``(pixels (B, 3, T, S, S), frame counts (B,), inputs (B, L), targets (B, L), probe (B, cells, 9), token weights (B, L))``.

    Videos are squared to the model's size and padded with blank frames to the longest
    (the model masks them); inputs are the caption's ids after the start token, targets the
    ids themselves, padding ignored by the loss. World clips get :func:`probe_targets` from
    their ground truth, re-simulated from the seed their source names (cheap: no drawing);
    other videos have none (all ignored).
    """

    def __init__(self, tokenizer: CaptionTokenizer, model: CaptionerConfig, fps: float, heading_weight: float = 1.0):
        self.tokenizer = tokenizer
        self.model = model
        self.fps = fps
        self.heading_weight = heading_weight

    def probe(self, sample: VideoSample) -> torch.Tensor:
        c = self.model
        kind, _, rest = sample.source.partition(":")
        if kind != "world":
            return unlabelled(c.grid**2)
        scenario, seed = rest.rsplit(":", 1)
        _, frames, height, width = sample.pixels.shape
        state = sample_state(scenario, seed=int(seed), width=width, height=height, frames=frames, fps=self.fps)
        return probe_targets(state, c.image_size, c.patch)

    def __call__(self, samples: list[VideoSample]) -> tuple[torch.Tensor, ...]:
        c = self.model
        videos = [square_frames(s.pixels, c.image_size, c.frames) for s in samples]
        counts = torch.tensor([v.shape[1] for v in videos])
        pixels = torch.zeros(len(videos), 3, int(counts.max()), c.image_size, c.image_size)
        for i, v in enumerate(videos):
            pixels[i, :, : v.shape[1]] = v
        captions = [objects_in_palette_order(s.caption) for s in samples]
        ids, mask = self.tokenizer.encode(captions, max_length=c.max_tokens - 1)
        start = torch.full((len(samples), 1), self.tokenizer.eos_id, dtype=torch.long)
        inputs = torch.cat([start, ids[:, :-1]], dim=1)
        targets = ids.masked_fill(~mask, IGNORE)
        weights = heading_weights(self.tokenizer, captions, tuple(ids.shape), self.heading_weight)
        return pixels, counts, inputs, targets, torch.stack([self.probe(s) for s in samples]), weights


class CaptionerTask(Task):
    config_class = CaptionerTaskConfig

    def prepare(self) -> None:
        path = self.run_dir / TOKENIZER_NAME
        given = self.options.tokenizer
        if self.options.init_from is not None:
            if given is not None:
                raise ConfigError("Set task.tokenizer or task.init_from, not both: init_from brings its own tokenizer.")
            given = str(Path(self.options.init_from) / TOKENIZER_NAME)
        if given is not None:
            self.tokenizer = CaptionTokenizer.load(given)
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
        captioner = Captioner(self.model_config)
        if self.options.init_from is not None:
            try:
                captioner.load_weights(self.options.init_from)
            except CheckpointError as e:
                raise ConfigError(f"task.init_from does not fit task.model (copy its config.json there): {e}") from None
        models: dict[str, nn.Module] = {"captioner": captioner}
        if self.options.probe_weight > 0:
            models["probe"] = nn.Linear(self.model_config.dim, PROBE_OUTPUTS)
        return models

    def blocks(self, name: str, module: nn.Module) -> list[nn.Module]:
        return list(module.encoder) + list(module.blocks) if name == "captioner" else []

    def _source(self) -> SampleSource:
        d, frames = self.train.data, self.options.model.frames
        shape = ShapeRule(size_multiple=1, frame_step=1, max_frames=min(d.max_frames, frames), max_side=d.max_side)
        return video_source(self.train, shape, lambda t, h, w: t * h * w)

    def data(self) -> tuple[SampleSource, Any]:
        if self.train.data.source == "manifest" and not self.train.data.manifest:
            raise ConfigError("data.source is manifest but data.manifest names no file; set data.manifest=PATH.")
        collate = Collate(self.tokenizer, self.model_config, self.train.data.world.fps, self.options.heading_weight)
        return self._source(), collate

    def loss(self, models: dict[str, nn.Module], batch: Any, ctx: StepContext) -> LossOutput:
        pixels, counts, inputs, targets, probe, weights = (t.to(ctx.device) for t in batch)
        logits, video = models["captioner"](
            pixels, inputs, counts, length_groups=self.options.length_groups, with_video=True
        )
        scored = targets != IGNORE
        per_token = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        loss = (per_token * weights)[scored].sum() / weights[scored].sum()
        accuracy = float((logits.detach().argmax(-1) == targets)[scored].float().mean())
        metrics = {"token_accuracy": accuracy, "caption_loss": float(loss.detach())}
        if "probe" in models:
            guesses = models["probe"](video[:, : probe.shape[1]].float())
            probe_loss = probe_loss_of(guesses, probe)
            loss = loss + self.options.probe_weight * probe_loss
            metrics["probe_loss"] = float(probe_loss.detach())
        return LossOutput({"main": loss}, metrics=metrics, tokens=int(scored.sum()))

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


def probe_loss_of(guesses: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of the probe's losses ``(B, cells, PROBE_OUTPUTS)`` against :func:`probe_targets`: the
    cross-entropy of each attribute and the L1 error of each value; 0 where nothing is labelled."""
    losses, start = [], 0
    for i, classes in enumerate(PROBE_CLASSES.values()):
        wanted = targets[..., i].flatten().long()
        if bool((wanted != IGNORE).any()):
            part = guesses[..., start : start + len(classes)].flatten(0, 1)
            losses.append(F.cross_entropy(part, wanted, ignore_index=IGNORE))
        start += len(classes)
    values = targets[..., len(PROBE_CLASSES) :]
    known = ~values.isnan()
    if bool(known.any()):
        losses += [F.l1_loss(guesses[..., start:][known], values[known])]
    return torch.stack(losses).mean() if losses else guesses.sum() * 0.0


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
