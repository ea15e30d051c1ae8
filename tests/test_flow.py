"""Rectified flow: time sampling and shift, noising and loss, condition masks, samplers."""

import itertools

import pytest
import torch

from kinetoscope import flow
from kinetoscope.errors import ConfigError, InvalidInputError


def close(a, b, atol=1e-5):
    return torch.allclose(a, b, atol=atol, rtol=0)


def test_logit_normal_times_are_inside_the_unit_interval_and_seeded():
    t = flow.sample_time(20000, torch.Generator().manual_seed(0))
    assert t.shape == (20000,)
    assert (t > 0).all() and (t < 1).all()
    assert t.mean().item() == pytest.approx(0.5, abs=0.01)
    assert ((t > 0.25) & (t < 0.75)).float().mean() > 0.6  # concentrated in the middle, unlike uniform
    assert torch.equal(t, flow.sample_time(20000, torch.Generator().manual_seed(0)))
    extreme = flow.sample_time(1000, torch.Generator().manual_seed(1), mean=0.0, std=40.0)
    assert (extreme > 0).all() and (extreme < 1).all()  # even when the sigmoid saturates


def test_shift_keeps_ends_is_monotone_and_moves_towards_noise():
    t = torch.linspace(0, 1, 101)
    for s in (0.5, 1.0, 3.0):
        shifted = flow.shift(t, s)
        assert shifted[0] == 0 and shifted[-1] == 1
        assert (shifted.diff() > 0).all()
    assert torch.equal(flow.shift(t, 1.0), t)
    assert (flow.shift(t, 3.0)[1:-1] > t[1:-1]).all()


def test_shift_grows_with_token_count():
    config = flow.FlowConfig()
    counts = [16, 256, 1024, 4096, 32768]
    shifts = [flow.shift_for_tokens(n, config) for n in counts]
    assert all(a < b for a, b in itertools.pairwise(shifts))
    assert shifts[1] == pytest.approx(config.shift_at_base)
    assert shifts[3] == pytest.approx(config.shift_at_max)


def test_the_sampling_shift_is_trainings_shifted_further():
    t = torch.linspace(0, 1, 11)
    assert close(flow.shift(flow.shift(t, 1.5), 2.0), flow.shift(t, 3.0))  # shifts compose by multiplying
    plain, shifted = flow.FlowConfig(), flow.FlowConfig(sample_shift=2.5)
    for n in (16, 384, 4096):
        assert flow.sampling_shift(n, plain) == pytest.approx(flow.shift_for_tokens(n, plain))
        assert flow.sampling_shift(n, shifted) == pytest.approx(2.5 * flow.shift_for_tokens(n, plain))
    with pytest.raises(ConfigError, match="shifts must be positive"):
        flow.FlowConfig(sample_shift=0.0)


def test_timesteps_run_from_noise_to_data():
    ts = flow.timesteps(10, 3.0)
    assert ts.shape == (11,) and ts[0] == 1 and ts[-1] == 0
    assert (ts.diff() < 0).all()
    with pytest.raises(InvalidInputError, match="steps"):
        flow.timesteps(0)


def test_add_noise_and_loss():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    t = torch.tensor([0.0, 1.0, 0.5, 0.5, 0.25, 0.75])
    xt, target = flow.add_noise(x0, noise, t)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[1], noise[1])
    assert close(xt[2], (x0[2] + noise[2]) / 2)
    assert torch.equal(target, noise - x0)
    assert flow.flow_loss(target, target).item() == 0
    wrong = target.clone()
    wrong[0] += 10.0  # a known token's error must not count
    mask = torch.tensor([False, True, True, True, True, True])
    assert flow.flow_loss(wrong, target, mask).item() == 0
    assert flow.flow_loss(wrong, target).item() == pytest.approx(100 / 6)


@pytest.mark.parametrize(
    "kind, k, expected",
    [
        ("none", 2, [0, 0, 0, 0, 0, 0]),
        ("first", 2, [1, 0, 0, 0, 0, 0]),
        ("first_k", 2, [1, 1, 0, 0, 0, 0]),
        ("last", 3, [0, 0, 0, 1, 1, 1]),
        ("first_last", 2, [1, 0, 0, 0, 0, 1]),
        ("first_k", 99, [1, 1, 1, 1, 1, 0]),  # never everything: one frame is always left to generate
    ],
)
def test_condition_masks_mark_the_right_frames(kind, k, expected):
    assert flow.condition_mask(kind, 6, k=k).int().tolist() == expected


def test_random_condition_masks():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = flow.condition_mask("keyframes", 9, g)
        assert 1 <= mask.sum() <= 8
        assert mask.dtype == torch.bool
        assert 1 <= flow.condition_mask("first_k", 9, g).sum() <= 8
    assert not flow.condition_mask("first", 1).any()  # an image has nothing to condition on
    assert flow.condition_mask("first_last", 2).tolist() == [True, False]
    with pytest.raises(InvalidInputError, match="kind"):
        flow.condition_mask("middle", 5)


