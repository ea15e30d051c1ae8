"""Generation: every mode from the Python API and the CLI, on the session's tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinetoscope.errors import InvalidInputError, KinetoscopeError, MediaError
from kinetoscope.io import frames_to_tensor, read_image, read_video, write_image, write_video
from kinetoscope.pipeline import GenerationResult, Pipeline
from kinetoscope.pipeline import plan as plans
from kinetoscope.safety import embed_watermark

FAST = {"steps": 3, "seed": 0}


@pytest.fixture(scope="module")
def pipe(tiny_model_dir) -> Pipeline:
    return Pipeline.from_pretrained(tiny_model_dir)


def moving_square(frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """A grey square crossing a coloured background: a video with motion and exact pixels."""
    rng = np.random.default_rng(seed)
    video = np.empty((frames, size, size, 3), np.uint8)
    video[:] = rng.integers(40, 220, 3, dtype=np.uint8)
    for t in range(frames):
        video[t, 10:20, 2 + 2 * t : 12 + 2 * t] = 128
    return video


def marked(frames: np.ndarray, pipe: Pipeline) -> np.ndarray:
    """What given frames look like in an output: themselves, with the model's watermark."""
    return embed_watermark(frames, pipe.model_id)


def rms_steps(frames: np.ndarray) -> tuple[float, float]:
    """(the loop's wrap from the last frame to the first, the median step between neighbours), RMS."""
    x = frames.astype(np.float64)
    steps = [np.sqrt(np.mean((x[i + 1] - x[i]) ** 2)) for i in range(len(x) - 1)]
    return float(np.sqrt(np.mean((x[0] - x[-1]) ** 2))), float(np.median(steps))


# ---------------------------------------------------------------- text to video and image
def test_text_to_video_shapes_rounding_notes_and_determinism(pipe):
    result = pipe("a red ball moves right", width=40, height=32, num_frames=10, **FAST)
    assert isinstance(result, GenerationResult)
    assert result.frames.shape == (10, 32, 48, 3) and result.frames.dtype == np.uint8
    assert result.notes == ["width 40 rounded to 48 (a multiple of 16)"]  # halfway rounds up
    assert result.fps == pipe.limits.default_fps and result.seed == 0
    assert result.latents.shape == (4, 4, 4, 6)  # 10 frames are sampled as 13: 1 + 3 latent frames
    assert np.asarray(result).shape == (10, 32, 48, 3)
    again = pipe("a red ball moves right", width=40, height=32, num_frames=10, **FAST)
    assert again.frames.tobytes() == result.frames.tobytes()
    other = pipe("a red ball moves right", width=40, height=32, num_frames=10, steps=3, seed=1)
    assert not np.array_equal(other.latents, result.latents)


def test_seconds_fps_expansion_and_progress(pipe):
    from kinetoscope.language import expand_prompt

    calls = []
    result = pipe(
        "a red ball", width=32, height=32, seconds=0.5, fps=8, progress=lambda s, n: calls.append((s, n)), **FAST
    )
    assert result.frames.shape[0] == 4 and result.fps == 8
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert result.prompt == expand_prompt("a red ball", 0, width=32, height=32, frames=4, fps=8).caption
    assert pipe("a red ball", width=32, height=32, num_frames=1, expand=False, **FAST).prompt == "a red ball"


def test_text_to_image_decodes_large_frames_in_tiles(pipe, monkeypatch):
    assert (pipe.limits.max_width, pipe.limits.max_height) == (2048, 2048)
    tiles = []
    hook = pipe.vae.decoder.register_forward_pre_hook(lambda module, args: tiles.append(args[0].shape))
    monkeypatch.setattr(pipe, "tile_size", 32)
    monkeypatch.setattr(pipe, "tile_overlap", 16)
    try:
        result = pipe.image("a blue square", width=64, height=48, **FAST)
    finally:
        hook.remove()
    assert result.frames.shape == (1, 48, 64, 3)
    assert len(tiles) == 6 and {tuple(s[-2:]) for s in tiles} == {(4, 4)}  # 3 x 2 tiles of 4x4 latents


