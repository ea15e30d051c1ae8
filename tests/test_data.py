"""Training data: token-budget batching, resumable plans, native-size shapes, manifests with bad files, the world stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kinetoscope.data import ManifestEntry, write_manifest
from kinetoscope.data.batching import PlanState, latent_tokens, pixel_count, plan_batches
from kinetoscope.data.datasets import ManifestSource, ShapeRule, WorldSource, collate_videos, group_by_shape
from kinetoscope.data.loader import load_batches
from kinetoscope.errors import ConfigError

COSTS = [5, 3, 9, 2, 7, 4, 4, 1, 8, 6, 3, 5, 2, 9, 1, 7]


def cost(i: int) -> int:
    return COSTS[i % len(COSTS)] + (i // len(COSTS))


def test_token_budget_groups_by_work_not_count():
    plans = list(itertools.islice(plan_batches(cost, budget=12, lookahead=4), 20))
    for p in plans:
        assert p.cost == sum(cost(k) for k in p.keys)
        assert p.cost <= 12 or len(p.keys) == 1
    counts = {len(p.keys) for p in plans}
    assert len(counts) > 1  # the count varies, the work stays near the budget
    assert np.mean([p.cost for p in plans]) > 9
    used = [k for p in plans for k in p.keys]
    assert len(used) == len(set(used))  # no sample twice
    assert set(range(max(used) - 10)) <= set(used)  # none left behind for long


def test_oversized_sample_runs_alone_and_fixed_size_batches():
    plans = list(itertools.islice(plan_batches(lambda i: 100 if i == 2 else 1, budget=10, lookahead=3), 4))
    assert (2,) in [p.keys for p in plans]
    fixed = list(itertools.islice(plan_batches(cost, max_samples=3), 3))
    assert [p.keys for p in fixed] == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]


def test_plan_resumes_from_saved_state_and_ranks_interleave():
    full = list(itertools.islice(plan_batches(cost, budget=12, lookahead=5, rank=1, world_size=3), 12))
    resumed = list(
        itertools.islice(
            plan_batches(
                cost, PlanState.from_dict(full[6].after.to_dict()), budget=12, lookahead=5, rank=1, world_size=3
            ),
            5,
        )
    )
    assert resumed == full[7:12]
    keys = [k for p in full for k in p.keys]
    assert all(k % 3 == 1 for k in keys)  # rank 1 of 3 reads only its own share


def test_work_measures():
    # 17 frames -> 5 latent frames; 64x96 / 8 = 8x12; patch (1, 2, 2) -> 5 * 4 * 6
    assert latent_tokens(17, 64, 96, spatial=8, temporal=4, patch=(1, 2, 2)) == 120
    assert latent_tokens(1, 32, 32, spatial=8, temporal=4, patch=(1, 2, 2)) == 4
    assert pixel_count(5, 16, 8) == 640


def test_shape_rule_cuts_to_what_the_model_accepts():
    rule = ShapeRule(size_multiple=16, frame_step=4, max_frames=17, max_side=64)
    assert rule.fit(30, 100, 200) == (17, 32, 64)  # scaled to max side 64, rounded to 16, 1 + 4k frames
    assert rule.fit(8, 40, 50) == (5, 32, 48)
    assert rule.fit(1, 64, 64) == (1, 64, 64)
    frames = np.zeros((10, 40, 50, 3), np.uint8)
    frames[:, 4:36, 1:49] = 255  # the centre crop is all white
    x = rule.apply(frames, "clip")
    assert x.shape == (3, 9, 32, 48) and torch.all(x == 1.0)


def _write_clip(path, frames=9, size=(32, 48), seed=0):
    from kinetoscope.io import write_video

    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 255, (frames, size[0], size[1], 3), dtype=np.uint8), 10.0)
    return path


@pytest.fixture
def manifest_with_bad_files(tmp_path):
    good = [_write_clip(tmp_path / f"good{i}.mp4", frames=5 + 4 * i, seed=i) for i in range(3)]
    (tmp_path / "text.mp4").write_text("this is not a video")
    half = (tmp_path / "good0.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(half[: len(half) // 8])
    entries = [ManifestEntry(path=p, caption=f"clip {i}") for i, p in enumerate(good)]
    entries += [ManifestEntry(path=tmp_path / n, caption="bad") for n in ("text.mp4", "truncated.mp4", "missing.mp4")]
    return write_manifest(tmp_path / "manifest.jsonl", entries), good


def test_manifest_source_skips_and_lists_unreadable_files(manifest_with_bad_files):
    manifest, good = manifest_with_bad_files
    source = ManifestSource(manifest, seed=0, shape=ShapeRule(size_multiple=16, max_frames=9), cost=pixel_count)
    assert sorted(int(i) for i in [source.entries.index(source.entry(k)) for k in range(6)]) == list(range(6))
    batches = list(
        itertools.islice(
            load_batches(
                source,
                collate_videos,
                PlanState(),
                budget=None,
                max_samples=2,
                lookahead=1,
                rank=0,
                world_size=1,
                num_workers=1,
            ),
            6,
        )
    )  # two epochs
    skipped = [what for b in batches for what, _ in b.skipped]
    assert sorted(set(skipped)) == sorted(
        str(manifest.parent / n) for n in ("missing.mp4", "text.mp4", "truncated.mp4")
    )
    assert len(skipped) == 6  # each bad file once per epoch
    loaded = [s for b in batches if b.data for s in b.data]
    assert len(loaded) == 6 and {s.source for s in loaded} == {str(p) for p in good}
    for s in loaded:  # native size kept, frames cut to 1 + 4k (at most max_frames)
        assert s.pixels.shape[0] == 3 and s.pixels.shape[2:] == (32, 48) and s.pixels.shape[1] in (5, 9)


def test_manifest_order_is_a_seeded_permutation_per_epoch(manifest_with_bad_files):
    manifest, _ = manifest_with_bad_files
    a = ManifestSource(manifest, seed=1, shape=ShapeRule(), cost=pixel_count)
    b = ManifestSource(manifest, seed=1, shape=ShapeRule(), cost=pixel_count)
    first = [a.describe(i) for i in range(12)]
    assert first == [b.describe(i) for i in range(12)]
    assert sorted(first[:6]) == sorted(first[6:]) and first[:6] != first[6:]
    with pytest.raises(ConfigError, match="does not exist"):
        ManifestSource(manifest.parent / "nope.jsonl", seed=0, shape=ShapeRule(), cost=pixel_count)


def test_world_stream_varies_native_shapes_and_costs_match():
    shape = ShapeRule(size_multiple=16, frame_step=4, max_frames=17)
    world = WorldSource(
        7, shape, pixel_count, scenarios=("bounce", "uniform"), sizes=((64, 32), (32, 48)), frames=(1, 9, 17), fps=10.0
    )
    samples = [world.load(i) for i in range(8)]
    shapes = {tuple(s.pixels.shape) for s in samples}
    assert len(shapes) > 2 and {s[3] for s in shapes} == {64, 32}
    for i, s in enumerate(samples):
        assert world.cost(i) == pixel_count(*s.pixels.shape[1:])
        assert s.caption and s.pixels.min() >= -1 and s.pixels.max() <= 1
    again = world.load(3)
    assert torch.equal(again.pixels, samples[3].pixels) and again.caption == samples[3].caption
    groups = group_by_shape(samples)
    assert sum(len(idx) for _, idx in groups) == 8
    assert all(torch.equal(stack[j], samples[i].pixels) for stack, idx in groups for j, i in enumerate(idx))
    with pytest.raises(ConfigError, match="scenarios"):
        WorldSource(0, shape, pixel_count, scenarios=("nope",), sizes=((32, 32),), frames=(1,), fps=10.0)


def test_workers_do_not_change_batches():
    shape = ShapeRule(size_multiple=16, frame_step=4, max_frames=9)
    world = WorldSource(
        1, shape, pixel_count, scenarios=("mixed",), sizes=((32, 32), (48, 32)), frames=(1, 5, 9), fps=10.0
    )

    def run(workers):
        it = load_batches(
            world,
            collate_videos,
            PlanState(),
            budget=40000,
            max_samples=None,
            lookahead=4,
            rank=0,
            world_size=1,
            num_workers=workers,
        )
        return list(itertools.islice(it, 4))

    inline, workers = run(0), run(2)
    assert [b.plan for b in inline] == [b.plan for b in workers]
    for a, b in zip(inline, workers):
        assert all(torch.equal(x.pixels, y.pixels) for x, y in zip(a.data, b.data))
    assert all(b.plan.cost <= 40000 for b in inline)
