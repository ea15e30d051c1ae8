"""Evaluation: detectors, every metric's floor on the world's own renders, and each fault found on clips broken on purpose."""

import copy
import json
import sys

import numpy as np
import pytest
from PIL import Image

from kinetoscope.errors import InvalidInputError
from kinetoscope.eval import (
    THRESHOLDS,
    conditioning_fidelity,
    detect_video,
    loop_seam,
    object_permanence,
    prompt_adherence,
    prompt_claims,
    run_suite,
    scene_consistency,
    temporal_flicker,
    to_world,
    velocity_error,
    world_oracle,
)
from kinetoscope.eval.suites import mp4_round_trip
from kinetoscope.language import parse_caption
from kinetoscope.world import Background, Body, Scene, render_clip, render_state, sample_clip
from kinetoscope.world.vocabulary import COLORS, OCCLUDER_COLOR, PRESET_COLORS, place_phrase


def mp4_clip(scenario, seed):
    """A world clip and its frames as they come back from an mp4 file (lossy, as the floors are measured)."""
    clip = sample_clip(scenario, seed=seed)
    return clip, mp4_round_trip(clip.frames, clip.fps)


def rerender(state, edit):
    """Frames of a copy of ``state`` changed by ``edit`` (the scoring still uses the original state)."""
    changed = copy.deepcopy(state)
    edit(changed)
    return render_state(changed)


# ---------------------------------------------------------------- detectors
def test_detector_finds_each_shape_with_its_position_radius_and_shape():
    bodies = (
        Body("ball", "red", 1.1, (2.0, 7.3)),
        Body("square", "blue", 0.9, (6.2, 7.1)),
        Body("triangle", "green", 1.2, (2.6, 2.4)),
        Body("star", "orange", 1.3, (6.9, 2.6)),
        Body("ball", "purple", 1.0, (9.6, 5.0)),  # partly out of view on the right
    )
    clip = render_clip(Scene(bodies=bodies, background=Background("plain", ("cream",))), width=128, height=128, frames=1, fps=10)
    (found,) = detect_video(clip.frames)
    by_color = {d.color: d for d in found}
    assert sorted(by_color) == sorted(b.color for b in bodies)
    for body in bodies:
        d = by_color[body.color]
        position = to_world(d.center, height=128)
        assert d.cut == (body.color == "purple")
        assert np.linalg.norm(position - body.position) < (0.1 if d.cut else 0.03), body
        assert abs(d.radius / 12.8 - body.radius) < (0.1 if d.cut else 0.04), body
        if not d.cut:
            assert d.shape == body.shape


def test_detector_ignores_blended_rims_and_background():
    # Red over white looks pink at its rim, and red against yellow looks orange where they meet.
    bodies = (Body("ball", "red", 1.0, (3.0, 5.0)), Body("ball", "yellow", 1.0, (5.0, 5.0)))
    clip = render_clip(Scene(bodies=bodies), width=96, height=96, frames=1, fps=10)
    frames = mp4_round_trip(np.repeat(clip.frames, 2, axis=0), 10)
    for found in detect_video(frames):
        assert sorted(d.color for d in found) == ["red", "yellow"]


# ---------------------------------------------------------------- prompts
def test_prompt_parser_reads_the_captioners_phrasing():
    claims = prompt_claims(
        "A large red ball is thrown right at a fast speed and falls. A small blue square stays still. "
        "A medium green star moves up-left at a slow speed. The camera is static. "
        "The red ball bounces off the floor at frames 3 and 9. The red ball and the blue square collide at frame 7. "
        "The red ball leaves the frame at frame 20."
    )
    objects = {(o.color, o.shape): (o.motion, o.direction) for o in claims.objects}
    assert objects == {("red", "ball"): ("thrown", "right"), ("blue", "square"): ("still", None), ("green", "star"): ("moves", "up-left")}
    assert claims.count == 3 and not claims.camera_moves
    assert [(e.kind, e.objects, e.wall, e.frames) for e in claims.events] == [
        ("bounce", (("red", "ball"),), "floor", (3, 9)),
        ("collision", (("blue", "square"), ("red", "ball")), None, (7,)),
    ]
    assert prompt_claims("five objects fall").count == 5
    assert prompt_claims("a sunset over the sea").empty