# ---------------------------------------------------------------- given frames
@pytest.mark.parametrize(("at", "frames", "shown", "latent"), [(0, 9, 0, 0), (-1, 12, 11, 3), (7, 12, 7, 2)])
def test_animate_places_the_image_exactly(pipe, at, frames, shown, latent):
    image = moving_square(1, seed=1)[0]
    result = pipe.animate(image, "a square", image_frame=at, num_frames=frames, **FAST)
    assert result.frames.shape == (frames, 32, 32, 3) and result.notes == []
    assert np.array_equal(result.frames[shown], marked(image[None], pipe)[0])
    known = pipe.vae.encode(frames_to_tensor(image[None])[None])[0, :, 0]
    assert torch.equal(result.latents[:, latent], known)  # the known latent was held at every step
    if at == 0:  # frame 0 decodes from that latent alone: the VAE round trip of the image
        decoded = pipe.vae.decode(result.latents[None])[0, :, 0]
        round_trip = pipe.vae.decode(pipe.vae.encode(frames_to_tensor(image[None])[None]))[0, :, 0]
        assert (decoded - round_trip).abs().max() < 1e-4


def test_animate_reports_an_image_frame_no_cut_can_hold(pipe):
    result = pipe.animate(moving_square(1)[0], "a square", image_frame=6, num_frames=17, **FAST)
    assert result.notes == [
        "image_frame 6 moved to frame 8: frames 4j-3..4j share one latent frame and a given image is the last of its group"
    ]
    assert np.array_equal(result.frames[8], marked(moving_square(1), pipe)[0])


def test_extend_forward_and_backward_keep_the_video(pipe):
    video = moving_square(7)
    forward = pipe.extend(video, "the square keeps moving", seconds=0.6, fps=10, **FAST)
    assert forward.frames.shape == (13, 32, 32, 3)
    assert np.array_equal(forward.frames[:7], marked(video, pipe))
    backward = pipe.extend(video, "the square", direction="backward", num_frames=10, **FAST)
    assert backward.frames.shape == (10, 32, 32, 3)
    assert np.array_equal(backward.frames[3:], marked(video, pipe))


def test_connect_starts_from_a_and_arrives_at_b(pipe):
    a, b = moving_square(6, seed=2), moving_square(5, seed=3)
    result = pipe.connect(a, b, "a square", num_frames=6, **FAST)
    assert result.notes == ["transition of 6 frames made 7 long (transitions have 4k + 3 frames)"]
    assert result.frames.shape == (6 + 7 + 5, 32, 32, 3)
    assert np.array_equal(result.frames[:6], marked(a, pipe))
    assert np.array_equal(result.frames[-5:], marked(b, pipe))


def test_given_first_frames_without_a_mode_continue_them(pipe):
    """What the evaluation asks: num_frames in all, starting with the given frames (also as a loop)."""
    given = moving_square(3)
    result = pipe("a square", num_frames=12, video=given, **FAST)
    assert result.frames.shape == (12, 32, 32, 3) and np.array_equal(result.frames[:3], marked(given, pipe))
    looped = pipe("a square", num_frames=16, video=given, loop=True, **FAST)
    assert looped.frames.shape == (16, 32, 32, 3) and np.array_equal(looped.frames[:3], marked(given, pipe))
    seam, median = rms_steps(looped.frames)
    assert seam <= median


