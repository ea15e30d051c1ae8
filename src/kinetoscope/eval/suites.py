"""Named evaluation suites, and scoring generated or existing videos with them.

A suite names the world scenarios its clips are drawn from, the metrics that score them and
how many first frames the generator is given (3 for the physics suites, as in Kang et al.).
:func:`run_suite` draws clips, asks a *generator* (any function from a
:class:`GenerationRequest` to uint8 frames) for each and scores its output against the clip's
ground truth; :func:`world_oracle` is the world's own simulator as a generator, which gives
each metric's floor. :func:`score_manifest` scores videos that already exist against the
ground truth their manifest names.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kinetoscope.errors import ConfigError, InvalidInputError
from kinetoscope.eval import metrics as m
from kinetoscope.eval.adherence import prompt_adherence
from kinetoscope.eval.detect import Detection, detect_video
from kinetoscope.io import DEFAULT_FPS
from kinetoscope.progress import ProgressBar


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    scenarios: tuple[str, ...]  # clip i is drawn from scenarios[i % len(scenarios)]
    metrics: tuple[str, ...]
    given: int = 3  # first frames handed to the generator
    loop: bool = False  # the generator is asked for a loop
    after: str | None = None  # velocity: only intervals after the first event of this type
    short_prompt: bool = False  # prompt with the clip's short caption, as a user types it, expanded by the generator


def _physics(name: str, text: str, after: str | None = None) -> Suite:
    return Suite(name, text, (name,), ("velocity", "conditioning"), after=after)


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        _physics("uniform", "velocity error of one ball in uniform motion (in distribution)"),
        _physics("uniform-ood", "velocity error of one ball in uniform motion, out-of-distribution radius and speed"),
        _physics("collision", "velocity error after two balls collide (in distribution)", "collision"),
        _physics("collision-ood", "velocity error after two balls collide, out-of-distribution radius and speed", "collision"),
        _physics("parabola", "velocity error of a ball thrown under gravity (in distribution)"),
        _physics("parabola-ood", "velocity error of a ball thrown under gravity, out-of-distribution radius and speed"),
        Suite(
            "adherence",
            "the colours, shapes, count, directions and events the prompt names are in the video (prompt only)",
            ("uniform", "collision", "parabola", "crossing", "static", "bounce"),
            ("adherence",),
            given=0,
        ),
        Suite(
            "objects",
            "single-object prompts (a {colour} {shape} moves {direction}): every colour, shape and direction",
            ("solo",),
            ("adherence",),
            given=0,
            short_prompt=True,
        ),
        Suite("permanence", "objects come back from behind an occluder where physics puts them", ("occlusion",), ("permanence", "conditioning")),
        Suite("pan", "the scene looks the same when the panning camera comes back", ("pan",), ("consistency", "conditioning")),
        Suite(
            "flicker",
            "pixels that should not change do not flicker",
            ("static", "uniform", "collision", "crossing", "occlusion"),
            ("flicker", "conditioning"),
        ),
        Suite("loop", "a loop wraps from its last frame to its first without a seam", ("pan",), ("seam", "conditioning"), loop=True),
    )
}


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """What a generator is asked for: a clip like ``prompt`` that starts with the ``given`` frames."""

    prompt: str
    given: np.ndarray  # uint8 (k, H, W, 3): the first k frames, to be kept; k may be 0
    frames: int
    width: int
    height: int
    fps: float
    seed: int
    loop: bool
    scenario: str  # the world scenario behind the prompt: only the oracle may use it
    expand: bool = False  # the prompt is short: expand it into a detailed caption first


Generator = Callable[[GenerationRequest], np.ndarray]


def world_oracle(*, through_mp4: bool = False, vae: Any = None) -> Generator:
    """The world's own simulator as a generator; ``through_mp4`` round-trips its frames through an mp4
    file, and ``vae`` (a :class:`~kinetoscope.vae.CausalVAE`) through its encode and decode: the
    most a transformer generating that VAE's latents can score."""
    from kinetoscope.world import sample_clip

    def generate(request: GenerationRequest) -> np.ndarray:
        clip = sample_clip(
            request.scenario, seed=request.seed, width=request.width, height=request.height, frames=request.frames, fps=request.fps
        )
        frames = clip.frames
        if vae is not None:
            from kinetoscope.vae.evaluate import reconstruct

            frames, _ = reconstruct(vae, frames)
        return mp4_round_trip(frames, request.fps) if through_mp4 else frames

    return generate