def test_prompt_claims_of_short_prompts_keep_what_the_detectors_can_check():
    def read(prompt):
        claims = prompt_claims(prompt)
        objects = [(o.color, o.shape, o.motion, o.direction) for o in claims.objects]
        return objects, claims.count, [(e.kind, e.objects, e.wall, e.frames) for e in claims.events], claims.camera_moves

    assert read("a red ball moves right") == ([("red", "ball", "moves", "right")], 1, [], False)
    assert read("three objects fall") == ([], 3, [], False)  # no colours: a count and nothing else
    assert read("a small green star is thrown up-left and falls") == ([("green", "star", "thrown", "up-left")], 1, [], False)
    assert read("a red ball and a blue ball collide at frame 7") == (
        [("red", "ball", None, None), ("blue", "ball", None, None)], 2,
        [("collision", (("blue", "ball"), ("red", "ball")), None, (7,))], False,
    )  # fmt: skip
    # A motion or a bounce said of several objects, or a collision of three, is not one the tracks can settle.
    assert read("a red ball and a blue ball bounce")[2] == []
    assert read("a red ball, a blue ball and a green star collide")[2] == []
    assert read("a red ball and a blue ball stand still")[0] == [("red", "ball", None, None), ("blue", "ball", None, None)]
    # The player's and the brush's roles are no motion; a heading needs its direction.
    assert read("a player moves a pink triangle")[0] == [("pink", "triangle", None, None)]
    assert read("a pink ball paints a trail")[0] == [("pink", "ball", None, None)]
    assert read("the camera pans") == ([], None, [], True)
    # The words the prompt reader knows are read here too, as the expander reads them.
    assert read("a purple circle moves down right slowly")[0] == [("purple", "ball", "moves", "down-right")]


# ---------------------------------------------------------------- velocity error: floors and faults
@pytest.mark.parametrize("scenario, after", [("uniform", None), ("collision", "collision"), ("parabola", None)])
def test_velocity_error_floor_on_mp4_renders_is_near_the_papers(scenario, after):
    values = []
    for seed in (0, 3):
        clip, frames = mp4_clip(scenario, seed)
        result = velocity_error(frames, clip.state, given=3, after=after)
        assert result.passed and result.count >= 5 and result.details["missed"] == 0
        values.append(result.value)
    # The paper's floors are 0.010 (uniform), 0.012 (collision), 0.021 (parabola).
    assert 0.002 < np.mean(values) < 0.03


def test_velocity_error_counts_only_generated_frames_in_view_and_after_the_collision():
    clip = sample_clip("collision", seed=0)
    everything = velocity_error(clip.frames, clip.state, given=0)
    after = velocity_error(clip.frames, clip.state, given=3, after="collision")
    first = next(e["frame"] for e in clip.state["events"] if e["type"] == "collision")
    assert after.count < everything.count
    assert after.count <= 2 * (clip.num_frames - 1 - first)


def test_teleported_ball_makes_the_velocity_error_jump():
    clip, frames = mp4_clip("uniform", 2)
    floor = velocity_error(frames, clip.state)

    def teleport(state):
        obj = state["objects"][0]
        dy = 1.0 if obj["position"][0][1] < 5 else -1.0
        for t in range(10, state["frames"]):
            obj["position"][t][1] += dy

    broken = velocity_error(rerender(clip.state, teleport), clip.state)
    assert broken.value > 10 * floor.value and not broken.passed


def test_shuffled_frames_make_the_velocity_error_jump():
    clip, frames = mp4_clip("uniform", 0)
    order = np.concatenate([np.arange(3), 3 + np.random.default_rng(0).permutation(clip.num_frames - 3)])
    broken = velocity_error(frames[order], clip.state)
    assert broken.value > 1.0 and not broken.passed