def test_pasted_frames_carry_the_round_trip_error_into_their_neighbours():
    """A constant decode error (the VAE darkening by 20) never shows as a jump at the seam."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(60, 190, (9, 8, 8, 3)).astype(np.float32)
    given = {i: np.rint(truth[i]).astype(np.uint8) for i in range(4)}
    out = plans.paste_given(truth - 20, given, loop=False).astype(np.float32)
    assert all(np.array_equal(out[i], given[i]) for i in given)
    assert abs(float((out[4] - out[3]).mean()) - float((truth[4] - truth[3]).mean())) < 20 / 5 + 0.5
    assert np.abs(out[8] - (truth[8] - 20)).max() <= 0.5  # faded out by the clip's end


# ---------------------------------------------------------------- loops
def test_loop_wraps_no_more_than_a_median_step(pipe):
    result = pipe.loop("a red ball bounces", width=32, height=32, num_frames=16, **FAST)
    assert result.frames.shape == (16, 32, 32, 3)
    seam, median = rms_steps(result.frames)
    assert seam <= median
    rounded = pipe.loop("a red ball", width=32, height=32, num_frames=14, **FAST)
    assert rounded.frames.shape[0] == 16 and rounded.notes == [
        "loop of 14 frames made 16 long (loops have a multiple of 4 frames)"
    ]


def test_loop_from_a_video_it_cannot_reach_still_closes_without_a_seam(pipe):
    """Pathological: a still start unlike anything the model makes (its median step is tiny)."""
    start = np.zeros((3, 32, 32, 3), np.uint8)
    start[:, 8:24, 8:24] = 255
    result = pipe.loop("a red ball", video=start, num_frames=16, **FAST)
    assert np.array_equal(result.frames[:3], marked(start, pipe))
    seam, median = rms_steps(result.frames)
    assert seam <= median


def test_seam_easing_fades_an_end_that_drifted_away_from_the_start():
    rng = np.random.default_rng(0)
    clip = np.clip(100 + rng.normal(0, 4, (16, 8, 8, 3)), 0, 255)
    clip[10:] += 40  # the second part drifted: the wrap back to frame 0 jumps
    clip = clip.astype(np.uint8)
    assert rms_steps(clip)[0] > 5 * rms_steps(clip)[1]
    eased, faded = plans.ease_loop_seam(clip, fixed=3)
    seam, median = rms_steps(eased)
    assert 0 < faded <= 12 and seam <= median
    assert np.array_equal(eased[: len(clip) - faded], clip[: len(clip) - faded])
    assert plans.ease_loop_seam(np.stack([clip[0]] * 4), fixed=0)[1] == 0  # a still loop is already seamless


def test_the_sampler_holds_tied_tokens_equal():
    from kinetoscope.flow import sample

    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    target = torch.arange(18.0).reshape(6, 3)
    tied = (torch.tensor([4, 5]), torch.tensor([0, 1]))
    out = sample(lambda x, t: (x - target) / t[:, None], noise, 4, tied=tied)  # the exact field towards target
    assert torch.equal(out[4:6], out[0:2])
    assert torch.allclose(out[0:2], (target[0:2] + target[4:6]) / 2, atol=1e-5)  # both ends pulled alike
    assert torch.allclose(out[2:4], target[2:4], atol=1e-5)


# ---------------------------------------------------------------- editing and upscaling
def test_edit_keeps_the_video_more_the_lower_the_strength(pipe):
    video = moving_square(6)
    gentle = pipe.edit(video, "a blue square", strength=0.2, **FAST)
    strong = pipe.edit(video, "a blue square", strength=1.0, **FAST)
    assert gentle.frames.shape == video.shape
    round_trip = pipe.vae.encode(frames_to_tensor(np.concatenate([video] + [video[-1:]] * 3))[None])[0]
    assert (gentle.latents - round_trip).abs().mean() < (strong.latents - round_trip).abs().mean()


def test_preview_then_upscale(pipe):
    preview = pipe.preview("a red ball", width=64, height=32, num_frames=5, steps=8, seed=0)
    assert preview.frames.shape == (5, 16, 32, 3)
    full = pipe.upscale(preview.frames, "a red ball", **FAST)
    assert full.frames.shape == (5, 32, 64, 3)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda p, f: p("", num_frames=5), InvalidInputError, "prompt is empty"),
        (lambda p, f: p("\u200b\x00", num_frames=5), InvalidInputError, "prompt is empty"),
        (lambda p, f: p(5, num_frames=5), InvalidInputError, "prompt must be text"),
        (lambda p, f: p("a ball \ud800", num_frames=5), InvalidInputError, "prompt is not valid Unicode"),
        (lambda p, f: p("a ball", negative_prompt="x\udfff"), InvalidInputError, "negative_prompt is not valid Unicode"),
        (lambda p, f: p("x", width=4096), InvalidInputError, "width 4096 is not a size this model can make"),
        (lambda p, f: p("x", height=8), InvalidInputError, "height 8 is not a size"),
        (lambda p, f: p("x", num_frames=1000), InvalidInputError, "num_frames 1000 is not possible here"),
        (lambda p, f: p("x", seconds=-1), InvalidInputError, "seconds must be a positive number"),
        (lambda p, f: p("x", steps=0), InvalidInputError, "steps must be a whole number"),
        (
            lambda p, f: p.edit(moving_square(5), "x", strength=1.5),
            InvalidInputError,
            "strength must be above 0 and at most 1",
        ),
        (lambda p, f: p.edit(moving_square(5), "x", strength=0), InvalidInputError, "strength must be above 0"),
        (lambda p, f: p.extend(moving_square(1), "x"), InvalidInputError, "at least 2 frames"),
        (lambda p, f: p.extend(moving_square(5), "x", direction="up"), InvalidInputError, "direction must be forward"),
        (lambda p, f: p.animate(f["text"], "x"), MediaError, "not a video or image file"),
        (lambda p, f: p.animate(moving_square(2), "x"), InvalidInputError, "image has 2 frames"),
        (
            lambda p, f: p.animate(moving_square(1)[0], "x", image_frame=9, num_frames=5),
            InvalidInputError,
            "image_frame 9",
        ),
        (lambda p, f: p.extend(f["missing"], "x"), MediaError, "no such file"),
        (lambda p, f: p("x", strength=0.5), InvalidInputError, "strength applies to a given video"),
        (lambda p, f: p("x", image=moving_square(1)[0], video=moving_square(3)), InvalidInputError, "not both"),
        (lambda p, f: p.loop("x", video=moving_square(9), num_frames=8), InvalidInputError, "ask for a longer loop"),
        (lambda p, f: p("a scene of gore"), KinetoscopeError, "refused by the content policy"),
        # The same gate as the service's: the negative prompt is text the model reads too.
        (lambda p, f: p("a red ball", "a scene of gore"), KinetoscopeError, "negative_prompt"),
    ],
)
def test_bad_input_is_one_sentence_before_any_compute(pipe, tmp_path, monkeypatch, call, error, words):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    monkeypatch.setattr(pipe.dit, "forward", lambda *a: pytest.fail("sampled before checking the input"))
    with pytest.raises(error) as caught:
        call(pipe, {"text": text, "missing": tmp_path / "gone.mp4"})
    message = str(caught.value)
    assert words in message and message.count(". ") == 0 and message.endswith(".")


# ---------------------------------------------------------------- the command line
def test_every_mode_from_the_cli(tiny_model_dir, tmp_path, cli):
    model = ("--model", tiny_model_dir, "--steps", "2", "--seed", "1")
    write_video(tmp_path / "a.mp4", moving_square(6), 10.0)
    write_video(tmp_path / "b.mp4", moving_square(5, seed=4), 10.0)
    write_image(tmp_path / "still.png", moving_square(1)[0])
    runs = {
        "gen.mp4": (("generate", "a red ball", "--width", "32", "--height", "32", "--frames", "6"), 6, 32),
        "preview.mp4": (
            ("generate", "a red ball", "--preview", "--width", "64", "--height", "64", "--frames", "5"),
            5,
            32,
        ),
        "up.mp4": (("generate", "a red ball", "--upscale", tmp_path / "preview.mp4"), 5, 64),
        "img.png": (("image", "a red ball", "--width", "48", "--height", "48"), 1, 48),
        "anim.mp4": (("animate", tmp_path / "still.png", "a square", "--frame", "-1", "--frames", "8"), 8, 32),
        "back.mp4": (("extend", tmp_path / "a.mp4", "a square", "--backward", "--seconds", "0.4"), 10, 32),
        "loop.mp4": (("loop", "a red ball", "--width", "32", "--height", "32", "--frames", "8"), 8, 32),
        "edit.mp4": (("edit", tmp_path / "a.mp4", "a blue square", "--strength", "0.5"), 6, 32),
        "join.mp4": (("connect", tmp_path / "a.mp4", tmp_path / "b.mp4", "--seconds", "0.3"), 6 + 3 + 5, 32),
    }
    for name, (args, frames, size) in runs.items():
        code, out, err = cli(*args, *model, "--out", tmp_path / name)
        assert code == 0, (name, err)
        assert out.startswith(f"wrote {tmp_path / name}: ")
        written = read_image(tmp_path / name)[None] if name.endswith(".png") else read_video(tmp_path / name).frames
        assert written.shape == (frames, size, size, 3), name
    assert cli(*runs["gen.mp4"][0], *model, "--out", tmp_path / "gen2.mp4")[0] == 0
    assert np.array_equal(read_video(tmp_path / "gen2.mp4").frames, read_video(tmp_path / "gen.mp4").frames)


def test_cli_errors_exit_2_with_one_sentence(tiny_model_dir, tmp_path, cli, monkeypatch):
    write_video(tmp_path / "a.mp4", moving_square(5), 10.0)
    (tmp_path / "notes.txt").write_text("hello")
    model = ("--model", tiny_model_dir)
    cases = [
        (("edit", tmp_path / "a.mp4", "x", "--strength", "1.5", *model), "strength must be above 0 and at most 1"),
        (("animate", tmp_path / "notes.txt", "x", *model), "notes.txt"),
        (("generate", "x", "--width", "5000", *model), "width 5000"),
        (("generate", "x", "--strength", "0.5", *model), "--strength applies to --upscale"),
        (("extend", tmp_path / "gone.mp4", "x", *model), "no such file"),
    ]
    for args, words in cases:
        code, _, err = cli(*args)
        assert code == 2 and words in err and err.count("\n") == 1, (args, err)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("kinetoscope.bundled.MODELS", tmp_path / "site-packages" / "kinetoscope" / "models")
    code, _, err = cli("generate", "a red ball")
    assert code == 2 and "The bundled model 'world' is not installed" in err and "pass a model directory" in err


def test_the_command_lines_defaults_are_the_request_layers():
    """The command line must not import the pipeline (torch) to show --help, so its option defaults
    are copies of the request layer's: they must say the same. Guidance is left to the model."""
    import typer.main

    from kinetoscope.cli import app
    from kinetoscope.pipeline.limits import DEFAULT_SECONDS
    from kinetoscope.pipeline.request import DEFAULT_STEPS, EDIT_STRENGTH, UPSCALE_STRENGTH

    commands = typer.main.get_command(app).commands
    for name in ("generate", "image", "animate", "extend", "loop", "edit", "connect"):
        params = {p.name: p for p in commands[name].params}
        assert (params["steps"].default, params["guidance"].default) == (DEFAULT_STEPS, None), name
    for name in ("extend", "connect"):
        assert {p.name: p.default for p in commands[name].params}["seconds"] == DEFAULT_SECONDS, name
    strength = {name: next(p.help for p in commands[name].params if p.name == "strength") for name in ("edit", "generate")}
    assert f"({EDIT_STRENGTH:g})" in strength["edit"] and f"Default: {UPSCALE_STRENGTH:g}." in strength["generate"]


