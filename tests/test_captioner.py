"""The built-in captioner: shapes, masking, cached decoding, training through the trainer, save/load, and `kinetoscope caption`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from kinetoscope.data.manifest import ManifestEntry, read_manifest, write_manifest
from kinetoscope.errors import CheckpointError, InvalidInputError
from kinetoscope.io import frames_to_tensor, write_video
from kinetoscope.language.captioner import TOKENIZER_NAME, Captioner, CaptionerConfig
from kinetoscope.language.parse import parse_caption
from kinetoscope.text.tokenizer import CaptionTokenizer
from kinetoscope.train.tasks.captioner import (
    IGNORE,
    PROBE_CLASSES,
    PROBE_VALUES,
    heading_weights,
    objects_in_palette_order,
    probe_targets,
)
from kinetoscope.world import describe, sample_clip, sample_state
from kinetoscope.world.clip import clip_seed


@pytest.fixture(scope="module")
def tokenizer() -> CaptionTokenizer:
    captions = [
        describe(sample_state("mixed", seed=clip_seed(1, i), width=32, height=32, frames=5))[1] for i in range(60)
    ]
    return CaptionTokenizer.train(captions, vocab_size=400)


def _model(tokenizer: CaptionTokenizer, **changes) -> Captioner:
    torch.manual_seed(0)
    config = CaptionerConfig.from_preset(
        "tiny", vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id, **changes
    )
    model = Captioner(config).eval()
    model.tokenizer = tokenizer
    return model


def test_shapes_resizing_and_frame_limit(tokenizer):
    model = _model(tokenizer)
    c = model.config
    pixels = torch.rand(2, 3, 8, 40, 56) * 2 - 1  # any size; more frames than the model reads
    tokens = torch.randint(0, c.vocab_size, (2, 7))
    assert model(pixels, tokens).shape == (2, 7, c.vocab_size)
    assert model.encode(pixels).shape == (2, c.steps * c.grid**2, c.dim)
    # Only the first `frames` frames are read.
    changed = pixels.clone()
    changed[:, :, c.frames :] = -1.0
    torch.testing.assert_close(model(changed, tokens), model(pixels, tokens))
    with pytest.raises(InvalidInputError, match="batch, 3, frames"):
        model(pixels[:, :2], tokens)
    with pytest.raises(InvalidInputError, match="limited to 96 tokens"):
        model(pixels, torch.zeros(2, 97, dtype=torch.long))


def test_padded_frames_are_masked(tokenizer):
    model = _model(tokenizer)
    short = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    padded = torch.cat([short, torch.rand(1, 3, 2, 32, 32)], dim=2)
    tokens = torch.randint(0, model.config.vocab_size, (1, 6))
    expected = model(short, tokens)
    torch.testing.assert_close(model(padded, tokens, torch.tensor([3])), expected)
    assert not torch.allclose(model(padded, tokens), expected)


def test_cached_decoding_matches_a_full_pass(tokenizer):
    model = _model(tokenizer, decoder_layers=2)
    pixels = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    tokens = torch.randint(0, model.config.vocab_size, (2, 9))
    video = model.encode(pixels)
    full = model.decode(tokens, video)
    cache = [{} for _ in model.blocks]
    stepwise = torch.cat([model.decode(tokens[:, i : i + 1], video, cache=cache, start=i) for i in range(9)], dim=1)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-4)
    # Greedy decoding is the argmax chain of full passes.
    ids = model.generate(pixels[:1], max_tokens=8)[0]
    prefix = torch.tensor([[model.config.eos_id]])
    for expected in ids:
        step = model(pixels[:1], prefix)[0, -1].argmax().item()
        assert step == expected
        prefix = torch.cat([prefix, torch.tensor([[step]])], dim=1)


def test_length_groups_decode_the_same_logits(tokenizer):
    model = _model(tokenizer)
    pixels = torch.rand(3, 3, 5, 32, 32) * 2 - 1
    tokens = torch.randint(2, model.config.vocab_size, (3, 12))
    lengths = [12, 4, 7]
    for row, n in enumerate(lengths):
        tokens[row, n:] = model.config.pad_id
    full = model(pixels, tokens)
    grouped = model(pixels, tokens, length_groups=2)
    for row, n in enumerate(lengths):
        torch.testing.assert_close(grouped[row, :n], full[row, :n], atol=1e-5, rtol=1e-4)
    assert not grouped[1, 7:].any()  # grouped with the 7-token caption: nothing decoded past it


def test_training_targets_list_objects_in_palette_order():
    caption = (
        "A small teal square stays still. A large red ball moves left at a slow speed. A yellow bar stands in front "
        "of the scene. The background is plain white. The camera is static. The red ball leaves the frame at frame 3."
    )
    ordered = objects_in_palette_order(caption)
    assert ordered.startswith("A large red ball moves left at a slow speed. A small teal square stays still. A yellow")
    assert sorted(ordered.split(". ")) == sorted(caption.split(". "))
    assert objects_in_palette_order("Not a world caption. A red ball.") == "Not a world caption. A red ball."


def test_heading_weights_fall_on_the_direction_words_of_motions_only(tokenizer):
    captions = [
        "A small red ball moves up-left at a fast speed. The camera pans right and then back left.",
        "A large blue cube is thrown right at a slow speed and falls. The red ball bounces off the left wall at frame 2.",
        "A red ball stays still.",
    ]
    ids, _ = tokenizer.encode(captions, 64)
    weights = heading_weights(tokenizer, captions, tuple(ids.shape), 5.0)
    heavy = ["".join(tokenizer.decode([t]) for t, w in zip(row.tolist(), ws) if w == 5.0) for row, ws in zip(ids, weights)]
    assert [h.replace(" ", "") for h in heavy] == ["up-left", "right", ""]
    assert set(weights.unique().tolist()) == {1.0, 5.0}

def test_probe_targets_name_each_object_where_it_is():
    clip = sample_clip("static", seed=3, width=64, height=48, frames=3)
    targets = probe_targets(clip.state, image_size=32, patch=4)
    assert targets.shape == (64, len(PROBE_CLASSES) + len(PROBE_VALUES))
    objects = parse_caption(clip.caption).objects
    unit = clip.state["world"]["px_per_unit"]
    for obj, said in zip(clip.state["objects"], objects):
        x, y = obj["position"][0]
        col, row = x * unit * 32 / 64, (48 - y * unit) * 32 / 48  # the frame is squared to 32x32
        cell = targets[int(row // 4) * 8 + int(col // 4)]
        names = [classes[int(i)] for classes, i in zip(PROBE_CLASSES.values(), cell.tolist())]
        assert names == [said.color, said.shape, said.size, "still", None, None]
        # still: no velocity; the radius in 8-pixel steps at the model's size (32 / 48 of the frame's)
        velocity_x, velocity_y, radius = cell[len(PROBE_CLASSES) :].tolist()
        assert velocity_x == velocity_y == 0.0
        assert radius == pytest.approx(obj["radius"] * unit * 32 / 48 / 8)
    labelled = (targets[:, : len(PROBE_CLASSES)] != IGNORE).all(1)
    assert (targets[~labelled, : len(PROBE_CLASSES)] == IGNORE).all() and targets[~labelled, len(PROBE_CLASSES) :].isnan().all()
    assert 0 < int(labelled.sum()) < 64


def test_save_load_round_trip(tokenizer, tmp_path):
    model = _model(tokenizer)
    pixels = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    tokens = torch.randint(0, model.config.vocab_size, (1, 5))
    model.save_pretrained(tmp_path / "cap")
    loaded = Captioner.from_pretrained(tmp_path / "cap")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(pixels, tokens), model(pixels, tokens))
    assert loaded.tokenizer.decode(loaded.tokenizer.encode(["A red ball."], 16)[0][0]) == "A red ball."
    model.save_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    small = Captioner.from_pretrained(tmp_path / "bf16")
    torch.testing.assert_close(small(pixels, tokens), model(pixels, tokens), atol=0.05, rtol=0.05)
    (tmp_path / "cap" / TOKENIZER_NAME).unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json is missing"):
        Captioner.from_pretrained(tmp_path / "cap")



def test_a_stem_grown_by_context_starts_as_the_saved_model_and_can_learn(tokenizer, tmp_path):
    model = _model(tokenizer)
    model.save_pretrained(tmp_path / "cap")
    grown = _model(tokenizer, stem_context=5)
    new_parts = grown.load_weights(tmp_path / "cap")
    assert new_parts and all(".spatial." in n or ".mix." in n for n in new_parts), new_parts
    pixels = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    tokens = torch.randint(0, model.config.vocab_size, (2, 6))
    torch.testing.assert_close(grown(pixels, tokens), model(pixels, tokens))  # a no-op until trained
    # The zero output layer still gets a gradient, so training can find a use for the context.
    grown.train()
    grown(pixels, tokens).square().mean().backward()
    out_layer = next(p for n, p in grown.named_parameters() if n.endswith("mix.2.weight"))
    assert float(out_layer.grad.abs().sum()) > 0


def test_load_weights_refuses_a_model_of_another_shape(tokenizer, tmp_path):
    _model(tokenizer, stem_context=5).save_pretrained(tmp_path / "grown")
    with pytest.raises(CheckpointError, match="no place for"):
        _model(tokenizer).load_weights(tmp_path / "grown")  # the smaller model lacks the context
    _model(tokenizer, dim=48).save_pretrained(tmp_path / "wide")
    with pytest.raises(CheckpointError, match="has shape"):
        _model(tokenizer).load_weights(tmp_path / "wide")
    with pytest.raises(InvalidInputError, match="odd number of cells"):
        _model(tokenizer, stem_context=4)

TRAIN_CONFIG = """
run_dir: {run}
steps: 40
checkpoint_every: 40
log_every: 10
sample_every: 40
ema: {{decay: 0.0}}
optim: {{lr: 0.004}}
schedule: {{warmup_steps: 5}}
data:
  source: world
  batch_size: 8
  world: {{scenarios: [uniform], sizes: [[32, 32]], frames: [5]}}
