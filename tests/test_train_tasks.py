"""The model plug-ins end to end: `kinetoscope train dit` and `train vae` on tiny models, LoRA fine-tuning."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
import yaml
from conftest import TRAINED_TINY_VAE

from kinetoscope.data import read_manifest, write_manifest
from kinetoscope.io import frames_to_tensor, read_video
from kinetoscope.train.logging import read_metrics, read_skipped
from kinetoscope.world.vocabulary import VIEW_HEIGHT


@pytest.fixture(scope="module")
def world_data(tmp_path_factory):
    """A tiny random VAE and a manifest of 3 world clips plus 2 files that cannot be read."""
    from kinetoscope.vae import CausalVAE, VAEConfig
    from kinetoscope.data.world_clips import write_world_dataset

    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    CausalVAE(VAEConfig.from_preset("tiny")).save_pretrained(root / "vae")
    manifest = write_world_dataset(
        root / "clips", scenario="bounce", n=3, width=32, height=32, frames=9, fps=10.0, seed=0
    )
    entries = read_manifest(manifest)
    (root / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    bad = [entries[0].__class__(path=root / "clips" / name, caption="bad") for name in ("broken.mp4", "gone.mp4")]
    write_manifest(root / "mixed.jsonl", entries + bad)
    return root


def dit_config(root, run, **task) -> dict:
    return {
        "run_dir": str(run),
        "steps": 3,
        "log_every": 1,
        "checkpoint_every": 3,
        "sample_every": 3,
        "data": {"source": "manifest", "manifest": str(root / "mixed.jsonl"), "token_budget": 40, "lookahead": 4},
        "task": {"vae": str(root / "vae"), "sample_shape": [5, 16, 16], "sample_steps": 2, **task},
    }


def run_cli(cli, tmp_path, kind, cfg, *extra):
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cli("train", kind, "--config", path, *extra)


def test_train_dit_on_a_manifest_with_bad_files(world_data, tmp_path, cli):
    from kinetoscope.dit import DiT
    from kinetoscope.safety.detect import model_id_for
    from kinetoscope.text import TextEncoder

    run = tmp_path / "run"
    code, out, err = run_cli(cli, tmp_path, "dit", dit_config(world_data, run))
    assert code == 0, err
    final = run / "final"
    assert f"written to {final}" in out
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(0.0 < float(r["loss"]) < 10.0 for r in rows)
    # 3 clips of 9 frames at 32x32 -> 3 latent frames x 2 x 2 tokens = 12 tokens; budget 40 -> 3 clips a batch
    assert {float(r["tokens_per_batch"]) for r in rows} <= {12.0, 24.0, 36.0}
    # Both bad files came up (each epoch holds 5 entries, 3 steps read at least one epoch) and are listed.
    assert sorted(read_skipped(run)) == sorted(str(world_data / "clips" / n) for n in ("broken.mp4", "gone.mp4"))
    assert int(rows[-1]["skipped_files"]) >= 2
    assert (run / "tokenizer.json").is_file()
    assert [p.name for p in sorted((run / "samples").iterdir())] == ["step_00000003_0.mp4"]
    # The sample comes from Pipeline at the configured shape (frames, height, width).
    frames = read_video(run / "samples" / "step_00000003_0.mp4").frames
    assert tuple(frames.shape[:3]) == (5, 16, 16)
    index = json.loads((final / "model_index.json").read_text())
    assert index["dit"] == ["kinetoscope.dit", "DiT"] and index["text"] == ["kinetoscope.text", "TextEncoder"]
    # The watermark names the model by this id: the run's name and a digest of its weights, never just "final".
    digest = hashlib.sha256((final / "dit" / "model.safetensors").read_bytes()).hexdigest()[:8]
    assert index["model_id"] == f"run-{digest}"
    assert model_id_for(final) == index["model_id"]
    dit = DiT.from_pretrained(final / "dit")
    text = TextEncoder.from_pretrained(final / "text")
    assert dit.config.text_dim == text.dim and dit.config.in_channels == 4
    assert text.tokenizer.vocab_size > 3
    assert (final / "vae" / "model.safetensors").is_file()


def test_a_fine_tune_grown_deeper_starts_where_its_source_ended_and_resumes(world_data, tmp_path, cli):
    """`task.model.depth` above init_from's grows the transformer by no-op copies: the first step's
    loss is a plain fine-tune's, the run resumes exactly, and the export has the new depth. A finer
    `task.model.patch_size` trains and exports refined tokens; `task.model.frame_position` adds
    frame positions that start at zero."""
    from kinetoscope.dit import DiT

    base_run = tmp_path / "base"
    base_cfg = dit_config(world_data, base_run)
    base_cfg.update(sample_every=0)
    assert run_cli(cli, tmp_path, "dit", base_cfg)[0] == 0
    base = base_run / "final"

    def tune(run, steps, **model):
        cfg = dit_config(world_data, run, init_from=str(base), model=model)
        cfg.update(sample_every=0, steps=steps, checkpoint_every=1)
        del cfg["task"]["vae"]
        return run_cli(cli, tmp_path, "dit", cfg)

    assert tune(tmp_path / "plain", 1)[0] == 0
    code, _, err = tune(tmp_path / "grown", 2, depth=4, width=64)
    assert code == 0, err
    plain, grown = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "grown")
    assert math.isclose(float(grown[0]["loss"]), float(plain[0]["loss"]), rel_tol=1e-4), (grown[0], plain[0])
    assert tune(tmp_path / "grown", 3, depth=4)[0] == 0  # resumes from step 2's checkpoint
    assert [int(r["step"]) for r in read_metrics(tmp_path / "grown")] == [1, 2, 3]
    dit = DiT.from_pretrained(tmp_path / "grown" / "final" / "dit")
    source = DiT.from_pretrained(base / "dit")
    assert dit.config.depth == 4 and dit.config.replace(depth=2) == source.config
    assert not torch.equal(dit.blocks[1].video.out.weight, torch.zeros_like(dit.blocks[1].video.out.weight))

    assert tune(tmp_path / "fine", 1, patch_size=[1, 1, 1])[0] == 0
    fine = DiT.from_pretrained(tmp_path / "fine" / "final" / "dit")
    assert fine.config.patch_size == (1, 1, 1) and fine.config.position_scale == (1.0, 0.5, 0.5)
    assert fine.patch_embed.weight.shape[1] * 4 == source.patch_embed.weight.shape[1]
    flows = [json.loads((d / "model_index.json").read_text())["flow"] for d in (base, tmp_path / "fine" / "final")]
    for key in ("base_tokens", "max_tokens"):  # each clip keeps its noise shift
        assert flows[1][key] == 4 * flows[0][key]

    assert tune(tmp_path / "placed", 1, frame_position=True)[0] == 0
    placed = read_metrics(tmp_path / "placed")
    assert math.isclose(float(placed[0]["loss"]), float(plain[0]["loss"]), rel_tol=1e-4), (placed[0], plain[0])
    assert DiT.from_pretrained(tmp_path / "placed" / "final" / "dit").config.frame_position

    code, _, err = tune(tmp_path / "wide", 1, width=96)
    assert code == 2 and "task.model.width is 96 but task.init_from's transformer has 64" in err
    assert len(err.strip().splitlines()) == 1


def test_lora_fine_tune_trains_only_adapters_and_exports_merged(world_data, tmp_path, cli):
    from safetensors.torch import load_file

    base_run = tmp_path / "base"
    base_cfg = dit_config(world_data, base_run)
    base_cfg["data"]["manifest"] = str(world_data / "clips" / "manifest.jsonl")
    base_cfg["sample_every"] = 0
    assert run_cli(cli, tmp_path, "dit", base_cfg)[0] == 0
    base = base_run / "final"

    tuned_run = tmp_path / "tuned"
    cfg = dit_config(world_data, tuned_run, init_from=str(base), lora={"rank": 2, "alpha": 4.0})
    cfg.update(sample_every=0, optim={"lr": 1e-2})
    cfg["data"]["manifest"] = str(world_data / "clips" / "manifest.jsonl")
    del cfg["task"]["vae"]  # taken from the base model directory
    code, _, err = run_cli(cli, tmp_path, "dit", cfg)
    assert code == 0, err
    trained = load_file(str(tuned_run / "checkpoints" / "step_00000003" / "ema.safetensors"))
    assert trained and all(".lora_" in k for k in trained)  # the EMA (and optimizer) hold adapters only
    adapters = load_file(str(tuned_run / "final" / "lora" / "adapter.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)
    before = load_file(str(base / "dit" / "model.safetensors"))
    after = load_file(str(tuned_run / "final" / "dit" / "model.safetensors"))
    assert set(before) == set(after)  # merged back into a plain DiT
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("blocks.") and k.endswith("weight") for k in changed)
    text_before = load_file(str(base / "text" / "model.safetensors"))
    text_after = load_file(str(tuned_run / "final" / "text" / "model.safetensors"))
    assert all(torch.equal(text_before[k], text_after[k]) for k in text_before)  # LoRA leaves the text encoder


def test_train_dit_needs_a_vae(tmp_path, cli):
    cfg = {"run_dir": str(tmp_path / "r"), "data": {"source": "world", "token_budget": 64}}
    code, _, err = run_cli(cli, tmp_path, "dit", cfg)
    assert code == 2 and "needs a trained VAE" in err


def test_train_vae_with_discriminator_on_a_manifest_with_bad_files(world_data, tmp_path, cli):
    from safetensors.torch import load_file

    from kinetoscope.vae import CausalVAE

    run = tmp_path / "run"
    cfg = {
        "run_dir": str(run),
        "steps": 3,
        "log_every": 1,
        "checkpoint_every": 1,
        "keep_last": 5,
        "sample_every": 3,
        "data": {"source": "manifest", "manifest": str(world_data / "mixed.jsonl"), "token_budget": 9 * 32 * 32 * 2},
        # The discriminator joins at step index 1: steps 2 and 3 train both optimizers.
        "task": {"loss": {"discriminator_start": 1, "adversarial_weight": 0.1}, "discriminator_channels": 8},
    }
    code, _, err = run_cli(cli, tmp_path, "vae", cfg)
    assert code == 0, err
    rows = read_metrics(run)
    assert rows[0]["loss_disc"] == "nan" and all(float(r["loss_disc"]) > 0 for r in rows[1:])
    assert float(rows[0]["adversarial"]) == 0.0 and float(rows[2]["adversarial"]) != 0.0
    assert all(0 < float(r["l1"]) < 2 and 0 < float(r["kl"]) for r in rows)
    assert sorted(read_skipped(run)) == sorted(str(world_data / "clips" / n) for n in ("broken.mp4", "gone.mp4"))

    def disc(step):
        state = load_file(str(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))
        return {k: v for k, v in state.items() if k.startswith("disc.")}

    assert disc(1) and not all(torch.equal(disc(1)[k], v) for k, v in disc(2).items())  # trained from step 2
    ema = load_file(str(run / "checkpoints" / "step_00000003" / "ema.safetensors"))
    assert ema and not any(k.startswith("disc.") for k in ema)  # the discriminator has no EMA
    vae = CausalVAE.from_pretrained(run / "final")
    assert len(vae.config.latent_mean) == len(vae.config.latent_std) == vae.latent_channels == 4
    assert all(s > 0 for s in vae.config.latent_std)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000003_0.mp4", "step_00000003_1.mp4"]


def test_latent_cache_encodes_each_clip_once_and_changes_no_loss(world_data, tmp_path, monkeypatch):
    from kinetoscope.train import TrainConfig, train
    from kinetoscope.vae import CausalVAE

    encoded = []
    encode = CausalVAE.encode

    def counting_encode(self, pixels, *args, **kwargs):
        encoded.append(pixels.shape[0])
        return encode(self, pixels, *args, **kwargs)

    monkeypatch.setattr(CausalVAE, "encode", counting_encode)
    losses = {}
    for cache in (0, 8):
        encoded.clear()
        cfg = dit_config(world_data, tmp_path / f"run{cache}", kind="dit", latent_cache=cache)
        # fp32: a CPU with bf16 units would run auto in bf16, whose rounding follows the batch's make-up.
        cfg.update(steps=6, checkpoint_every=100, sample_every=100, precision="fp32")
        train(TrainConfig.from_dict(cfg))
        losses[cache] = [r["loss"] for r in read_metrics(tmp_path / f"run{cache}")]
        if cache:
            assert sum(encoded) == 3  # the manifest's 3 readable clips, each encoded once over 6 steps
        else:
            assert sum(encoded) > 3
    assert losses[0] == losses[8]


#: One green ball crossing two thirds of a 32x32 frame right to left, wholly in view in all 17 frames
#: (clip_seed(10, 0) of the uniform-motion scenario).
OVERFIT_CLIP = {"scenario": "uniform", "n": 1, "width": 32, "height": 32, "frames": 17, "fps": 10.0, "seed": 10}


def overfit_vae_config(run, manifest) -> dict:
    """The tiny VAE (4x spatial compression) trained 150 steps on the same one clip.

    Overfit, like the DiT, rather than the session's general tiny VAE (``trained_tiny_vae``):
    that one learns where the balls are in a few hundred steps but not their hue (every ball
    decodes in one grey-mauve; 900 steps do no better), and the colour check is about the
    DiT's sample, so the decoder must be able to show the colour the latent holds.
    """
    cfg = {**TRAINED_TINY_VAE, "run_dir": str(run), "steps": 150}
    cfg["data"] = {"source": "manifest", "manifest": str(manifest), "batch_size": 1}
    cfg["task"] = {**TRAINED_TINY_VAE["task"], "stats_batches": 1}
    return cfg


def overfit_config(run, manifest, vae) -> dict:
    """The tiny DiT on one clip: its one caption every step, no text dropout, no known frames.

    With one clip the best velocity is a function of (x_t, t) alone, so the loss can go to zero.
    What is left to win is at low noise, where that function divides by t and is hardest; a shift
    of 3 (SD3's, here for every token count) spends most steps at high noise, which is where the
    sample's content is decided (the same shift goes into the model's flow config for sampling).
    """
    never_given = {f"mask_{kind}": 0.0 for kind in ("first", "first_k", "last", "first_last", "keyframes")}
    return {
        "run_dir": str(run),
        "steps": 500,
        "log_every": 20,
        "checkpoint_every": 500,
        "optim": {"lr": 1e-2, "weight_decay": 0.0},
        "schedule": {"kind": "constant", "warmup_steps": 10},
        "ema": {"decay": 0.0},
        # The same clip 4 times a step: 4 draws of time and noise, so each step sees more than one noise level.
        "data": {"source": "manifest", "manifest": str(manifest), "batch_size": 4},
        "task": {
            "kind": "dit",
            "vae": str(vae),
            "preset": "tiny",
            "latent_cache": 1,
            "flow": {"text_dropout": 0.0, "mask_none": 1.0, **never_given, "shift_at_base": 3.0, "shift_at_max": 3.0},
        },
    }


def ball_track(frames) -> tuple[str | None, list[float]]:
    """The colour of the biggest object in at least 80% of the frames (None if no colour is), and the
    column of its centroid in each frame (nan where the biggest object is something else or nothing)."""
    from collections import Counter

    from kinetoscope.eval.detect import detect_video

    biggest = [max(found, key=lambda d: d.area) if found else None for found in detect_video(frames)]
    counts = Counter(d.color for d in biggest if d is not None)
    color, count = counts.most_common(1)[0] if counts else (None, 0)
    if count < 0.8 * len(frames):
        return None, []
    return color, [d.centroid[0] if d is not None and d.color == color else math.nan for d in biggest]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """The tiny VAE and DiT trained on one clip, the clip's manifest entry and ground-truth ball, the
    DiT's logged losses, and the trained model's sample for the clip's caption (frames and latents)."""
    from kinetoscope.pipeline import Pipeline
    from kinetoscope.train import TrainConfig, train
    from kinetoscope.data.world_clips import write_world_dataset

    root = tmp_path_factory.mktemp("overfit")
    manifest = write_world_dataset(root / "clip", **OVERFIT_CLIP)
    clip = read_manifest(manifest)[0]
    vae = train(TrainConfig.from_dict(overfit_vae_config(root / "vae", manifest)))
    final = train(TrainConfig.from_dict(overfit_config(root / "run", manifest, vae)))
    pipeline = Pipeline.from_pretrained(final)
    shape = {k: OVERFIT_CLIP[k] for k in ("width", "height")} | {"num_frames": OVERFIT_CLIP["frames"]}
    sample = pipeline(clip.caption, **shape, steps=10, guidance=1.0, seed=0, expand=False)
    with torch.no_grad():
        clip_latents = pipeline.vae.encode(frames_to_tensor(read_video(clip.path).frames)[None])[0]
    return {
        "clip": clip,
        "ball": json.loads(clip.state_path.read_text())["objects"][0],
        "loss": [float(r["loss"]) for r in read_metrics(root / "run")],
        "sample": sample,
        "clip_latents": clip_latents,
    }


