"""The procedural world: determinism, physics invariants, visibility, rendering, captions and the CLI."""

import itertools
import json
import math
import re

import numpy as np
import pytest

from kinetoscope.errors import InvalidInputError
from kinetoscope.world import (
    SCENARIOS,
    Background,
    Body,
    Camera,
    ClipSpec,
    Occluder,
    Scene,
    build_state,
    render_clip,
    sample_clip,
)
from kinetoscope.world.captions import describe, shown_velocity
from kinetoscope.world.scenarios import OOD_RADIUS, OOD_SPEED, generate_scene
from kinetoscope.world.shapes import sample_points
from kinetoscope.world.vocabulary import ACTIONS, COLORS, GRAVITY, size_word, speed_word, word_range

PAPER = ClipSpec(128, 128, 32, 10.0)  # the physical-law paper's setup


def states(name, seeds, spec=PAPER):
    """Ground truth only (no rendering) for many seeds: physics tests stay fast."""
    for seed in seeds:
        used, scene = generate_scene(name, np.random.default_rng(seed), spec)
        yield build_state(scene, spec, scenario=used, seed=seed)


def arrays(state, key):
    return np.array([obj[key] for obj in state["objects"]], dtype=np.float64)  # (N, T, ...)


def to_pixels(state, point, frame):
    ppu = state["height"] / 10
    cam_x, cam_y = state["camera"]["offset"][frame]
    return (point[0] - cam_x) * ppu, state["height"] - (point[1] - cam_y) * ppu


def colour_mask(frame, rgb, tolerance=40):
    return np.abs(frame.astype(int) - np.array(rgb)).max(axis=-1) < tolerance


# ---------------------------------------------------------------- determinism
def test_same_seed_same_clip_and_different_seed_different_clip():
    a = sample_clip("mixed", seed=7, width=48, height=32, frames=9, fps=8)
    b = sample_clip("mixed", seed=7, width=48, height=32, frames=9, fps=8)
    c = sample_clip("mixed", seed=8, width=48, height=32, frames=9, fps=8)
    assert np.array_equal(a.frames, b.frames)
    assert json.dumps(a.state, sort_keys=True) == json.dumps(b.state, sort_keys=True)
    assert a.caption == b.caption and a.short_caption == b.short_caption
    assert not np.array_equal(a.frames, c.frames) or a.state != c.state
    assert a.frames.shape == (9, 32, 48, 3) and a.frames.dtype == np.uint8
    assert a.state["scenario"] in SCENARIOS and a.state["scenario"] != "mixed"


# ---------------------------------------------------------------- physics invariants
def test_uniform_motion_has_constant_speed_within_paper_ranges():
    for state in states("uniform", range(20)):
        (obj,) = state["objects"]
        p, v = np.array(obj["position"]), np.array(obj["velocity"])
        assert 0.7 <= obj["radius"] <= 1.5
        assert np.allclose(v, v[0]) and v[0, 1] == 0 and 1.0 <= abs(v[0, 0]) <= 4.0
        assert np.allclose(np.diff(p, axis=0), v[0] / state["fps"], atol=1e-5)


@pytest.mark.parametrize("name", ["uniform-ood", "collision-ood", "parabola-ood"])
def test_ood_presets_draw_radius_and_speed_outside_the_training_ranges(name):
    def inside(value, bands):
        return any(lo - 1e-6 <= value <= hi + 1e-6 for lo, hi in bands)

    for state in states(name, range(25)):
        for obj in state["objects"]:
            assert inside(obj["radius"], OOD_RADIUS), obj["radius"]
            assert inside(abs(obj["velocity"][0][0]), OOD_SPEED), obj["velocity"][0]
            assert not (0.7 < obj["radius"] < 1.5) and not (1.0 < abs(obj["velocity"][0][0]) < 4.0)


def test_parabola_follows_g_exactly():
    for state in states("parabola", range(10)):
        (obj,) = state["objects"]
        p, v = np.array(obj["position"]), np.array(obj["velocity"])
        dt = 1 / state["fps"]
        assert state["world"]["gravity"] == GRAVITY
        assert np.allclose(np.diff(p[:, 1], 2) / dt**2, -GRAVITY, atol=1e-2)
        assert np.allclose(np.diff(v[:, 1]) / dt, -GRAVITY, atol=1e-4)
        assert np.allclose(np.diff(p[:, 0]), v[0, 0] * dt, atol=1e-5)  # horizontal speed is kept
        assert v[0, 1] == 0  # thrown horizontally