def test_draw_condition_mask_follows_the_probabilities():
    only_last = flow.FlowConfig(**{f"mask_{k}": 0.0 for k in flow.MASK_KINDS if k != "last"}, mask_last=1.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        mask = flow.draw_condition_mask(7, g, only_last)
        assert mask[-1] and not mask[0]
    mixed = [flow.draw_condition_mask(7, g).any().item() for _ in range(400)]
    assert 0.35 < sum(mixed) / 400 < 0.65  # half of the default draws condition on something
    with pytest.raises(ConfigError):
        flow.FlowConfig(mask_none=-1.0)


def test_drop_text():
    g = torch.Generator().manual_seed(0)
    prompts = [f"prompt {i}" for i in range(200)]
    assert flow.drop_text(prompts, 0.0, g) == prompts
    assert flow.drop_text(prompts, 1.0, g) == [""] * 200
    dropped = flow.drop_text(prompts, 0.25, g).count("")
    assert 25 < dropped < 75


# --- sampling -----------------------------------------------------------------------------


def oracle(x0):
    """The exact velocity field of the straight path to x0: v(x, t) = (x - x0) / t."""

    def velocity(x, t):
        assert (t > 0).all(), "the sampler must not evaluate the field at t = 0"
        return (x - x0) / t[:, None]

    return velocity


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("time_shift", [1.0, 3.0])
def test_sampler_with_a_perfect_velocity_recovers_the_data(method, time_shift):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    out = flow.sample(oracle(x0), noise, 5, method=method, time_shift=time_shift)
    assert close(out, x0, atol=1e-5)


def test_guidance_one_is_the_conditional_model():
    x0, noise = torch.randn(8, 3), torch.randn(8, 3)

    def uncond(x, t):
        raise AssertionError("guidance 1 must not call the unconditional model")

    out = flow.sample(oracle(x0), noise, 4, uncond_velocity=uncond, guidance=1.0)
    assert torch.equal(out, flow.sample(oracle(x0), noise, 4))


def test_guidance_mixes_and_rescales():
    cond, uncond = torch.randn(10, 4), torch.randn(10, 4)
    assert close(flow.guide(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
    rescaled = flow.guide(cond, uncond, 5.0, rescale=1.0, seq_lens=[4, 6])
    for c, r in zip(cond.split([4, 6]), rescaled.split([4, 6])):
        assert r.std().item() == pytest.approx(c.std().item(), rel=1e-5)
    with pytest.raises(InvalidInputError, match="unconditional"):
        flow.sample(oracle(cond), uncond, 2, guidance=4.0)


def test_known_frames_stay_fixed_and_are_seen_at_time_zero():
    g = torch.Generator().manual_seed(0)
    noise, known = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    known_mask = torch.arange(12) < 4  # e.g. the first latent frame's tokens
    seen = []

    def velocity(x, t):
        seen.append((x[known_mask].clone(), t.clone()))
        return torch.ones_like(x)  # would move every token if nothing held them

    for method in ("euler", "heun"):
        seen.clear()
        out = flow.sample(velocity, noise, 3, method=method, known=known, known_mask=known_mask)
        assert torch.equal(out[known_mask], known[known_mask])
        assert close(out[~known_mask], noise[~known_mask] - 1.0)  # integrated from t=1 to 0 at speed 1
        for x_known, t in seen:
            assert torch.equal(x_known, known[known_mask])
            assert (t[known_mask] == 0).all() and (t[~known_mask] > 0).all()


def test_sdedit_starts_part_way_and_reports_progress():
    start, noise = torch.randn(6, 2), torch.randn(6, 2)
    times, progress = [], []

    def velocity(x, t):
        times.append(t[0].item())
        return noise - start  # the true velocity of the path through start

    out = flow.sample(velocity, noise, 10, start=start, strength=0.5, callback=lambda i, n: progress.append((i, n)))
    assert times[0] == pytest.approx(0.5)
    assert progress == [(i, 5) for i in range(1, 6)]
    assert close(out, start)
    with pytest.raises(InvalidInputError, match="Strength"):
        flow.sample(velocity, noise, 10, strength=0.0)


def test_sampling_a_tiny_dit_keeps_the_given_first_frame():
    from kinetoscope.dit import DiT, DiTConfig, pack

    config = DiTConfig.from_preset("tiny")
    model = DiT(config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    clip = torch.randn(config.in_channels, 3, 4, 4, generator=g)
    batch = pack([clip], config.patch_size)
    known_mask = batch.frames_to_tokens([torch.tensor([True, False, False])])
    text = torch.randn(1, 3, config.text_dim, generator=g)
    mask = torch.ones(1, 3, dtype=torch.bool)

    @torch.no_grad()
    def velocity(x, t):
        return model(batch.with_tokens(x), t, text, mask)

    noise = torch.randn(batch.tokens.shape, generator=g)
    out = flow.sample(velocity, noise, 3, method="heun", known=batch.tokens, known_mask=known_mask)
    frames = batch.unpack(out)[0]
    assert torch.equal(frames[:, 0], clip[:, 0])
    assert not torch.allclose(frames[:, 1:], clip[:, 1:])