def pipeline_generator(model: str | Path, *, device: str = "cpu", dtype: str | None = None) -> Generator:
    """A generator backed by the generation pipeline of ``model`` (a model directory).

    Each request becomes one call ``pipe(prompt, num_frames=, width=, height=, fps=, seed=,
    video=given, loop=)``: the pipeline continues the given frames (or makes a loop starting with
    them) and returns ``num_frames`` frames in all. The prompt is used as written (the world's
    captions are already what the model was trained on) unless the request asks for expansion.
    """
    try:
        from kinetoscope.pipeline import Pipeline
    except ImportError as e:
        if e.name != "kinetoscope.pipeline":
            raise
        raise ConfigError(
            "kinetoscope eval world needs a model directory with a generation pipeline, and this install has no "
            "kinetoscope.pipeline yet; score existing videos with kinetoscope eval videos."
        ) from None
    pipe = Pipeline.from_pretrained(model, device=device, dtype=dtype)

    def generate(request: GenerationRequest) -> np.ndarray:
        result = pipe(
            request.prompt,
            num_frames=request.frames,
            width=request.width,
            height=request.height,
            fps=request.fps,
            seed=request.seed,
            video=request.given if len(request.given) else None,
            loop=request.loop,
            expand=request.expand,
        )
        return result.frames

    return generate


def mp4_round_trip(frames: np.ndarray, fps: float) -> np.ndarray:
    """The frames as they read back from an mp4 written at the io module's default quality."""
    from kinetoscope.io import read_video, write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "clip.mp4", frames, fps)
        return read_video(path).frames


@dataclasses.dataclass
class ClipScore:
    """One clip's metrics; ``frames``, ``state`` and ``detections`` are kept for pictures, not written to JSON."""

    name: str
    scenario: str | None
    prompt: str
    metrics: dict[str, m.MetricResult]
    frames: np.ndarray | None = None
    state: dict[str, Any] | None = None
    detections: list[list[Detection]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "prompt": self.prompt,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
        }