def test_collisions_conserve_momentum_and_energy_within_one_percent():
    collided = 0
    for state in states("collision", range(15)):
        mass = np.array([obj["mass"] for obj in state["objects"]])
        v = arrays(state, "velocity")
        momentum = (mass[:, None, None] * v).sum(axis=0)  # (T, 2)
        energy = (0.5 * mass[:, None] * (v**2).sum(-1)).sum(axis=0)
        assert np.allclose(momentum, momentum[0], rtol=0.01, atol=1e-6)
        assert np.allclose(energy, energy[0], rtol=0.01)
        hits = [e for e in state["events"] if e["type"] == "collision"]
        if hits:
            collided += 1
            f = hits[0]["frame"]
            assert not np.allclose(v[:, f - 1], v[:, f])  # the collision changed the velocities
    assert collided >= 12


def test_billiards_and_bounces_keep_energy_and_stay_inside_the_walls():
    for name in ("billiards", "bounce"):
        for state in states(name, range(8), ClipSpec(64, 64, 60, 20.0)):
            mass = np.array([obj["mass"] for obj in state["objects"]])
            radius = np.array([obj["radius"] for obj in state["objects"]])
            p, v = arrays(state, "position"), arrays(state, "velocity")
            g = state["world"]["gravity"]
            energy = (mass[:, None] * (0.5 * (v**2).sum(-1) + g * p[..., 1])).sum(axis=0)
            assert np.allclose(energy, energy[0], rtol=1e-3)
            assert (p[..., 1] - radius[:, None] >= state["world"]["floor_y"] - 1e-4).all()
            assert (p[..., 0] - radius[:, None] >= -1e-4).all()
            for i in range(len(radius)):
                for j in range(i + 1, len(radius)):
                    gap = np.linalg.norm(p[i] - p[j], axis=-1) - radius[i] - radius[j]
                    assert gap.min() > -1e-4


def test_a_dropped_ball_bounces_when_physics_says_and_comes_back_up():
    ball = Body("ball", "red", 0.5, (5.0, 5.5), (0.0, 0.0))
    state = build_state(Scene(bodies=(ball,), gravity=GRAVITY, walls=("floor",)), ClipSpec(64, 64, 41, 20.0))
    fall = math.sqrt(2 * 5.0 / GRAVITY)
    bounces = [e for e in state["events"] if e["type"] == "bounce"]
    assert [e["wall"] for e in bounces] == ["floor"] * len(bounces) and len(bounces) >= 1
    assert bounces[0]["time"] == pytest.approx(fall, abs=1e-6)
    assert bounces[0]["frame"] == math.ceil(fall * 20)
    y = np.array(state["objects"][0]["position"])[:, 1]
    assert y.min() >= 0.5 - 1e-6
    # Elastic: after the bounce it climbs back to the start height at twice the fall time.
    back = round(2 * fall * 20)
    assert y[back] == pytest.approx(5.5 - 0.5 * GRAVITY * (back / 20 - 2 * fall) ** 2, abs=1e-5)


def test_an_occluded_object_comes_out_where_physics_puts_it():
    seen = 0
    for seed in range(6):
        clip = sample_clip("occlusion", seed=seed, width=96, height=64, frames=32, fps=10)
        state = clip.state
        for obj in state["objects"]:
            labels = obj["visibility"]
            ids = [e for e in state["events"] if e["objects"] == [obj["id"]]]
            assert "occluded" in [e["type"] for e in ids] and "reappear" in [e["type"] for e in ids]
            out = next(e["frame"] for e in ids if e["type"] == "reappear")
            hidden = [f for f in range(out) if obj["visible_fraction"][f] == 0]
            assert hidden, "the object should be fully hidden at some point"
            after = [f for f in range(out, len(labels)) if labels[f] == "visible"]
            f = after[0]
            p = np.array(obj["position"])
            # Behind the bar it kept moving uniformly ...
            assert p[f] == pytest.approx(p[0] + np.array(obj["velocity"][0]) * f / state["fps"], abs=1e-5)
            # ... and the pixels show it exactly there (a shape's area centroid is off its box centre).
            mask = colour_mask(clip.frames[f], obj["rgb"])
            rows, cols = np.nonzero(mask)
            centroid = p[f] + obj["radius"] * sample_points(obj["shape"])[0].mean(axis=0)
            cx, cy = to_pixels(state, centroid, f)
            assert abs(cols.mean() + 0.5 - cx) < 0.6 and abs(rows.mean() + 0.5 - cy) < 0.6
            seen += 1
    assert seen >= 6


