"""Latent datasets: clips encoded once by a frozen VAE, and the transformer trained from them."""

from __future__ import annotations

import json

import pytest
import torch

from kinetoscope.data.latents import (
    FORMAT,
    INDEX,
    LatentDataset,
    LatentSource,
    foreground_cells,
    vae_digest,
    world_items,
)
from kinetoscope.dit import pack
from kinetoscope.flow import flow_loss
from kinetoscope.vae import CausalVAE, VAEConfig

WORLD = {"scenarios": ("solo", "uniform"), "sizes": ((32, 32), (48, 32)), "frames": (1, 9), "fps": 10.0}


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae") / "vae"
    CausalVAE(VAEConfig.from_preset("tiny", patch_size=2)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def latents_dir(vae_dir, tmp_path_factory):
    from kinetoscope.cli import run

    out = tmp_path_factory.mktemp("latents") / "set"
    code = run([
        "data", "encode", "world", "--vae", str(vae_dir), "--out", str(out), "--n", "12", "--scenarios", "solo,uniform",
        "--sizes", "32x32,48x32", "--frames", "1,9", "--batch-size", "4",
    ])  # fmt: skip
    assert code == 0
    return out


def test_foreground_cells_mark_the_cells_an_object_covers():
    pixels = torch.ones(3, 5, 32, 32)  # white, 5 frames: latent frames 0 (frame 0) and 1 (frames 1-4)
    pixels[:, 3, 10:12, 20:22] = -1.0  # a black speck in frame 3 only
    cells = foreground_cells(pixels, spatial=8, temporal=4)
    assert cells.shape == (2, 4, 4)
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[1, 1, 2] = True  # rows 10-11 -> cell 1, columns 20-21 -> cell 2, frame 3 -> latent frame 1
    assert torch.equal(cells, expected)


def test_encoded_dataset_holds_latents_captions_and_ground_truth(latents_dir, vae_dir):
    index = json.loads((latents_dir / INDEX).read_text())
    assert index["format"] == FORMAT and index["version"] == 1 and index["samples"] == 12
    assert index["vae"] == {"latent_channels": 4, "spatial_compression": 8, "temporal_compression": 4, "digest": vae_digest(vae_dir)}
    dataset = LatentDataset(latents_dir)
    assert len(dataset) == 12
    vae = CausalVAE.from_pretrained(vae_dir)
    items = {item.record["source"]: item for item in world_items(12, seed=0, **WORLD)}
    for i in range(len(dataset)):
        sample, record = dataset[i], dataset.records[i]
        item = items[sample.source]  # encoding batches by shape, so the order may differ
        assert sample.caption == item.record["caption"] == record["caption"]
        assert record["state"]["scenario"] == record["scenario"] in ("solo", "uniform")
        assert sample.latent.shape == vae.latent_shape(record["frames"], record["height"], record["width"])
        with torch.no_grad():
            expected = vae.encode(item.pixels[None])[0]
        torch.testing.assert_close(sample.latent, expected, rtol=0, atol=2e-3 * expected.abs().max().item() + 1e-3)
        assert torch.equal(sample.foreground, foreground_cells(item.pixels, 8, 4))


def test_latent_source_costs_tokens_and_visits_every_sample_each_epoch(latents_dir):
    source = LatentSource(latents_dir, seed=3, patch=(1, 2, 2))
    n = len(source)
    first_epoch = {source.describe(i) for i in range(n)}
    assert len(first_epoch) == n
    for i in range(n):
        sample = source.load(i)
        _, t, h, w = sample.latent.shape
        assert source.cost(i) == t * (h // 2) * (w // 2)


def test_encode_refuses_bad_input_in_one_sentence(cli, vae_dir, latents_dir, tmp_path):
    code, _, err = cli("data", "encode", "world", "--vae", vae_dir, "--out", tmp_path / "a", "--frames", "3")
    assert code == 2 and "1 + 4k frames" in err and "Traceback" not in err
    code, _, err = cli("data", "encode", "world", "--vae", tmp_path / "none", "--out", tmp_path / "b")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("data", "encode", "world", "--vae", vae_dir, "--out", latents_dir, "--n", "1", "--sizes", "32x32")
    assert code == 2 and "already holds a latent dataset" in err


def test_cells_to_tokens_marks_a_token_if_any_cell_of_its_patch_is_marked():
    latent = torch.zeros(4, 2, 4, 6)
    packed = pack([latent, torch.zeros(4, 1, 2, 2)], (1, 2, 2))
    cells = torch.zeros(2, 4, 6, dtype=torch.bool)
    cells[1, 3, 5] = True  # last cell of frame 1: token (t=1, h=1, w=2), index 6 + 1*3 + 2
    tokens = packed.cells_to_tokens([cells, torch.ones(1, 2, 2, dtype=torch.bool)])
    assert tokens.shape == (13,)
    assert tokens.nonzero().flatten().tolist() == [11, 12]


def test_weighted_flow_loss_counts_each_token_its_weight():
    out, target = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    weight = torch.tensor([1.0, 10.0, 1.0])
    mask = torch.tensor([True, True, False])
    assert flow_loss(out, target, mask, weight).item() == pytest.approx((1 + 10 * 4) / 11)
    assert flow_loss(out, target, mask).item() == pytest.approx(2.5)


def test_transformer_trains_from_latents_and_refuses_another_vaes(latents_dir, vae_dir, tmp_path):
    from kinetoscope.errors import ConfigError
    from kinetoscope.train import TrainConfig, train

    config = {
        "run_dir": str(tmp_path / "run"), "steps": 6, "log_every": 3, "checkpoint_every": 100,
        "optim": {"lr": 2e-3, "weight_decay": 0.0}, "schedule": {"warmup_steps": 0},
        "data": {"source": "latents", "latents": str(latents_dir), "token_budget": 64},
        "task": {"kind": "dit", "preset": "tiny", "vae": str(vae_dir), "text_preset": "tiny",
                 "tokenizer_captions": 12, "foreground_weight": 5.0},
    }  # fmt: skip
    final = train(TrainConfig.from_dict(config))
    assert (final / "dit" / "model.safetensors").is_file() and (final / "model_index.json").is_file()
    losses = [float(line.split(",")[1]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)

    torch.manual_seed(1)
    other = tmp_path / "other-vae"
    CausalVAE(VAEConfig.from_preset("tiny", patch_size=2)).save_pretrained(other)
    config["run_dir"] = str(tmp_path / "run2")
    config["task"]["vae"] = str(other)
    with pytest.raises(ConfigError, match="encoded by another VAE"):
        train(TrainConfig.from_dict(config))


def test_encode_a_manifest_keeps_ground_truth_and_lists_unreadable_files(cli, vae_dir, tmp_path):
    from kinetoscope.data import read_manifest, write_manifest
    from kinetoscope.data.world_clips import write_world_dataset

    manifest = write_world_dataset(tmp_path / "clips", scenario="solo", n=2, width=32, height=32, frames=9, fps=10.0, seed=0)
    entries = read_manifest(manifest)
    bad = entries[0].__class__(path=tmp_path / "clips" / "gone.mp4", caption="bad")
    write_manifest(tmp_path / "mixed.jsonl", [*entries, bad])
    code, out, err = cli("data", "encode", tmp_path / "mixed.jsonl", "--vae", vae_dir, "--out", tmp_path / "set")
    assert code == 0, err
    assert "gone.mp4" in err and f"wrote {tmp_path / 'set' / 'index.json'}" in out
    dataset = LatentDataset(tmp_path / "set")
    assert len(dataset) == 2
    assert {r["caption"] for r in dataset.records} == {e.caption for e in entries}
    assert all(r["state"]["scenario"] == r["scenario"] == "solo" and r["frames"] == 9 for r in dataset.records)
    assert dataset[0].latent.shape == (4, 3, 4, 4)


def test_digest_names_the_encoder_whatever_the_decoder_or_stored_precision(vae_dir, tmp_path):
    from kinetoscope.release.weights import copy_tree

    half = tmp_path / "half"
    copy_tree(vae_dir, half, torch.float16)  # how a bundle stores it
    assert vae_digest(half) == vae_digest(vae_dir)
    vae = CausalVAE.from_pretrained(vae_dir)
    with torch.no_grad():
        next(vae.decoder.parameters()).add_(1.0)  # another decoder: the latents still hold
        vae.save_pretrained(tmp_path / "decoder")
        next(vae.encoder.parameters()).add_(1.0)  # another encoder: they do not
        vae.save_pretrained(tmp_path / "encoder")
    assert vae_digest(tmp_path / "decoder") == vae_digest(vae_dir)
    assert vae_digest(tmp_path / "encoder") != vae_digest(vae_dir)