@dataclasses.dataclass
class SuiteResult:
    suite: Suite
    clips: list[ClipScore]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per metric: the mean value and pass rate over the clips that gave a value, and how many did."""
        out = {}
        for name in self.suite.metrics:
            results = [c.metrics[name] for c in self.clips if name in c.metrics]
            values = [r.value for r in results if r.value is not None]
            verdicts = [r.passed for r in results if r.passed is not None]
            out[name] = {
                "mean": float(np.mean(values)) if values else None,
                "median": float(np.median(values)) if values else None,
                "pass_rate": float(np.mean(verdicts)) if verdicts else None,
                "clips": len(values),
                "of": len(results),
                "unit": results[0].unit if results else None,
            }
        return out

    def claim_rates(self) -> dict[str, float]:
        """Share of the prompts' objects whose colour, shape and motion the videos show. Each object
        has one colour claim; an object not found fails its shape and motion as well, and a clip
        that shows another number of objects than its prompt counts fails all of its claims (noise
        holds specks of every colour, so a colour alone proves nothing)."""
        objects, passed = 0, {kind: 0 for kind in ("colour", "shape", "motion")}
        for clip in self.clips:
            if "adherence" not in clip.metrics:
                continue
            claims = clip.metrics["adherence"].details.get("claims", [])
            counted = all(c["passed"] for c in claims if c["kind"] == "count")
            objects += sum(c["kind"] == "colour" for c in claims)
            for c in claims:
                if c["kind"] in passed and c["passed"] and counted:
                    passed[c["kind"]] += 1
        return {kind: n / objects for kind, n in passed.items()} if objects else {}

    def to_dict(self) -> dict[str, Any]:
        suite = dataclasses.asdict(self.suite)
        out = {**suite, "summary": m.json_ready(self.summary()), "clips": [c.to_dict() for c in self.clips]}
        return out | ({"claim_rates": rates} if (rates := self.claim_rates()) else {})


def score_clip(
    frames: np.ndarray,
    *,
    metrics: tuple[str, ...],
    prompt: str = "",
    state: dict[str, Any] | None = None,
    given: np.ndarray | None = None,
    after: str | None = None,
    fps: float | None = None,
) -> tuple[dict[str, m.MetricResult], list[list[Detection]]]:
    """Compute ``metrics`` on one clip, detecting its objects once; returns the results and the detections.

    ``given`` are the frames the clip was conditioned on (also excluded from the velocity error);
    every metric but adherence, consistency, seam and conditioning needs the ground-truth ``state``.
    ``fps`` defaults to the state's (adherence needs it to read speeds).
    """
    needs_state = {"velocity", "permanence", "flicker"} & set(metrics)
    if needs_state and state is None:
        raise InvalidInputError(f"The metrics {', '.join(sorted(needs_state))} need the clip's ground-truth state, and it has none.")
    given = np.zeros((0, *frames.shape[1:]), dtype=np.uint8) if given is None else given
    detections = detect_video(frames)
    fps = fps if fps is not None else state["fps"] if state is not None else DEFAULT_FPS
    compute: dict[str, Callable[[], m.MetricResult]] = {
        "velocity": lambda: m.velocity_error(frames, state, given=len(given), after=after, detections=detections),
        "adherence": lambda: prompt_adherence(frames, prompt, fps=fps, detections=detections),
        "permanence": lambda: m.object_permanence(frames, state, detections=detections),
        "consistency": lambda: m.scene_consistency(frames),
        "flicker": lambda: m.temporal_flicker(frames, state),
        "conditioning": lambda: m.conditioning_fidelity(frames, given),
        "seam": lambda: m.loop_seam(frames),
    }
    unknown = sorted(set(metrics) - set(compute))
    if unknown:
        raise InvalidInputError(f"Unknown metric(s) {', '.join(unknown)}; the metrics are {', '.join(compute)}.")
    return {name: compute[name]() for name in metrics}, detections


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise InvalidInputError(f"Unknown suite {name!r}; choose one of {', '.join(SUITES)}.", param="suite")
    return SUITES[name]


def run_suite(
    name: str,
    generator: Generator,
    *,
    n: int = 10,
    seed: int = 0,
    width: int = 128,
    height: int = 128,
    frames: int = 32,
    fps: float = 10.0,
    keep: int = 3,
    given: int | None = None,
) -> SuiteResult:
    """Draw ``n`` world clips for the suite, have ``generator`` make each, and score what it made.

    ``given``: first frames handed to the generator instead of the suite's own (with a VAE that
    compresses time by 4, ``1 + 4k`` frames are what a pipeline can condition on whole). The
    first ``keep`` clips keep their frames and detections for the report's pictures.
    """
    from kinetoscope.world import clip_seed, sample_clip

    suite = get_suite(name)
    if not (isinstance(n, int) and n >= 1):
        raise InvalidInputError(f"The number of clips must be at least 1, got {n!r}.", param="n")
    if given is not None:
        if not (isinstance(given, int) and 0 <= given < frames):
            raise InvalidInputError(f"The number of given frames must be from 0 to {frames - 1} (frames - 1), got {given!r}.", param="given")
        suite = dataclasses.replace(suite, given=given)
    clips = []
    with ProgressBar(n, f"eval {name}", unit="clip") as bar:
        for index in range(n):
            scenario, clip_seed_i = suite.scenarios[index % len(suite.scenarios)], clip_seed(seed, index)
            clip = sample_clip(scenario, seed=clip_seed_i, width=width, height=height, frames=frames, fps=fps)
            prompt = clip.short_caption if suite.short_prompt else clip.caption
            request = GenerationRequest(
                prompt, clip.frames[: suite.given], frames, width, height, fps, clip_seed_i, suite.loop, scenario,
                expand=suite.short_prompt,
            )
            output = _checked(generator(request), request)
            results, detections = score_clip(
                output, metrics=suite.metrics, prompt=prompt, state=clip.state, given=request.given, after=suite.after
            )
            kept = index < keep
            clips.append(
                ClipScore(
                    f"{name}/{index}", clip.state["scenario"], prompt, results,
                    output if kept else None, clip.state, detections if kept else None,
                )
            )
            bar.advance()
    return SuiteResult(suite, clips)


def _checked(frames: Any, request: GenerationRequest) -> np.ndarray:
    wanted = (request.frames, request.height, request.width, 3)
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.shape == wanted):
        got = f"{getattr(frames, 'dtype', type(frames).__name__)} {tuple(getattr(frames, 'shape', ()))}"
        raise InvalidInputError(f"The generator returned {got} frames; uint8 frames of shape {wanted} were asked for.")
    return frames


def suites_for(scenario: str | None) -> list[Suite]:
    """The suites a clip of ``scenario`` belongs to (adherence alone when none or unknown)."""
    found = [s for s in SUITES.values() if scenario in s.scenarios]
    return found or [SUITES["adherence"]]


def score_manifest(path: str | Path, *, given: int = 3, keep: int = 3) -> list[SuiteResult]:
    """Score every video of a JSONL manifest against its ground truth, grouped by the suites its scenario belongs to.

    The first ``given`` frames of each video are compared with the ground truth's render (the
    conditioning fidelity) and left out of the velocity error. A video without a ground-truth
    state is scored on prompt adherence only.
    """
    from kinetoscope.data.manifest import read_manifest
    from kinetoscope.io import read_video
    from kinetoscope.world import render_state

    if not (isinstance(given, int) and given >= 0):
        raise InvalidInputError(f"The number of given frames must be 0 or more, got {given!r}.", param="given")
    entries = read_manifest(path)
    if not entries:
        raise InvalidInputError(f"The manifest {path} has no entries to score.", param="manifest")
    grouped: dict[str, SuiteResult] = {}
    with ProgressBar(len(entries), "eval videos", unit="video") as bar:
        for entry in entries:
            video = read_video(entry.path)
            frames = video.frames
            state = entry.load_state()
            scenario = state["scenario"] if state is not None else entry.extra.get("scenario")
            suites = suites_for(scenario) if state is not None else [SUITES["adherence"]]
            wanted = tuple(dict.fromkeys(name for s in suites for name in s.metrics))
            truth = render_state(state)[:given] if state is not None and given else None
            after = next((s.after for s in suites if s.after), None)
            results, detections = score_clip(
                frames, metrics=wanted, prompt=entry.caption, state=state, given=truth, after=after, fps=video.fps
            )
            for suite in suites:
                group = grouped.setdefault(suite.name, SuiteResult(suite, []))
                kept = len(group.clips) < keep
                group.clips.append(
                    ClipScore(
                        str(entry.path.name), scenario, entry.caption, {k: results[k] for k in suite.metrics},
                        frames if kept else None, state, detections if kept else None,
                    )
                )
            bar.advance()
    return list(grouped.values())