# ---------------------------------------------------------------- prompt adherence
def test_adherence_floor_and_swapped_colours():
    clip, frames = mp4_clip("collision", 4)
    truth = prompt_adherence(frames, clip.caption, fps=clip.fps)
    assert truth.value == 1.0 and truth.passed and truth.count >= 7
    assert any("collide" in c["claim"] and c["passed"] for c in truth.details["claims"])

    used = {o["color"] for o in clip.state["objects"]}
    spare = [c for c in PRESET_COLORS if c not in used]

    def swap(state):
        for obj, color in zip(state["objects"], spare):
            obj["color"], obj["rgb"] = color, list(COLORS[color])

    broken = prompt_adherence(rerender(clip.state, swap), clip.caption, fps=clip.fps)
    assert not broken.passed and broken.value < 0.5
    failed = {c["claim"] for c in broken.details["claims"] if not c["passed"]}
    assert {f"a {o['color']} object is in the video" for o in clip.state["objects"]} <= failed


def test_adherence_sees_a_wrong_direction_and_a_missing_bounce():
    clip = sample_clip("uniform", seed=5)
    (obj,) = clip.state["objects"]
    flipped = "left" if obj["velocity"][0][0] > 0 else "right"
    result = prompt_adherence(clip.frames, f"a {obj['color']} ball moves {flipped}", fps=clip.fps)
    assert [c["passed"] for c in result.details["claims"]] == [True, True, False, True]
    no_bounce = prompt_adherence(clip.frames, f"a {obj['color']} ball bounces off the floor", fps=clip.fps)
    assert not no_bounce.passed
    image = prompt_adherence(clip.frames[:1], clip.caption, fps=clip.fps)  # an image: colour, shape, start, count
    assert image.passed and [c["kind"] for c in image.details["claims"]] == ["colour", "shape", "start", "count"]


def test_adherence_checks_where_an_object_starts():
    clip = sample_clip("uniform", seed=5)
    (obj,) = clip.state["objects"]
    start = parse_caption(clip.caption).objects[0].start
    mirror = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
    away = " ".join(mirror[w] for w in start.split() if w in mirror) or "top left"
    for place, holds in ((start, True), (away, False)):
        result = prompt_adherence(clip.frames, f"a {obj['color']} ball {place_phrase(place)}", fps=clip.fps)
        (claim,) = [c for c in result.details["claims"] if c["kind"] == "start"]
        assert claim["passed"] is holds, (place, claim)


def test_adherence_counts_objects_not_colours():
    clip = sample_clip("uniform", seed=5)  # one large red ball moving left
    assert clip.state["occluder"] is None

    def count_claim(frames):
        result = prompt_adherence(frames, clip.caption, fps=clip.fps)
        return next(c for c in result.details["claims"] if c["kind"] == "count")

    assert count_claim(mp4_round_trip(clip.frames, clip.fps)) == {"kind": "count", "claim": "1 objects", "passed": True, "seen": {"red": 1}}

    def twice(state):  # the same ball again, higher or lower in the frame
        again = copy.deepcopy(state["objects"][0])
        again["position"] = [[x, y + (4.5 if y < 5 else -4.5)] for x, y in again["position"]]
        state["objects"].append(again)

    doubled = count_claim(mp4_round_trip(rerender(clip.state, twice), clip.fps))
    assert not doubled["passed"] and doubled["seen"] == {"red": 2}

    def behind_a_post(state):  # a post narrower than the ball splits it in two pieces as it passes
        state["occluder"] = {"x0": 2.4, "x1": 2.9, "y0": 0.0, "y1": 10.0, "rgb": list(COLORS[OCCLUDER_COLOR])}

    split = mp4_round_trip(rerender(clip.state, behind_a_post), clip.fps)
    assert [d.color for d in detect_video(split[10:11])[0]] == ["red", "red"]
    assert count_claim(split)["seen"] == {"red": 1}


# ---------------------------------------------------------------- object permanence
def test_permanence_floor_and_an_object_gone_after_the_occlusion():
    clip, frames = mp4_clip("occlusion", 1)
    truth = object_permanence(frames, clip.state)
    assert truth.value == 1.0 and truth.passed and truth.details["mean_error"] < 0.1

    def vanish(state):
        event = next(e for e in state["events"] if e["type"] == "occluded")
        obj = state["objects"][event["objects"][0]]
        for t in range(event["frame"] + 1, state["frames"]):
            obj["position"][t] = [-50.0, -50.0]

    broken = object_permanence(rerender(clip.state, vanish), clip.state)
    assert not broken.passed and broken.value < 1.0
    assert any(not r["found"] for r in broken.details["reappearances"])