def test_tiny_dit_overfits_one_world_clip(overfit):
    """The loss falls at least 10x, and the sample for the clip's caption is the clip's latent.
    (An untrained model's sample is its starting noise, an error of (1 + var) / var, about 1.8.)"""
    loss = overfit["loss"]
    assert sum(loss[-3:]) / 3 <= 0.1 * loss[0], loss  # the last three logs (60 steps) against the first 20 steps
    target = overfit["clip_latents"]
    error = (overfit["sample"].latents - target).square().mean() / target.var()
    assert error < 0.15, float(error)


def test_tiny_dit_overfit_sample_shows_the_clip_ball(overfit):
    """Decoded by the VAE, the sample shows the clip's ball in its colour, moving its way, as
    kinetoscope.eval's detector finds it."""
    import numpy as np

    ball = overfit["ball"]
    color, columns = ball_track(overfit["sample"].frames)
    assert color == ball["color"], (color, ball["color"])
    shown = ~np.isnan(columns)
    travel = np.polyfit(np.flatnonzero(shown), np.asarray(columns)[shown], 1)[0] * (OVERFIT_CLIP["frames"] - 1)
    truth = (ball["position"][-1][0] - ball["position"][0][0]) * OVERFIT_CLIP["height"] / VIEW_HEIGHT  # px, -20
    assert np.sign(travel) == np.sign(truth) and abs(travel) > 0.5 * abs(truth), (travel, truth)


