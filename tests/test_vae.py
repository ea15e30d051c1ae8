"""Tests for kinetoscope.vae: shapes, validation, streaming, tiling, losses, save/load."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kinetoscope.errors import ConfigError, InvalidInputError
from kinetoscope.profiling import peak_allocated
from kinetoscope.vae import CausalVAE, VAEConfig
from kinetoscope.vae.layers import CHANNELS_LAST, CausalConv3d
from kinetoscope.vae.losses import (
    PatchDiscriminator,
    VAELossConfig,
    discriminator_active,
    hinge_discriminator_loss,
    kl_loss,
    ssim,
    vae_loss,
)
from kinetoscope.vae.model import DiagonalGaussian
from kinetoscope.vae.stats import measure_latent_stats
from kinetoscope.vae.tiling import tile_starts


def make_vae(seed: int = 0, **overrides) -> CausalVAE:
    torch.manual_seed(seed)
    return CausalVAE(VAEConfig.from_preset("tiny", **overrides)).eval()


def random_video(frames: int, height: int, width: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, height, width, generator=g) * 2 - 1


def smooth_video(frames: int, height: int, width: int) -> torch.Tensor:
    """Low-frequency colour waves: what tiling must reproduce without seams."""
    t = torch.arange(frames).view(frames, 1, 1) / 4
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    channels = [torch.sin(2 * math.pi * (x + 0.5 * y) + t), torch.cos(2 * math.pi * y - t), torch.sin(math.pi * (x - y))]
    shape = (frames, height, width)
    return (0.8 * torch.stack([c.expand(shape) for c in channels])).unsqueeze(0)


# ---------------------------------------------------------------- shapes and validation
@pytest.mark.parametrize("frames", [1, 5, 17, 33])
@pytest.mark.parametrize("size", [(32, 32), (32, 64), (48, 16)])
def test_shapes_for_frame_counts_and_aspect_ratios(frames, size):
    vae = make_vae()
    h, w = size
    with torch.no_grad():
        z = vae.encode(random_video(frames, h, w))
        x_hat = vae.decode(z)
    assert z.shape == (1, 4, 1 + (frames - 1) // 4, h // 8, w // 8)
    assert z.shape[1:] == vae.latent_shape(frames, h, w)
    assert x_hat.shape == (1, 3, frames, h, w)
    assert x_hat.abs().max() <= 1.0 and torch.isfinite(x_hat).all()


@pytest.mark.parametrize(("spatial", "temporal", "multipliers"), [(4, 1, (1, 2, 2)), (16, 2, (1, 1, 2, 2, 2)), (8, 2, (1, 2, 2, 2))])
def test_other_compressions(spatial, temporal, multipliers):
    vae = make_vae(spatial_compression=spatial, temporal_compression=temporal, channel_multipliers=multipliers)
    frames = 1 + 2 * temporal
    with torch.no_grad():
        z = vae.encode(random_video(frames, 32, 48))
        assert z.shape == (1, 4, 3, 32 // spatial, 48 // spatial)
        assert vae.decode(z).shape == (1, 3, frames, 32, 48)


def test_space_to_depth_is_inverted_exactly():
    from kinetoscope.vae.model import depth_to_space, space_to_depth

    x = random_video(5, 16, 24)
    folded = space_to_depth(x, 4)
    assert folded.shape == (1, 48, 5, 4, 6)
    # Channel c*16 + i*4 + j of position (y, x) is pixel (4y + i, 4x + j) of channel c.
    assert folded[0, 1 * 16 + 2 * 4 + 3, 2, 1, 5] == x[0, 1, 2, 1 * 4 + 2, 5 * 4 + 3]
    assert torch.equal(depth_to_space(folded, 4), x)


@pytest.mark.parametrize(
    ("patch", "spatial", "multipliers", "shortcut"),
    [(2, 8, (1, 2, 2, 2), False), (4, 8, (1, 2, 2), False), (8, 8, (1, 2, 2), False), (4, 8, (1, 2, 2), True)],
)
def test_patch_size_shapes_and_chunked_equals_one_shot(patch, spatial, multipliers, shortcut):
    vae = make_vae(
        patch_size=patch, spatial_compression=spatial, channel_multipliers=multipliers, shortcut=shortcut, latent_channels=12
    ).double()
    x = random_video(9, 32, 48).double()
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (1, 12, 3, 32 // spatial, 48 // spatial)
        one_shot = vae.encoder(x)[:, :12]
        for chunk in (4, 8):
            torch.testing.assert_close(vae.encode_posterior(x, chunk_frames=chunk).mean, one_shot, rtol=0, atol=1e-12)
        video = vae.decode(z, clamp=False)
        assert video.shape == x.shape
        torch.testing.assert_close(vae.decode(z, chunk_frames=8, clamp=False), video, rtol=0, atol=1e-12)


def test_shortcut_alone_carries_the_mean_colours_of_each_cells_quadrants():
    from kinetoscope.vae.model import fold_pixels, unfold_latent

    x = random_video(9, 16, 8)  # latent frames: frame 0 alone, frames 1-4, frames 5-8
    folded = fold_pixels(x, spatial=8, temporal=4)  # (colour, quadrant row, quadrant column) as channels
    assert folded.shape == (1, 12, 3, 2, 1)
    # Colour 1, lower-right quadrant (channel 1*4 + 1*2 + 1) of cell (1, 0) in latent frame 2 (frames 5-8).
    torch.testing.assert_close(folded[0, 7, 2, 1, 0], x[0, 1, 5:9, 12:16, 4:8].mean())
    torch.testing.assert_close(folded[0, 0, 0, 0, 0], x[0, 0, 0, 0:4, 0:4].mean())  # frame 0 on its own
    back = unfold_latent(folded, spatial=8, temporal=4, frames=9)
    assert back.shape == x.shape
    assert torch.equal(back[0, 1, 6, 13, 5], folded[0, 7, 2, 1, 0])  # every pixel of a quadrant gets its mean
    # With the convolutions' output at zero the shortcuts alone reconstruct the quadrant means.
    vae = make_vae(patch_size=4, channel_multipliers=(1, 2, 2), latent_channels=12, shortcut=True)
    for head in (vae.encoder.head.conv, vae.decoder.head.conv):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        out = vae.decode(vae.encode(x), clamp=False)
    torch.testing.assert_close(out, back)
    assert (out - x).square().mean() < x.square().mean()  # the quadrant means are closer than zero


def test_cpu_preset_folds_pixels_before_its_convolutions():
    config = VAEConfig.from_preset("cpu")
    vae = CausalVAE(config)
    assert (config.patch_size, config.spatial_compression, config.spatial_downsamples, config.shortcut) == (4, 8, 1, True)
    assert vae.encoder.conv_in.in_channels == 3 * 16 and vae.decoder.head.conv.out_channels == 3 * 16
    assert sum(p.numel() for p in vae.parameters()) < 8_000_000


def test_invalid_configs_raise_config_error():
    with pytest.raises(ConfigError, match="patch_size must be 1, 2, 4 or 8 and divide"):
        VAEConfig.from_preset("tiny", patch_size=3)
    with pytest.raises(ConfigError, match="patch_size must be 1, 2, 4 or 8 and divide"):
        VAEConfig.from_preset("tiny", spatial_compression=4, patch_size=8)
    with pytest.raises(ConfigError, match="latent_channels 4 is fewer"):
        VAEConfig.from_preset("tiny", shortcut=True)
    with pytest.raises(ConfigError, match="spatial_compression"):
        VAEConfig.from_preset("tiny", spatial_compression=6)
    with pytest.raises(ConfigError, match="needs at least 4"):
        VAEConfig.from_preset("tiny", spatial_compression=16)
    with pytest.raises(ConfigError, match="one per latent channel"):
        VAEConfig.from_preset("tiny", latent_mean=(0.0, 1.0))


@pytest.mark.parametrize("frames", [0, 2, 4, 6, 16])
def test_invalid_frame_counts_name_the_accepted_ones(frames):
    vae = make_vae()
    with pytest.raises(InvalidInputError, match=r"1 \+ 4k frames \(1, 5, 9, 13, \.\.\.\), got " + str(frames)):
        vae.encode(torch.zeros(1, 3, frames, 32, 32))


@pytest.mark.parametrize("size", [(30, 32), (32, 4), (0, 32)])
def test_invalid_sizes_name_the_accepted_ones(size):
    vae = make_vae()
    with pytest.raises(InvalidInputError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 1, *size))


def test_other_bad_inputs():
    vae = make_vae()
    with pytest.raises(InvalidInputError, match=r"\(batch, 3, frames, height, width\)"):
        vae.encode(torch.zeros(3, 1, 32, 32))
    with pytest.raises(InvalidInputError, match=r"\(batch, 4, frames"):
        vae.decode(torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(InvalidInputError, match="chunk_frames"):
        vae.encode(torch.zeros(1, 3, 5, 32, 32), chunk_frames=6)
    with pytest.raises(InvalidInputError, match="tile_size"):
        vae.encode(torch.zeros(1, 3, 1, 32, 32), tile_size=20)


# ---------------------------------------------------------------- streaming
def test_chunked_equals_one_shot_in_float64():
    vae = make_vae().double()
    x = random_video(9, 32, 32).double()
    with torch.no_grad():
        one_shot_moments = vae.encoder(x)  # no cache: the whole video at once
        one_shot_video = vae.decoder(one_shot_moments[:, :4])
        for chunk in (4, 8):
            moments = vae.encode_posterior(x, chunk_frames=chunk)
            torch.testing.assert_close(moments.mean, one_shot_moments[:, :4], rtol=0, atol=1e-12)
            video = vae.decode(moments.mean, chunk_frames=chunk, clamp=False)
            torch.testing.assert_close(video, one_shot_video, rtol=0, atol=1e-12)


def test_chunked_equals_one_shot_in_float32_channels_last_fast_path():
    vae = make_vae(seed=1)
    x = random_video(13, 32, 32, seed=1)
    with torch.no_grad():
        one_shot = vae.encoder(x.contiguous(memory_format=CHANNELS_LAST))[:, :4]
        chunked = vae.encode_posterior(x, chunk_frames=4).mean
        torch.testing.assert_close(chunked, one_shot, rtol=1e-5, atol=1e-5)
        one_shot_video = vae.decoder(one_shot.contiguous(memory_format=CHANNELS_LAST))
        torch.testing.assert_close(vae.decode(one_shot, clamp=False), one_shot_video, rtol=1e-5, atol=1e-5)


def test_frame_zero_is_encoded_on_its_own():
    vae = make_vae()
    x = random_video(9, 32, 32)
    changed = x.clone()
    changed[:, :, 1:] = -changed[:, :, 1:]
    with torch.no_grad():
        z, z_changed = vae.encode(x), vae.encode(changed)
        image_latent = vae.encode(x[:, :, :1])
    torch.testing.assert_close(z[:, :, 0], z_changed[:, :, 0])  # causal: later frames cannot reach latent 0
    torch.testing.assert_close(z[:, :, :1], image_latent)  # an image is a one-frame video
    assert not torch.allclose(z[:, :, 1:], z_changed[:, :, 1:])


def test_streaming_memory_does_not_grow_with_duration():
    vae = make_vae()
    short, long = random_video(9, 64, 64), random_video(41, 64, 64)
    with torch.no_grad():
        vae.encode(short)
        peak_short = peak_allocated(lambda: vae.encode(short))
        peak_long = peak_allocated(lambda: vae.encode(long))
    assert peak_long < 1.1 * peak_short, (peak_short, peak_long)


# ---------------------------------------------------------------- tiling
def test_tile_starts_cover_with_overlap():
    assert tile_starts(64, 128, 16) == [0]
    starts = tile_starts(200, 64, 16)
    assert starts[0] == 0 and starts[-1] == 200 - 64
    assert all(b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))


def test_tiled_decode_matches_untiled_on_smooth_input():
    vae = make_vae()
    with torch.no_grad():
        z = vae.encode(smooth_video(1, 256, 256), tile_size=None)
        whole = vae.decode(z, tile_size=None)
        tiled = vae.decode(z, tile_size=128, tile_overlap=64)
    # Tiles differ from the whole frame only where a tile's zero padding or the per-frame
    # attention reach. Bound: on average less than one 8-bit level (2/255), i.e. invisible
    # once written to a video; the worst pixel within a few levels.
    difference = (tiled - whole).abs()
    assert difference.mean() < 1 / 127.5, difference.mean()
    assert difference.max() < 8 / 127.5, difference.max()


def test_tiles_are_exact_away_from_seams_without_attention():
    vae = make_vae(mid_attention=False)
    x = smooth_video(1, 256, 256)
    with torch.no_grad():
        z = vae.encode(x, tile_size=None)
        whole, tiled = vae.decode(z, tile_size=None), vae.decode(z, tile_size=192, tile_overlap=64)
        whole_z, tiled_z = z, vae.encode(x, tile_size=192, tile_overlap=64)
    # Tiles start at pixel 0 and 64; the second tile's blend ramp begins at 64, and the first
    # tile's border (192) is beyond the receptive field of pixels < 64, so those are exact.
    torch.testing.assert_close(tiled[..., :64, :64], whole[..., :64, :64], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tiled_z[..., :8, :8], whole_z[..., :8, :8], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tiled, whole, atol=1e-5)


def test_tiling_bounds_memory_for_large_frames():
    vae = make_vae()
    x = smooth_video(1, 384, 384)
    with torch.no_grad():
        z = vae.encode(x, tile_size=128, tile_overlap=32)
        assert z.shape == (1, 4, 1, 48, 48)
        untiled = peak_allocated(lambda: vae.decode(z, tile_size=None))
        tiled = peak_allocated(lambda: vae.decode(z, tile_size=128, tile_overlap=32))
    assert tiled < 0.5 * untiled, (tiled, untiled)


# ---------------------------------------------------------------- latents
def test_latent_normalisation_is_applied_and_removed():
    vae = make_vae()
    x = random_video(5, 32, 32)
    mean, std = [0.5, -1.0, 0.0, 2.0], [2.0, 0.5, 1.0, 4.0]
    with torch.no_grad():
        raw = vae.encode(x)
        raw_video = vae.decode(raw)
        vae.set_latent_stats(mean, std)
        normalised = vae.encode(x)
        expected = (raw - torch.tensor(mean).view(1, 4, 1, 1, 1)) / torch.tensor(std).view(1, 4, 1, 1, 1)
        torch.testing.assert_close(normalised, expected)
        torch.testing.assert_close(vae.decode(normalised), raw_video)
    assert vae.config.latent_mean == tuple(mean)


def test_measured_stats_normalise_latents():
    vae = make_vae()
    videos = [random_video(5, 32, 32, seed=s) for s in range(3)] + [random_video(1, 16, 48, seed=9)]
    mean, std = measure_latent_stats(vae, videos)
    vae.set_latent_stats(mean, std)
    with torch.no_grad():
        z = torch.cat([vae.encode(v).flatten(2) for v in videos], dim=2)
    torch.testing.assert_close(z.mean(dim=(0, 2)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2), unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


def test_sampling_follows_the_generator():
    vae = make_vae()
    x = random_video(5, 32, 32)
    with torch.no_grad():
        a = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        b = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        c = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(4))
        mean = vae.encode(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c) and not torch.allclose(a, mean)


def test_training_pass_matches_inference_and_has_gradients():
    vae = make_vae()
    x = random_video(5, 32, 32)
    out = vae(x, sample=False)
    with torch.no_grad():
        expected = vae.decode(vae.encode(x), clamp=False)
    torch.testing.assert_close(out.reconstruction, expected, rtol=1e-4, atol=1e-5)
    loss, logs = vae_loss(x, out.reconstruction, out.posterior, VAELossConfig())
    loss.backward()
    grads = [p.grad for p in vae.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert set(logs) == {"l1", "l2", "ssim", "kl", "loss"}


# ---------------------------------------------------------------- losses
def test_reconstruction_terms_on_known_inputs():
    x = random_video(3, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    noise = random_video(3, 32, 32, seed=5)
    slightly, badly = ssim(x, x + 0.1 * noise).item(), ssim(x, x + 0.5 * noise).item()
    assert 1.0 > slightly > badly
    # Flat frames a and b: SSIM = (2ab + c1) / (a^2 + b^2 + c1) with c1 = (0.01 * 2)^2.
    flat = ssim(torch.full((1, 3, 1, 16, 16), 0.5), torch.full((1, 3, 1, 16, 16), -0.5)).item()
    assert flat == pytest.approx((-0.5 + 4e-4) / (0.5 + 4e-4), rel=1e-5)
    standard = DiagonalGaussian(torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 4, 2, 4, 4))
    assert kl_loss(standard).item() == 0.0
    shifted = DiagonalGaussian(torch.ones(1, 4, 2, 4, 4), torch.zeros(1, 4, 2, 4, 4))
    assert kl_loss(shifted).item() == pytest.approx(0.5)
    loss, logs = vae_loss(x, x.clone(), standard, VAELossConfig())
    assert logs["l1"] == 0.0 and logs["kl"] == 0.0 and loss.item() == pytest.approx(0.0, abs=1e-6)
    # An error of 0.5 on every pixel: L1 0.5, L2 0.25, weighted as configured.
    _, logs = vae_loss(x, x + 0.5, standard, VAELossConfig())
    assert logs["l1"] == pytest.approx(0.5) and logs["l2"] == pytest.approx(0.25)
    only_l2 = VAELossConfig(l1_weight=0.0, l2_weight=2.0, ssim_weight=0.0)
    assert vae_loss(x, x + 0.5, standard, only_l2)[0].item() == pytest.approx(0.5, rel=1e-5)


def test_hinge_losses_on_known_logits():
    assert hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0
    assert hinge_discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == 2.0


def test_discriminator_is_off_before_warm_up():
    config = VAELossConfig(discriminator_start=10, adversarial_weight=0.5)
    assert not discriminator_active(9, config) and discriminator_active(10, config)
    assert not discriminator_active(10, config.replace(adversarial_weight=0.0))
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8)
    x = random_video(5, 32, 32)
    x_hat = random_video(5, 32, 32, seed=1)
    posterior = DiagonalGaussian(torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 4, 2, 4, 4))
    before, logs_before = vae_loss(x, x_hat, posterior, config, step=9, discriminator=disc)
    after, logs_after = vae_loss(x, x_hat, posterior, config, step=10, discriminator=disc)
    assert "adversarial" not in logs_before and "adversarial" in logs_after
    expected = before + 0.5 * -disc(x_hat).mean()
    torch.testing.assert_close(after, expected)
    assert disc(x).shape[:3] == (1, 1, 5)


# ---------------------------------------------------------------- save / load
def test_save_and_load_round_trip(tmp_path):
    vae = make_vae(seed=7)
    vae.set_latent_stats([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0])
    vae.save_pretrained(tmp_path / "vae")
    loaded = CausalVAE.from_pretrained(tmp_path / "vae")
    assert loaded.config == vae.config
    x = random_video(5, 32, 48)
    with torch.no_grad():
        z = vae.encode(x)
        torch.testing.assert_close(loaded.encode(x), z, rtol=0, atol=0)
        torch.testing.assert_close(loaded.decode(z), vae.decode(z), rtol=0, atol=0)


# ---------------------------------------------------------------- command line
@pytest.fixture
def vae_dir(tmp_path):
    return make_vae().save_pretrained(tmp_path / "model" / "vae")


def _write_clip(path, frames: int, height: int = 32, width: int = 48):
    import numpy as np

    from kinetoscope.io import write_video

    rng = np.random.default_rng(0)
    return write_video(path, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), 10.0)


def test_cli_reconstruct_writes_video_and_scores(cli, tmp_path, vae_dir):
    from kinetoscope.io import read_video

    clip = _write_clip(tmp_path / "in.mp4", 9)
    code, out, err = cli("vae", "reconstruct", clip, "-o", tmp_path / "out.mp4", "--model", vae_dir.parent)
    assert code == 0, err
    assert "wrote" in out and "PSNR" in out and "SSIM" in out
    assert read_video(tmp_path / "out.mp4").frames.shape == (9, 32, 48, 3)


def test_cli_reconstruct_refuses_or_fits_other_shapes(cli, tmp_path, vae_dir):
    from kinetoscope.io import read_video

    clip = _write_clip(tmp_path / "in.mp4", 7, height=36)
    code, _, err = cli("vae", "reconstruct", clip, "-o", tmp_path / "out.mp4", "--model", vae_dir)
    assert code == 2 and "1 + 4k frames" in err
    code, _, err = cli("vae", "reconstruct", clip, "-o", tmp_path / "out.gif", "--model", vae_dir, "--fit")
    assert code == 0, err
    assert read_video(tmp_path / "out.gif").frames.shape == (5, 32, 48, 3)
    code, _, err = cli("vae", "reconstruct", clip, "-o", tmp_path / "x.mp4", "--model", tmp_path / "missing")
    assert code == 2 and "missing" in err


def test_cli_eval_vae_prints_psnr_and_ssim(cli, tmp_path, vae_dir):
    from kinetoscope.data.manifest import ManifestEntry, write_manifest

    entries = [ManifestEntry(path=_write_clip(tmp_path / f"c{i}.mp4", 5 + i), caption="") for i in range(2)]
    manifest = write_manifest(tmp_path / "m.jsonl", entries)
    code, out, err = cli("eval", "vae", "--manifest", manifest, "--model", vae_dir)
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith("2 clips: PSNR") and "SSIM" in line
    psnr_db = float(line.split("PSNR ")[1].split(" dB")[0])
    assert 0 < psnr_db < 40  # an untrained VAE reconstructs noise poorly, but finitely


def test_trained_tiny_vae_reconstructs_held_out_world_clips(trained_tiny_vae):
    """The bar: 2 dB above a reconstruction that keeps only each frame's mean colour.

    That baseline is what a VAE that learned the background but not the objects gives (on these
    scenes it is about 19 dB, because the balls are a few percent of the pixels), so clearing it
    by 2 dB on clips the training never saw means the balls come through the latent.
    """
    import torch.nn.functional as F

    from kinetoscope.io import frames_to_tensor
    from kinetoscope.vae.evaluate import load_vae, psnr
    from kinetoscope.world import sample_clip

    vae = load_vae(trained_tiny_vae).eval()
    ours, background_only, thumbnail = [], [], []
    for scenario in ("uniform", "collision", "parabola"):
        for seed in range(900, 904):  # training draws its clips from hashed seeds, never these
            x = frames_to_tensor(sample_clip(scenario, seed=seed, width=32, height=32, frames=9).frames)[None]
            with torch.no_grad():
                ours.append(psnr(x, vae.decode(vae.encode(x))))
            background_only.append(psnr(x, x.mean(dim=(3, 4), keepdim=True).expand_as(x)))
            frames = x[0].transpose(0, 1)  # (T, 3, H, W)
            small = F.avg_pool2d(frames, vae.spatial_compression)
            thumbnail.append(psnr(x, F.interpolate(small, size=frames.shape[-2:], mode="bilinear").transpose(0, 1)[None]))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    assert mean(ours) > mean(background_only) + 2.0, (mean(ours), mean(background_only), mean(thumbnail))
    # For scale only: a bilinear thumbnail at the latent's spatial size keeps 3 values per 4x4 pixels of
    # every frame, 3x the numbers of the latent (4 values per 4x4 pixels of 4 frames).
    assert mean(thumbnail) > mean(background_only)


def test_object_colour_error_measures_only_the_pixels_unlike_the_background():
    import numpy as np

    from kinetoscope.vae.evaluate import object_colour_error

    frames = np.full((3, 16, 16, 3), 250, dtype=np.uint8)
    frames[:, 4:8, 4:8] = (220, 38, 38)  # a red square on white: 48 object pixels
    assert object_colour_error(frames, frames) == 0.0
    shifted = frames.copy()
    shifted[:, 4:8, 4:8, 0] -= 30  # the object's red channel off by 30; mean over 3 channels: 10
    shifted[:, 0, 0] = 0  # a background pixel far off does not count
    assert object_colour_error(frames, shifted) == pytest.approx(10.0)
    assert object_colour_error(np.full((1, 8, 8, 3), 9, np.uint8), np.zeros((1, 8, 8, 3), np.uint8)) is None


def test_foreground_weight_counts_object_pixels_that_many_times():
    standard = DiagonalGaussian(torch.zeros(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2))
    x = torch.full((1, 3, 1, 8, 8), -1.0)
    x[..., :2, :2] = 1.0  # a 2x2 object: 4 of 64 pixels
    error = torch.zeros_like(x)
    error[..., :2, :2] = 0.5  # only the object is wrong
    weighted = VAELossConfig(l1_weight=0.0, l2_weight=1.0, ssim_weight=0.0, foreground_weight=4.0)
    loss, logs = vae_loss(x, x + error, standard, weighted)
    assert logs["l2"] == pytest.approx(0.25 * 4 / 64)  # logged: the plain mean, comparable to PSNR
    assert loss.item() == pytest.approx(0.25 * 4 * 4 / (60 + 4 * 4), rel=1e-5)  # each object pixel counts 4 times
    plain = VAELossConfig(l1_weight=0.0, l2_weight=1.0, ssim_weight=0.0)
    assert vae_loss(x, x + error, standard, plain)[0].item() == pytest.approx(logs["l2"], rel=1e-5)


def test_ssim_under_bf16_autocast_is_computed_in_fp32_and_stays_finite_on_flat_frames():
    flat = torch.full((1, 3, 2, 16, 16), 0.9)
    noisy = flat + 0.01 * random_video(2, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = ssim(flat, noisy)
    assert under.dtype == torch.float32 and torch.isfinite(under)
    assert under.item() == pytest.approx(ssim(flat, noisy).item(), abs=1e-6)


@pytest.mark.parametrize("grad", [False, True], ids=["winograd", "direct-with-grad"])
def test_convolutions_run_in_bf16_under_autocast_on_the_fast_path_too(grad):
    torch.manual_seed(0)
    conv = CausalConv3d(16, 16, 3)
    x = random_video(9, 16, 16).repeat(1, 6, 1, 1, 1)[:, :16].contiguous(memory_format=CHANNELS_LAST)
    with torch.set_grad_enabled(grad):
        reference = F.conv3d(conv.padded_input(x.double(), None), conv.weight.double(), conv.bias.double(), 1, conv.padding)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
    assert out.dtype == torch.bfloat16  # as autocast gives for F.conv3d
    error = ((out.double() - reference).norm() / reference.norm()).item()
    assert 1e-4 < error < 1e-2  # bf16's rounding, not float32's 1e-7