def test_visibility_labels_and_fractions_agree_with_the_view():
    for state in states("crossing", range(5), ClipSpec(64, 48, 40, 10.0)):
        for obj in state["objects"]:
            labels, frac = obj["visibility"], np.array(obj["visible_fraction"])
            assert labels[0] == "out" and labels[-1] == "out"
            assert "visible" in labels and "partial" in labels
            assert all(frac[f] == 0 for f, label in enumerate(labels) if label == "out")
            assert all(frac[f] == 1 for f, label in enumerate(labels) if label == "visible")
            # Partly out: the outline is cut; the share of area in view grows while it enters.
            partial = [f for f, label in enumerate(labels) if label == "partial"]
            assert 0 < frac[partial].mean() < 1
            entering = partial[: partial.index(labels.index("visible") - 1) + 1]
            assert (np.diff(frac[entering]) >= 0).all()
            kinds = [e["type"] for e in state["events"] if e["objects"] == [obj["id"]]]
            assert kinds == ["enter", "exit"]


# ---------------------------------------------------------------- rendering
def test_renders_tiny_huge_and_odd_sizes():
    for width, height in [(4, 4), (2048, 8), (33, 17), (7, 64)]:
        clip = sample_clip("billiards", seed=1, width=width, height=height, frames=3, fps=10)
        assert clip.frames.shape == (3, height, width, 3)
        assert clip.state["world"]["view_width"] == pytest.approx(10 * width / height, rel=1e-6)


def test_a_ball_is_drawn_anti_aliased_with_the_right_area_and_centre():
    ball = Body("ball", "blue", 1.3, (4.2, 5.7))
    clip = render_clip(Scene(bodies=(ball,)), width=101, height=80, frames=1, fps=10)
    frame = clip.frames[0].astype(np.float64)
    coverage = (255 - frame[..., 0]) / (255 - COLORS["blue"][0])  # white -> blue along red channel
    ppu = 8.0
    assert coverage.sum() == pytest.approx(math.pi * (1.3 * ppu) ** 2, rel=0.01)
    rows, cols = np.indices(coverage.shape)
    assert (coverage * (cols + 0.5)).sum() / coverage.sum() == pytest.approx(4.2 * ppu, abs=0.05)
    assert (coverage * (rows + 0.5)).sum() / coverage.sum() == pytest.approx(80 - 5.7 * ppu, abs=0.05)
    edge = ((coverage > 0.05) & (coverage < 0.95)).sum()
    assert edge > 2 * math.pi * 1.3 * ppu * 0.8  # a band of partial pixels all around


@pytest.mark.parametrize("shape", ["square", "triangle", "star"])
def test_every_shape_rests_exactly_on_the_floor(shape):
    body = Body(shape, "red", 1.0, (5.0, 1.0))  # bottom of its box at y = 0
    frame = render_clip(Scene(bodies=(body,)), width=64, height=64, frames=1, fps=10).frames[0]
    rows = np.nonzero(colour_mask(frame, COLORS["red"], 60).any(axis=1))[0]
    tolerance = 1 if shape == "star" else 0
    assert 63 - tolerance <= rows.max() <= 63 and rows.min() >= 64 - 2 * 6.4 - 1


def test_pan_looks_the_same_when_the_camera_comes_back():
    clip = sample_clip("pan", seed=3, width=64, height=48, frames=21, fps=10)
    offsets = np.array(clip.state["camera"]["offset"])[:, 0]
    assert offsets[0] == 0 and offsets.max() == pytest.approx(clip.state["camera"]["pan"], rel=1e-3)
    assert clip.state["world"]["scene_width"] > 2 * clip.state["world"]["view_width"]
    frames = clip.frames.astype(int)
    assert np.abs(frames[10] - frames[0]).max() > 50  # the camera really moved
    for f in range(10):
        assert np.abs(frames[f] - frames[20 - f]).max() <= 1


def test_paint_trail_persists():
    clip = sample_clip("paint", seed=2, width=64, height=64, frames=30, fps=10)
    paint = clip.state["paint"]
    masks = [colour_mask(frame, paint["rgb"], 30) for frame in clip.frames]
    brush = clip.state["objects"][paint["brush"]]
    rows, cols = np.indices(masks[0].shape)
    for f, (before, after) in enumerate(itertools.pairwise(masks)):
        x, y = to_pixels(clip.state, brush["position"][f], f)
        head = np.hypot(cols + 0.5 - x, rows + 0.5 - y) < brush["radius"] * 6.4 + 1
        assert (after | ~before | head).all()  # nothing painted is ever erased (the brush head moves on)
    assert masks[-1].sum() > 3 * masks[0].sum()
    # The trail follows the brush: its start position is still painted at the end.
    x, y = to_pixels(clip.state, paint["path"][0][1:], 0)
    assert masks[-1][int(y), int(x)]