def test_save_pretrained_mirrors_from_pretrained_and_the_directory_moves(tiny_model_dir, tmp_path):
    import shutil

    from kinetoscope.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_model_dir)
    pipe.save_pretrained(tmp_path / "saved", name="mine")
    shutil.move(tmp_path / "saved", tmp_path / "elsewhere")
    again = Pipeline.from_pretrained(tmp_path / "elsewhere")
    assert again.model_id.startswith("mine-") and again.flow == pipe.flow
    for a, b in [(pipe.vae, again.vae), (pipe.dit, again.dit), (pipe.text_encoder, again.text_encoder)]:
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    prompts = ["a red ball moves right"]
    assert torch.equal(pipe.text_encoder.encode(prompts)[0], again.text_encoder.encode(prompts)[0])


def test_a_call_that_names_no_guidance_gets_the_models_own(tiny_model_dir, tmp_path, monkeypatch):
    from kinetoscope.errors import CheckpointError
    from kinetoscope.model_dir import read_index, write_index
    from kinetoscope.pipeline import Pipeline
    from kinetoscope.pipeline.request import DEFAULT_GUIDANCE
    from kinetoscope.serve.capabilities import Capabilities

    pipe = Pipeline.from_pretrained(tiny_model_dir)
    assert pipe.guidance == DEFAULT_GUIDANCE and "guidance" not in read_index(tiny_model_dir)
    pipe.guidance = 2.5
    pipe.save_pretrained(tmp_path / "model")
    assert read_index(tmp_path / "model")["guidance"] == 2.5
    again = Pipeline.from_pretrained(tmp_path / "model")
    assert again.guidance == 2.5
    assert Capabilities.from_pipeline(again).to_dict()["defaults"]["guidance"] == 2.5  # the page's placeholder

    used = []
    sample = Pipeline._sample
    monkeypatch.setattr(Pipeline, "_sample", lambda self, *args: used.append(args[4]) or sample(self, *args))
    small = {"width": 32, "height": 32, "num_frames": 1, "steps": 1}
    again("a red ball moves right", **small)
    again("a red ball moves right", guidance=1.5, **small)
    assert used == [2.5, 1.5]

    write_index(tmp_path / "model", read_index(tmp_path / "model") | {"guidance": "high"})
    with pytest.raises(CheckpointError, match=r"gives guidance 'high'; it must be a number of at least 0\.$"):
        Pipeline.from_pretrained(tmp_path / "model")