def test_permanence_fails_an_object_that_comes_back_in_the_wrong_place():
    clip = sample_clip("occlusion", seed=1)

    def jump(state):
        for obj in state["objects"]:
            for t in range(state["frames"]):
                if obj["visibility"][t] != "visible" or t > 12:
                    obj["position"][t][1] += 1.2 if obj["position"][t][1] < 5 else -1.2

    broken = object_permanence(rerender(clip.state, jump), clip.state)
    assert not broken.passed
    assert all(r["error"] > 0.5 for r in broken.details["reappearances"])


# ---------------------------------------------------------------- pan consistency, flicker, conditioning, loops
def test_pan_consistency_loop_seam_and_conditioning_on_a_pan():
    clip, frames = mp4_clip("pan", 2)
    consistent = scene_consistency(frames)
    assert consistent.passed and consistent.value > 40
    seam = loop_seam(frames)
    assert seam.passed and seam.value < 0.5
    given = conditioning_fidelity(frames, clip.frames[:3])
    assert given.passed and given.value > 33
    assert conditioning_fidelity(clip.frames, clip.frames[:3]).value == 100.0  # identical: the cap

    def recolour(state):
        spare = next(c for c in PRESET_COLORS if c not in {o["color"] for o in state["objects"]})
        for obj in state["objects"]:
            obj["color"], obj["rgb"] = spare, list(COLORS[spare])

    recoloured = rerender(clip.state, recolour)
    changed = frames.copy()
    changed[16:] = recoloured[16:]  # every object changes colour on the way back
    assert not scene_consistency(changed).passed

    cut = loop_seam(frames[:20])
    assert not cut.passed and cut.value > THRESHOLDS["seam"]
    noisy = np.clip(frames[:3].astype(int) + np.random.default_rng(0).integers(-40, 40, frames[:3].shape), 0, 255).astype(np.uint8)
    assert not conditioning_fidelity(np.concatenate([noisy, frames[3:]]), clip.frames[:3]).passed


def test_flicker_floor_and_flickering_brightness():
    clip, frames = mp4_clip("collision", 6)
    truth = temporal_flicker(frames, clip.state)
    assert truth.passed and truth.value < 0.5
    offsets = np.random.default_rng(0).integers(-8, 9, clip.num_frames)[:, None, None, None]
    flickering = np.clip(frames.astype(int) + offsets, 0, 255).astype(np.uint8)
    broken = temporal_flicker(flickering, clip.state)
    assert not broken.passed and broken.value > 4
    static = sample_clip("static", seed=0)
    still = temporal_flicker(static.frames, static.state)
    assert still.value == 0.0 and "100% of the frame" in still.over


def test_metrics_reject_frames_that_do_not_match_the_ground_truth():
    clip = sample_clip("uniform", seed=0)
    with pytest.raises(InvalidInputError, match="ground truth describes"):
        velocity_error(clip.frames[:10], clip.state)


# ---------------------------------------------------------------- suites with an oracle and a broken generator
def test_suite_with_the_world_oracle_gives_the_floor_and_a_frozen_generator_fails():
    oracle = run_suite("parabola", world_oracle(), n=2, seed=1)
    summary = oracle.summary()
    assert summary["velocity"]["clips"] == 2 and summary["velocity"]["mean"] < 0.03
    assert summary["velocity"]["pass_rate"] == 1.0 and summary["conditioning"]["mean"] == 100.0

    def frozen(request):  # keeps the given frames, then stands still
        return np.concatenate([request.given, np.repeat(request.given[-1:], request.frames - len(request.given), axis=0)])

    broken = run_suite("parabola", frozen, n=2, seed=1).summary()
    assert broken["velocity"]["pass_rate"] == 0.0 and broken["velocity"]["mean"] > 1.0

    with pytest.raises(InvalidInputError, match="uint8 frames of shape"):
        run_suite("uniform", lambda request: request.given, n=1)

    # Five given frames (two whole latent frames of a VAE that compresses time by 4) instead of the suite's three.
    five = run_suite("parabola", frozen, n=2, seed=1, given=5)
    assert five.suite.given == 5 and five.to_dict()["given"] == 5
    assert five.summary()["velocity"]["mean"] != broken["velocity"]["mean"]  # scored from frame 5 on
    with pytest.raises(InvalidInputError, match="given frames must be from 0 to 31"):
        run_suite("uniform", frozen, n=1, given=32)