def test_agent_positions_follow_its_actions_and_the_caption_says_them():
    for seed in range(4):
        clip = sample_clip("agent", seed=seed, width=80, height=64, frames=25, fps=12)
        state = clip.state
        agent = next(obj for obj in state["objects"] if obj["role"] == "agent")
        p = np.array(agent["position"])
        step = np.array([ACTIONS[a] for a in state["actions"]], dtype=float)
        speed = np.abs(np.diff(p, axis=0)).max() * state["fps"]
        assert len(state["actions"]) == 24
        assert np.allclose(np.diff(p, axis=0), step * speed / state["fps"], atol=1e-5)
        runs = re.search(r"The player's actions are: (.*?)\.", clip.caption).group(1)
        spelled = [
            a for run in runs.split(", ") for a in [run.split(" for ")[0]] * int(run.split(" for ")[1].split()[0])
        ]
        assert spelled == state["actions"]


# ---------------------------------------------------------------- captions
def test_every_object_appears_in_the_detailed_caption():
    spec = ClipSpec(64, 64, 24, 10.0)
    for name in SCENARIOS:
        for state in states(name, range(3), spec):
            short, detailed = describe(state)
            assert short and detailed.endswith(".")
            for index, obj in enumerate(state["objects"]):
                phrase = f"{size_word(obj['radius'])} {obj['color']} {obj['shape']}"
                assert phrase in detailed, (name, phrase, detailed)
                if obj["role"] == "object" and not state["world"]["gravity"]:
                    speed = math.hypot(*shown_velocity(state, index))
                    assert speed < 0.05 or f"at a {speed_word(speed)} speed" in detailed
            for event in state["events"]:
                assert re.search(rf"\bframes? [\d, and]*\b{event['frame']}\b", detailed)
            assert state["background"]["colors"][0] in detailed


def test_caption_style_for_a_known_scene():
    a = Body("ball", "red", 1.3, (2.0, 5.0), (3.5, 0.0))
    b = Body("square", "blue", 0.6, (8.0, 5.0), (-1.5, 0.0))
    clip = render_clip(Scene(bodies=(a, b)), width=64, height=64, frames=20, fps=10)
    assert clip.short_caption == "a red ball and a blue square collide"
    hit = next(e for e in clip.state["events"] if e["type"] == "collision")["frame"]
    assert clip.caption.startswith(
        "A large red ball at the left moves right at a fast speed. "
        "A small blue square at the right moves left at a slow speed. "
        "The background is plain white. The camera is static. "
        f"The red ball and the blue square collide at frame {hit}."
    )


def test_vocabulary_words_map_back_to_their_ranges():
    for value in (0.3, 0.7, 1.0, 1.45, 2.0):
        low, high = word_range(size_word(value))
        assert low <= value < high
    for value in (0.0, 0.5, 1.5, 2.5, 4.0, 6.0):
        low, high = word_range(speed_word(value))
        assert low <= value < high
    with pytest.raises(InvalidInputError, match="not a size or speed word"):
        word_range("enormous")


def test_bad_scenes_and_specs_are_refused_with_one_sentence():
    with pytest.raises(InvalidInputError, match="Shape 'circle'"):
        Body("circle", "red", 1.0, (0, 0))
    with pytest.raises(InvalidInputError, match="palette"):
        Body("ball", "mauve", 1.0, (0, 0))
    with pytest.raises(InvalidInputError, match="from 4 to 2048"):
        ClipSpec(3, 3, 10, 10)
    with pytest.raises(InvalidInputError, match="needs actions"):
        Scene(bodies=(Body("ball", "red", 1.0, (1, 1), role="agent"),))
    with pytest.raises(InvalidInputError, match="static camera"):
        Scene(bodies=(Body("ball", "red", 1.0, (1, 1), role="brush"),), camera=Camera(pan=3.0))
    with pytest.raises(InvalidInputError, match="takes 3 colour"):
        Background("floor", ("white",))
    with pytest.raises(InvalidInputError, match="x0 < x1"):
        Occluder(2.0, 1.0, 0.0, 1.0)