def test_the_sampler_shifts_its_times_further_by_the_models_sample_shift(tiny_model_dir, tmp_path, monkeypatch):
    import kinetoscope.pipeline.core as core
    from kinetoscope.flow import shift_for_tokens
    from kinetoscope.model_dir import read_index

    pipe = Pipeline.from_pretrained(tiny_model_dir)
    assert pipe.flow.sample_shift == 1.0
    pipe.flow.sample_shift = 2.5
    pipe.save_pretrained(tmp_path / "model")
    assert read_index(tmp_path / "model")["flow"]["sample_shift"] == 2.5
    again = Pipeline.from_pretrained(tmp_path / "model")

    shifts = []
    sample = core.sample
    monkeypatch.setattr(core, "sample", lambda *a, **k: shifts.append(k["time_shift"]) or sample(*a, **k))
    small = {"width": 32, "height": 32, "num_frames": 5, "steps": 2, "seed": 0}
    shifted = again("a red ball moves right", **small)
    plain = Pipeline.from_pretrained(tiny_model_dir)("a red ball moves right", **small)
    pt, ph, pw = pipe.dit.config.patch_size
    _, t, h, w = shifted.latents.shape
    tokens = (t // pt) * (h // ph) * (w // pw)
    assert shifts == [pytest.approx(2.5 * shift_for_tokens(tokens, pipe.flow)), pytest.approx(shift_for_tokens(tokens, pipe.flow))]
    assert not np.array_equal(shifted.latents, plain.latents)


def test_device_and_dtype_auto_and_by_name():
    from kinetoscope.devices import resolve_device, resolve_dtype
    from kinetoscope.errors import InvalidInputError

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    assert resolve_dtype("auto", torch.device("cpu")) == resolve_dtype("auto", torch.device("mps")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    for call, words in [
        (lambda: resolve_device("tpu"), "--device must be auto, cpu, cuda, cuda:N or mps"),
        (lambda: resolve_dtype("half", torch.device("cpu")), "--dtype must be auto, float32, bfloat16, float16"),
        (lambda: resolve_dtype("float16", torch.device("cpu")), "on the CPU use bfloat16 or float32"),
    ]:
        with pytest.raises(InvalidInputError, match=words):
            call()
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA device is available here"):
            resolve_device("cuda")


def test_generate_in_bfloat16_on_the_cpu_runs_every_component_in_it(tiny_model_dir, tmp_path, cli):
    from kinetoscope.io import read_video
    from kinetoscope.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_model_dir, device="auto", dtype="bfloat16")
    assert {p.dtype for m in (pipe.vae, pipe.dit, pipe.text_encoder) for p in m.parameters()} == {torch.bfloat16}
    full = Pipeline.from_pretrained(tiny_model_dir)
    a = pipe("a red ball moves right", width=32, height=32, num_frames=5, steps=4, seed=0, expand=False)
    b = full("a red ball moves right", width=32, height=32, num_frames=5, steps=4, seed=0, expand=False)
    assert a.frames.shape == b.frames.shape == (5, 32, 32, 3)
    # The same clip within bfloat16's precision (8 bits of mantissa through a few steps).
    assert np.abs(a.frames.astype(float) - b.frames.astype(float)).mean() < 6
    code, _, err = cli("generate", "a red ball", "--model", tiny_model_dir, "--dtype", "bfloat16", "--width", "32",
                       "--height", "32", "--frames", "5", "--steps", "2", "--out", tmp_path / "bf16.mp4")  # fmt: skip
    assert code == 0, err
    assert read_video(tmp_path / "bf16.mp4").frames.shape == (5, 32, 32, 3)
    code, _, err = cli("generate", "a red ball", "--model", tiny_model_dir, "--dtype", "float16", "--device", "cpu")
    assert code == 2 and "on the CPU use bfloat16 or float32" in err