def test_train_vae_on_crops_from_the_posterior_mean(world_data, tmp_path, monkeypatch):
    from kinetoscope.train import TrainConfig, train
    from kinetoscope.vae import CausalVAE
    from kinetoscope.vae.model import DiagonalGaussian

    shapes = []
    forward = CausalVAE.forward

    def recording_forward(self, x, **kwargs):
        shapes.append(tuple(x.shape))
        return forward(self, x, **kwargs)

    def no_sampling(self, generator=None):
        raise AssertionError("the posterior was sampled")

    monkeypatch.setattr(CausalVAE, "forward", recording_forward)
    monkeypatch.setattr(DiagonalGaussian, "sample", no_sampling)
    cfg = {
        "run_dir": str(tmp_path / "run"), "steps": 2, "log_every": 1, "checkpoint_every": 100,
        "data": {"source": "manifest", "manifest": str(world_data / "mixed.jsonl"), "batch_size": 2},
        "task": {"kind": "vae", "crop": [16, 24], "sample_posterior": False, "loss": {"adversarial_weight": 0.0}, "stats_batches": 1},
    }  # fmt: skip
    train(TrainConfig.from_dict(cfg))
    assert shapes and all(s[2:] == (9, 16, 24) for s in shapes)  # 32x32 clips, cropped to 16x24 (height x width)
    assert all(float(r["l2"]) > 0 for r in read_metrics(tmp_path / "run"))