# ---------------------------------------------------------------- command line
def test_world_sample_cli_writes_clips_and_a_byte_identical_manifest(cli, tmp_path, monkeypatch):
    from kinetoscope.data import read_manifest
    from kinetoscope.io import probe

    monkeypatch.chdir(tmp_path)
    args = [
        "world",
        "sample",
        "--scenario",
        "collision",
        "--n",
        "3",
        "--size",
        "48x32",
        "--frames",
        "9",
        "--fps",
        "10",
        "--seed",
        "5",
    ]
    code, out, err = cli(*args, "--out", "a")  # relative to the working directory
    assert code == 0, err
    assert "wrote 3 clips" in out
    code, _, err = cli(*args, "--out", tmp_path / "b")
    assert code == 0, err
    for name in ["manifest.jsonl", "clip_00000.json", "clip_00002.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    entries = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert len(entries) == 3 and len(list((tmp_path / "a").glob("*.mp4"))) == 3
    for entry in entries:
        info = probe(entry.path)
        assert (info.width, info.height, info.num_frames) == (48, 32, 9)
        state = entry.load_state()
        assert state["state_version"] == 1 and entry.caption == describe(state)[1]
        assert entry.extra["scenario"] == "collision" and (entry.fps, entry.frames) == (10.0, 9)
    # Clip i does not depend on how many clips are drawn.
    code, _, err = cli(*args[:5], "1", *args[6:], "--out", tmp_path / "c")
    assert code == 0, err
    first = (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()[0]
    assert (tmp_path / "c" / "manifest.jsonl").read_text() == first + "\n"
    assert json.loads(first)["path"] == "clip_00000.mp4" and json.loads(first)["state_path"] == "clip_00000.json"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "3x3"], "from 4 to 2048"),
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--n", "0"], "at least 1"),
        (["--scenario", "tornado"], "Unknown scenario 'tornado'"),
        (["--frames", "0"], "at least 1"),
    ],
)
def test_world_sample_cli_refuses_bad_arguments(cli, tmp_path, args, message):
    code, _, err = cli("world", "sample", *args, "--out", tmp_path / "x")
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_world_scenarios_cli_lists_every_scenario(cli):
    code, out, _ = cli("world", "scenarios")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed == list(SCENARIOS)
    assert all(len(line.split(maxsplit=1)) == 2 for line in out.splitlines())


def test_solo_keeps_one_object_in_view_moving_as_its_caption_says():
    import math

    from kinetoscope.world import sample_clip
    from kinetoscope.world.vocabulary import DIRECTIONS

    headings = set()
    for seed in range(40):
        clip = sample_clip("solo", seed=seed, width=128, height=96, frames=21, fps=10.0)
        (obj,) = clip.state["objects"]
        positions = obj["position"]
        assert len(positions) == 21
        view_width = 10.0 * 128 / 96
        for x, y in positions:  # wholly in view in every frame
            assert obj["radius"] - 1e-6 <= x <= view_width - obj["radius"] + 1e-6
            assert obj["radius"] - 1e-6 <= y <= 10.0 - obj["radius"] + 1e-6
        dx, dy = positions[-1][0] - positions[0][0], positions[-1][1] - positions[0][1]
        word = DIRECTIONS[round(math.degrees(math.atan2(dy, dx)) / 45.0) % 8]
        assert f" moves {word} " in clip.caption
        headings.add(word)
    assert headings == set(DIRECTIONS)


def test_a_heading_turned_before_frame_1_is_captioned_as_the_frames_show_it():
    from kinetoscope.language.parse import parse_caption
    from kinetoscope.world.clip import clip_seed
    from kinetoscope.world.vocabulary import direction_word

    turned = 0
    for i in range(40):
        clip = sample_clip("billiards", seed=clip_seed(5, i), width=32, height=32, frames=9)
        objects = parse_caption(clip.caption).objects
        for index, obj in enumerate(clip.state["objects"]):
            early = [
                e for e in clip.state["events"]
                if index in e["objects"] and e["type"] in ("bounce", "collision") and e["frame"] <= 1
            ]  # fmt: skip
            before, after = (direction_word(*v) for v in obj["velocity"][:2])
            if early and before != after:
                turned += 1
                assert objects[index].direction == after, (i, clip.caption)  # never the heading no frame shows
            elif objects[index].direction is not None:
                assert objects[index].direction == before, (i, clip.caption)
    assert turned >= 3  # billiards balls often start against a cushion