def test_world_oracle_through_a_vae_scores_what_the_vae_keeps():
    import torch

    class Codec(torch.nn.Module):  # encode keeps the video; decode keeps it or paints it white
        def __init__(self, blank: bool):
            super().__init__()
            self.blank, self.scale = blank, torch.nn.Parameter(torch.ones(()))

        def encode(self, x):
            return x * self.scale

        def decode(self, z):
            return torch.ones_like(z) if self.blank else z

    kept = run_suite("objects", world_oracle(vae=Codec(blank=False)), n=4, frames=21)
    assert kept.claim_rates() == {"colour": 1.0, "shape": 1.0, "motion": 1.0}
    lost = run_suite("objects", world_oracle(vae=Codec(blank=True)), n=4, frames=21)
    assert lost.claim_rates() == {"colour": 0.0, "shape": 0.0, "motion": 0.0}


# ---------------------------------------------------------------- command line
def test_cli_eval_videos_writes_json_and_a_report_with_pictures(cli, tmp_path):
    data = tmp_path / "data"
    assert cli("world", "sample", "--scenario", "uniform", "--n", "1", "--seed", "1", "--out", data)[0] == 0
    extra = sample_clip("occlusion", seed=1)
    from kinetoscope.io import write_video

    write_video(data / "occ.mp4", extra.frames, extra.fps)
    (data / "occ.json").write_text(json.dumps(extra.state))
    with open(data / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"path": "occ.mp4", "caption": extra.caption, "state_path": "occ.json"}) + "\n")
        f.write(json.dumps({"path": "occ.mp4", "caption": "a red ball and a blue ball collide"}) + "\n")

    code, out, err = cli("eval", "videos", "--manifest", data / "manifest.jsonl", "--out", tmp_path / "eval")
    assert code == 0, err
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    suites = results["suites"]
    assert {"uniform", "permanence", "adherence", "flicker"} <= set(suites)
    assert suites["uniform"]["summary"]["velocity"]["mean"] < 0.03
    assert suites["permanence"]["summary"]["permanence"]["pass_rate"] == 1.0
    prompts = {c["prompt"]: c["metrics"]["adherence"]["passed"] for c in suites["adherence"]["clips"]}
    assert prompts["a red ball and a blue ball collide"] is False  # no state: scored on its prompt alone
    report = (tmp_path / "eval" / "report.md").read_text()
    pictures = sorted((tmp_path / "eval" / "pictures").glob("*.png"))
    assert len(pictures) >= 4 and all(f"pictures/{p.name}" in report for p in pictures)
    with Image.open(pictures[0]) as image:
        assert image.width > 128 and image.height > 128
    assert "uniform" in out and "velocity" in out