def test_train_vae_decoder_alone_keeps_the_encoder_and_its_latents(world_data, tmp_path, cli):
    from safetensors.torch import load_file

    from kinetoscope.data.latents import vae_digest
    from kinetoscope.train import TrainConfig, train
    from kinetoscope.vae import CausalVAE, VAEConfig

    start = tmp_path / "start"
    CausalVAE(VAEConfig.from_preset("tiny")).save_pretrained(start)
    cfg = {
        "run_dir": str(tmp_path / "run"), "steps": 2, "log_every": 1, "checkpoint_every": 100,
        "data": {"source": "manifest", "manifest": str(world_data / "mixed.jsonl"), "batch_size": 2},
        "task": {"kind": "vae", "init_from": str(start), "train_encoder": False, "stats_batches": 1,
                 "loss": {"adversarial_weight": 0.0, "foreground_weight": 4.0}},
    }  # fmt: skip
    final = train(TrainConfig.from_dict(cfg))
    before, after = load_file(start / "model.safetensors"), load_file(final / "model.safetensors")
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if k.startswith("decoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    assert vae_digest(final) == vae_digest(start)  # the same latents: a dataset it wrote still trains
    stats = [json.loads((d / "config.json").read_text())["latent_mean"] for d in (start, final)]
    assert stats[0] == stats[1]  # kept, not measured again

    cfg["task"].pop("init_from")
    cfg["run_dir"] = str(tmp_path / "run2")
    code, _, err = run_cli(cli, tmp_path, "vae", cfg)
    assert code == 2 and "set task.init_from" in err and len(err.strip().splitlines()) == 1