task:
  kind: captioner
  tokenizer_vocab: 400
  tokenizer_captions: 100
  sample_clips: 2
  model: {{image_size: 32, patch: 8, tubelet: 5, frames: 5, stem_channels: 16, dim: 48, heads: 2, encoder_layers: 1,
          decoder_layers: 2, max_tokens: 64}}
"""


def test_training_through_the_trainer_lowers_the_loss_and_decodes_text(cli, tmp_path):
    config = tmp_path / "captioner.yaml"
    config.write_text(TRAIN_CONFIG.format(run=tmp_path / "run"))
    code, _, err = cli("train", "captioner", "--config", config)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.6 * losses[0], losses
    assert float(rows[-1]["token_accuracy"]) > float(rows[0]["token_accuracy"])
    model = Captioner.from_pretrained(tmp_path / "run" / "final")
    clip = sample_clip("uniform", seed=5, width=32, height=32, frames=5)
    (caption,) = model.caption(frames_to_tensor(clip.frames)[None])
    assert isinstance(caption, str) and caption.strip()
    assert "The camera is static." in caption  # learned the style's fixed sentences
    assert (tmp_path / "run" / "samples" / "captions_00000040.txt").read_text().count("true: ") == 2



def test_fine_tuning_from_a_saved_captioner_starts_from_its_weights_and_tokenizer(cli, tmp_path):
    """`task.init_from` starts from a saved captioner, grown here by a stem context, and trains on."""
    config = tmp_path / "captioner.yaml"
    config.write_text(TRAIN_CONFIG.format(run=tmp_path / "run"))
    code, _, err = cli("train", "captioner", "--config", config)
    assert code == 0, err
    source = Captioner.from_pretrained(tmp_path / "run" / "final")

    tuned = TRAIN_CONFIG.format(run=tmp_path / "tuned").replace("steps: 40", "steps: 10").replace(
        "sample_clips: 2", f"sample_clips: 2\n  init_from: {tmp_path / 'run' / 'final'}"
    ).replace("stem_channels: 16,", "stem_channels: 16, stem_context: 3,")
    config.write_text(tuned)
    code, _, err = cli("train", "captioner", "--config", config)
    assert code == 0, err
    assert (tmp_path / "tuned" / TOKENIZER_NAME).read_text() == (tmp_path / "run" / TOKENIZER_NAME).read_text()
    rows = list(csv.DictReader((tmp_path / "tuned" / "metrics.csv").read_text().splitlines()))
    first = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    # It starts where the source ended, not where a fresh model starts.
    assert float(rows[0]["caption_loss"]) < 0.7 * float(first[0]["caption_loss"]), (rows[0], first[0])
    result = Captioner.from_pretrained(tmp_path / "tuned" / "final")
    assert result.config.stem_context == 3
    moved = float((result.stem.join.weight - source.stem.join.weight).detach().abs().max())
    assert 0 < moved < 0.5  # trained on, from the source's weights

    config.write_text(tuned.replace("init_from:", "tokenizer: x.json\n  init_from:"))
    code, _, err = cli("train", "captioner", "--config", config)
    assert code != 0 and "not both" in err
    config.write_text(tuned.replace("dim: 48", "dim: 32"))
    code, _, err = cli("train", "captioner", "--config", config)
    assert code != 0 and "does not fit task.model" in err and "Traceback" not in err

def test_caption_cli_with_the_builtin_captioner_keeps_original_captions(tokenizer, cli, tmp_path):
    model = _model(tokenizer)
    model.save_pretrained(tmp_path / "captioner")
    media = tmp_path / "media"
    clips = [sample_clip("uniform", seed=s, width=40, height=32, frames=7) for s in range(2)]
    for i, clip in enumerate(clips):
        write_video(media / f"clip{i}.mp4", clip.frames, clip.fps)

    out = tmp_path / "captioned.jsonl"
    code, _, err = cli("caption", media, "--out", out, "--captioner", tmp_path / "captioner")
    assert code == 0, err
    entries = read_manifest(out)
    assert [e.path.name for e in entries] == ["clip0.mp4", "clip1.mp4"]
    # mp4 compression moves pixels a little: the captions are the model's on what it read back.
    from kinetoscope.io import read_video

    read = [frames_to_tensor(read_video(media / f"clip{i}.mp4").frames) for i in range(2)]
    assert [e.caption for e in entries] == model.caption(torch.stack(read))
    assert all(e.extra == {"caption_source": "kinetoscope:captioner"} for e in entries)

    manifest = write_manifest(
        media / "manifest.jsonl", [ManifestEntry(media / "clip0.mp4", clips[0].caption, short_caption="a ball")]
    )
    code, _, err = cli("caption", manifest, "--out", out, "--captioner", tmp_path / "captioner", "--batch-size", "1")
    assert code == 0, err
    (entry,) = read_manifest(out)
    assert entry.extra["original_caption"] == clips[0].caption and entry.short_caption == "a ball"
    assert entry.caption == entries[0].caption
    # In bfloat16 (the CPU's other precision) it runs and still writes a caption in the world's style.
    code, _, err = cli("caption", media, "--out", out, "--captioner", tmp_path / "captioner", "--dtype", "bfloat16")
    assert code == 0, err
    assert [e.path.name for e in read_manifest(out)] == ["clip0.mp4", "clip1.mp4"]


#: The trained captioner shipped with the repository (benchmarks/RESULTS.md "captioner").
COMMITTED_CAPTIONER = Path(__file__).resolve().parents[1] / "models" / "captioner-world"


def test_committed_captioner_describes_world_videos_through_the_cli(cli, tmp_path, monkeypatch):
    """`kinetoscope caption` with its default captioner, run from the repository, names the objects
    of world videos it never saw (written as mp4, at another size than its own): colour, shape and
    motion of every object of 12 clips of three scenarios, direction where it holds past frame 0.
    At least 90% of these are right (on the benchmark's 500 clips at the model's own size: 99% or
    more for colour, shape and motion, 97% for such directions; ignoring the video gets about 40%)."""
    from kinetoscope.language.accuracy import HEADING_HOLDS, AttributeScore, direction_split, score_caption

    clips = [
        sample_clip(scenario, seed=clip_seed(777, i), width=128, height=96, frames=17)
        for scenario in ("uniform", "parabola", "static")
        for i in range(4)
    ]
    media = tmp_path / "media"
    for i, clip in enumerate(clips):
        write_video(media / f"clip{i:02d}.mp4", clip.frames, clip.fps)
    monkeypatch.chdir(COMMITTED_CAPTIONER.parents[1])
    code, _, err = cli("caption", media, "--out", tmp_path / "captioned.jsonl")
    assert code == 0, err
    entries = read_manifest(tmp_path / "captioned.jsonl")
    assert len(entries) == len(clips)
    predicted = [parse_caption(entry.caption) for entry in entries]
    score = AttributeScore()
    for clip, scene in zip(clips, predicted):
        score.add(score_caption(scene, parse_caption(clip.caption)))
    right, total = direction_split(clips, predicted)[HEADING_HOLDS]
    right += sum(score.correct[name] for name in ("color", "shape", "motion"))
    total += sum(score.total[name] for name in ("color", "shape", "motion"))
    assert total >= 60 and right >= 0.9 * total, (right, total)