def test_cli_eval_world_says_it_needs_a_pipeline(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kinetoscope.pipeline", None)  # as if the pipeline were not installed
    code, _, err = cli("eval", "world", "--model", tmp_path, "--suite", "uniform", "--out", tmp_path / "out")
    assert code == 2 and "needs a model directory with a generation pipeline" in err
    assert err.count(".") <= 3  # one sentence (the module name has dots)
    code, _, err = cli("eval", "world", "--model", tmp_path, "--suite", "sideways", "--out", tmp_path / "out")
    assert code == 2 and "Unknown suite 'sideways'" in err


@pytest.mark.slow  # trains the session's tiny model when no other test has yet
def test_cli_eval_world_runs_a_suite_through_a_model_pipeline(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli(
        "eval", "world", "--model", tiny_model_dir, "--suite", "uniform", "--n", "1",
        "--size", "32x32", "--frames", "9", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    (clip,) = json.loads((out / "results.json").read_text())["suites"]["uniform"]["clips"]
    assert clip["metrics"]["conditioning"]["value"] > 30  # the 3 given frames come back (watermarked)
    assert clip["metrics"]["velocity"]["name"] == "velocity"
    assert (out / "pictures" / "uniform_0_frames.png").is_file() and "uniform" in stdout
    assert "| uniform | velocity |" in (out / "report.md").read_text() and "0.022 (DiT-S" in (out / "report.md").read_text()

    # The world's own clips through the model's VAE: what its transformer could reach at most.
    code, stdout, err = cli(
        "eval", "world", "--model", tiny_model_dir, "--suite", "objects", "--n", "2", "--through-vae",
        "--size", "32x32", "--frames", "9", "--out", tmp_path / "ceiling",
    )  # fmt: skip
    assert code == 0, err
    clips = json.loads((tmp_path / "ceiling" / "results.json").read_text())["suites"]["objects"]["clips"]
    assert len(clips) == 2 and "through the VAE of" in (tmp_path / "ceiling" / "report.md").read_text()
    code, _, err = cli("eval", "world", "--model", tiny_model_dir, "--suite", "objects", "--through-vae", "--frames", "8", "--out", out)
    assert code == 2 and "frames" in err and "Traceback" not in err


def test_report_shows_the_papers_figure_beside_each_physics_suite(tmp_path):
    from kinetoscope.eval.paper import paper_figure
    from kinetoscope.eval.report import write_report

    results = [run_suite(s, world_oracle(), n=1, seed=1, width=32, height=32, frames=9, keep=0) for s in ("uniform-ood", "flicker")]
    report = write_report(tmp_path, results, title="t", command="c").read_text()
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in report.splitlines() if line.startswith("| ")}
    assert rows[("uniform-ood", "velocity")].endswith(f"| {paper_figure('uniform-ood')} |")
    assert rows[("uniform-ood", "conditioning")].endswith("| – |") and rows[("flicker", "flicker")].endswith("| – |")
    assert "Kang et al." in report and "32 frames at 10 fps" in report  # whose figures, and at what setting


def test_objects_suite_scores_colour_shape_and_motion_of_short_prompts():
    import numpy as np

    from kinetoscope.eval import run_suite, world_oracle

    truth = run_suite("objects", world_oracle(), n=16, frames=21)
    assert truth.claim_rates() == {"colour": 1.0, "shape": 1.0, "motion": 1.0}
    assert all(len(c.prompt.split()) == 5 and " moves " in c.prompt for c in truth.clips)  # "a red star moves up"

    oracle = world_oracle()

    def mirrored(request):  # the right object, moving the mirrored way (left for right)
        assert request.expand and not len(request.given)
        return np.ascontiguousarray(oracle(request)[:, :, ::-1])

    rates = run_suite("objects", mirrored, n=16, frames=21).claim_rates()
    assert rates["colour"] == 1.0 and rates["shape"] >= 0.75 and rates["motion"] <= 0.5

    def blank(request):
        return np.full((request.frames, request.height, request.width, 3), 255, dtype=np.uint8)

    assert run_suite("objects", blank, n=4, frames=21).claim_rates() == {"colour": 0.0, "shape": 0.0, "motion": 0.0}

    def confetti(request):  # specks of every colour: each named colour is somewhere, but so is everything else
        rng = np.random.default_rng(request.seed)
        frames = np.full((request.frames, request.height, request.width, 3), 255, dtype=np.uint8)
        palette = np.array([(220, 38, 38), (37, 90, 220), (34, 160, 70), (230, 190, 20), (130, 80, 40), (130, 60, 190),
                            (245, 130, 20), (20, 150, 150), (235, 90, 160)], dtype=np.uint8)  # fmt: skip
        for t in range(request.frames):
            for k, colour in enumerate(palette):
                y, x = rng.integers(0, request.height - 8), rng.integers(0, request.width - 8)
                frames[t, y : y + 8, x : x + 8] = colour
        return frames

    assert run_suite("objects", confetti, n=4, frames=21).claim_rates()["colour"] == 0.0
