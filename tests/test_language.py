"""Caption and prompt parsing, the prompt expander, re-captioning manifests, and the OpenAI-compatible backend."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from kinetoscope.data.manifest import ManifestEntry, read_manifest, write_manifest
from kinetoscope.errors import ConfigError, InvalidInputError
from kinetoscope.language import expand_prompt, parse_caption, parse_prompt
from kinetoscope.language.accuracy import score_caption
from kinetoscope.language.expand import agrees
from kinetoscope.language.openai_backend import BackendError, OpenAIBackend, sample_frame_indices
from kinetoscope.language.parse import SceneText
from kinetoscope.world import SCENARIOS, describe, sample_clip, sample_state
from kinetoscope.world.captions import STILL_SPEED
from kinetoscope.world.clip import clip_seed
from kinetoscope.world.vocabulary import direction_word, size_word, speed_word


# ---------------------------------------------------------------- parse <-> the world's caption writer
def _expected_motion(obj: dict, state: dict) -> tuple[str, str | None, str | None]:
    """(motion, direction, speed) the world's state says, in caption words: the heading as the
    frames show it, after a bounce or a collision before frame 1."""
    if obj["role"] == "agent":
        return "player", None, None
    turned = [e for e in state["events"] if e["type"] in ("bounce", "collision") and obj["id"] in e["objects"] and e["frame"] <= 1]
    vx, vy = obj["velocity"][1 if turned else 0]
    speed = math.hypot(vx, vy)
    heading = (direction_word(vx, vy), speed_word(speed))
    if obj["role"] == "brush":
        return ("paints", *heading)
    if state["world"]["gravity"] > 0:
        return ("thrown", *heading) if speed >= STILL_SPEED else ("falls", None, None)
    return ("moves", *heading) if speed >= STILL_SPEED else ("still", None, None)


def _moving(vx: float, vy: float) -> dict:
    """A state of one object moving at ``(vx, vy)`` from frame 0 on."""
    return {"objects": [{"velocity": [(vx, vy), (vx, vy)]}], "events": []}


def _states():
    shapes = [(128, 128, 32), (96, 64, 17), (64, 96, 9)]
    for k, scenario in enumerate(name for name in SCENARIOS if name != "mixed"):
        for i in range(12):
            width, height, frames = shapes[i % len(shapes)]
            yield sample_state(scenario, seed=clip_seed(k, i), width=width, height=height, frames=frames)


def _drawn_start(obj, state):
    """Where frame 0 draws the object's centre, read in pixels: thirds of the frame's rows and columns."""
    px_per_unit = state["world"]["px_per_unit"]
    camera_x, camera_y = state["camera"]["offset"][0]
    x, y = obj["position"][0]
    column, row = (x - camera_x) * px_per_unit, state["height"] - (y - camera_y) * px_per_unit
    if not (0 <= column <= state["width"] and 0 <= row <= state["height"]):
        return None
    across = ("left", "", "right")[min(int(3 * column / state["width"]), 2)]
    down = ("top", "", "bottom")[min(int(3 * row / state["height"]), 2)]
    return " ".join(w for w in (down, across) if w) or "centre"


def test_parse_caption_recovers_every_attribute_of_the_world_state():
    checked = 0
    for state in _states():
        text = parse_caption(describe(state)[1])
        assert text.unparsed == ()
        assert len(text.objects) == len(state["objects"])
        for got, obj in zip(text.objects, state["objects"]):
            motion, direction, speed = _expected_motion(obj, state)
            assert (got.color, got.shape, got.size) == (obj["color"], obj["shape"], size_word(obj["radius"]))
            assert (got.motion, got.direction, got.speed) == (motion, direction, speed)
            assert got.trail == (obj["color"] if obj["role"] == "brush" else None)
            assert got.start == _drawn_start(obj, state)
        assert text.background == state["background"]["kind"]
        assert text.background_colors == tuple(state["background"]["colors"])
        assert text.camera == state["camera"]["motion"]
        assert text.occluder == (state["occluder"]["color"] if state["occluder"] else None)
        assert text.actions == (tuple(state["actions"]) if state["actions"] else None)
        names = {o["id"]: (o["color"], o["shape"]) for o in state["objects"]}
        expected_events = {
            (e["type"], tuple(names[i] for i in e["objects"]), e.get("wall"), e["frame"]) for e in state["events"]
        }
        parsed_events = {(e.kind, e.objects, e.wall, f) for e in text.events for f in e.frames}
        assert parsed_events == expected_events
        checked += 1
    assert checked == 12 * (len(SCENARIOS) - 1)


def test_parse_caption_keeps_sentences_out_of_style_and_scores_against_truth():
    truth = parse_caption(
        "A large red ball moves left at a fast speed. A small blue star stays still. The camera is static."
    )
    guess = parse_caption("A large red ball moves up-left at a fast speed. A cat sleeps. The camera is static.")
    assert guess.unparsed == ("A cat sleeps",)
    score = score_caption(guess, truth)
    assert score.accuracy()["color"] == 0.5 and score.accuracy()["direction"] == 0.0
    assert (score.missing, score.extra) == (1, 0)
    perfect = score_caption(truth, truth)
    assert all(v == 1.0 for v in perfect.accuracy().values() if not math.isnan(v))



def test_direction_split_groups_objects_by_what_their_frames_show_of_the_heading():
    from kinetoscope.language.accuracy import HEADING_HOLDS, HEADING_TURNS, MARGINS, boundary_margin, direction_split

    clips = [
        sample_clip(scenario, seed=seed, width=48, height=48, frames=5)
        for scenario in ("billiards", "bounce")
        for seed in range(6)
    ]
    truths = [parse_caption(clip.caption) for clip in clips]
    halves = direction_split(clips, truths)
    edges = direction_split(clips, truths, boundary_margin)
    assert list(halves) == [k for k in (HEADING_HOLDS, HEADING_TURNS) if k in halves]
    assert all(right == total for right, total in [*halves.values(), *edges.values()])  # the truth is always right
    assert sum(t for _, t in halves.values()) == sum(t for _, t in edges.values()) == sum(
        o.direction is not None for truth in truths for o in truth.objects
    )
    blind = [SceneText(objects=tuple(dataclasses.replace(o, direction="up") for o in t.objects)) for t in truths]
    assert sum(r for r, _ in direction_split(clips, blind).values()) == sum(
        o.direction == "up" for truth in truths for o in truth.objects
    )
    # 23 degrees lies 0.5 degrees past the up-right sector's edge; 45 degrees is its middle.
    assert boundary_margin(_moving(math.cos(math.radians(23)), math.sin(math.radians(23))), 0) == MARGINS[0]
    assert boundary_margin(_moving(-math.cos(math.radians(28)), math.sin(math.radians(28))), 0) == MARGINS[1]
    assert boundary_margin(_moving(1.0, 1.0), 0) == MARGINS[2]


@pytest.mark.parametrize(
    "prompt, objects, extra",
    [
        ("a red ball", [("red", "ball", None, None, None, None)], {}),
        ("A large blue square moving left fast", [("blue", "square", "large", "moves", "left", "fast")], {}),
        (
            "an orange star moves up right at a very fast speed",
            [("orange", "star", None, "moves", "up-right", "very fast")],
            {},
        ),
        ("a red ball thrown right very slowly", [("red", "ball", None, "thrown", "right", "very slow")], {}),
        (
            "a red ball moves left and a blue square falls",
            [("red", "ball", None, "moves", "left", None), ("blue", "square", None, "falls", None, None)],
            {},
        ),
        ("two balls", [(None, "ball", None, None, None, None)] * 2, {}),
        ("a player moves a pink triangle", [("pink", "triangle", None, "player", None, None)], {}),
        (
            "a tiny teal star on a gradient from cream to sky blue",
            [("teal", "star", "tiny", None, None, None)],
            {"background": "gradient", "background_colors": ("cream", "sky blue")},
        ),
        ("the camera pans across a brown ball", [("brown", "ball", None, None, None, None)], {"camera": "pan"}),
        (
            "a green ball on a yellow background",
            [("green", "ball", None, None, None, None)],
            {"background_colors": ("yellow",)},
        ),
    ],
)
def test_parse_prompt_reads_the_world_vocabulary(prompt, objects, extra):
    text = parse_prompt(prompt)
    got = [(o.color, o.shape, o.size, o.motion, o.direction, o.speed) for o in text.objects]
    assert got == objects
    for field, value in extra.items():
        assert getattr(text, field) == value
    assert text.unknown_words == ()


@pytest.mark.parametrize(
    "prompt, starts",
    [
        ("a red ball at the top left moves right", ["top left"]),
        ("a blue star in the centre of the frame moves down", ["centre"]),
        ("a green square starts in the lower right corner and moves up-left", ["bottom right"]),
        ("a red ball on the left and a blue ball on the right collide", ["left", "right"]),
        ("a red ball moves left and bounces off the left wall", [None]),
        ("a red ball moves left on a gradient from white at the top to cream at the bottom", [None]),
    ],
)
def test_parse_prompt_reads_where_objects_start(prompt, starts):
    text = parse_prompt(prompt)
    assert [o.start for o in text.objects] == starts
    assert text.unknown_words == ()


def test_parse_prompt_events_and_unknown_words():
    text = parse_prompt("a red ball and a blue ball collide inside a spaceship")
    assert [e.kind for e in text.events] == ["collision"]
    assert text.events[0].objects == (("red", "ball"), ("blue", "ball"))
    assert text.unknown_words == ("inside", "spaceship")
    bounce = parse_prompt("a green star bounces off the left wall")
    assert [(e.kind, e.objects, e.wall) for e in bounce.events] == [("bounce", (("green", "star"),), "left")]
    timed = parse_prompt("a red ball falls and bounces off the floor at frames 3, 9 and 12")
    assert [(e.kind, e.wall, e.frames) for e in timed.events] == [("bounce", "floor", (3, 9, 12))]
    assert timed.unknown_words == ()
    assert parse_prompt("a red ball bounces at frame 3 and").events[0].frames == (3,)


@pytest.mark.parametrize(
    "prompt, motion",
    [
        ("a yellow triangle falls down", ("falls", None)),  # falling, not a heading
        ("a red ball moves up and then falls", ("thrown", "up")),  # the world's "is thrown up ... and falls"
        ("a red ball is thrown left and falls", ("thrown", "left")),
    ],
)
def test_parse_prompt_reads_falling_as_the_world_says_it(prompt, motion):
    (obj,) = parse_prompt(prompt).objects
    assert (obj.motion, obj.direction) == motion


# ---------------------------------------------------------------- the expander
PROMPTS = [
    "a red ball",
    "a large blue square moving left fast",
    "a red ball and a blue ball collide",
    "a green star bounces off the floor",
    "a purple triangle passes behind a bar",
    "a player moves a blue star",
    "a pink ball paints a trail",
    "a yellow ball falls on a white background",
    "the camera pans across three shapes",
    "a huge brown square stays still",
    "an orange star moves down-left",
    "a red ball at the top left moves right",
    "a teal square starts in the bottom right corner and moves up",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_expansion_never_contradicts_the_prompt(prompt):
    claims = parse_prompt(prompt)
    for seed in (0, 1):
        result = expand_prompt(prompt, seed=seed, width=96, height=64, frames=17)
        written = parse_caption(result.caption)
        assert result.scenario is not None and written.unparsed == ()
        assert agrees(claims, written)
        for claim in claims.objects:  # the attributes the user gave are in the caption, literally
            for field in ("color", "shape", "size", "direction", "speed", "start"):
                if getattr(claim, field) is not None:
                    assert getattr(claim, field) in {getattr(o, field) for o in written.objects}, (
                        prompt,
                        result.caption,
                    )


def test_expansion_shows_every_object_it_names():
    # Crossing scenes start their objects outside the view; turned to the prompt's heading, one
    # could leave without ever being seen while its caption still promised it.
    for seed in range(12):
        written = parse_caption(expand_prompt("a red star moves left", seed=seed, frames=21).caption)
        star = written.objects[0]
        entered = any(e.kind == "enter" for e in written.events)
        assert star.start is not None or entered, seed


def test_expansion_is_deterministic_by_seed_and_fills_open_choices_from_the_prior():
    same = {expand_prompt("a red ball", seed=7).caption for _ in range(3)}
    assert len(same) == 1
    varied = {expand_prompt("a red ball", seed=s).caption for s in range(8)}
    assert len(varied) >= 6  # size, motion, background, ... come from the world's prior
    assert all(
        c.startswith(
            ("A tiny red ball", "A small red ball", "A medium red ball", "A large red ball", "A huge red ball")
        )
        for c in varied
    )


def test_expansion_keeps_and_reports_unknown_words():
    result = expand_prompt("a red ball rolls across a wooden table", seed=0)
    assert result.unknown_words == ("wooden", "table")
    assert result.caption.endswith("A red ball rolls across a wooden table.")
    assert parse_caption(result.caption).objects[0].color == "red"


def test_expansion_falls_back_to_the_prompt_when_the_world_cannot_show_it():
    # A player and a paint brush never share a scene in the world.
    result = expand_prompt("a player moves a red star while a blue ball paints a trail", seed=0)
    assert result.caption == "a player moves a red star while a blue ball paints a trail"
    assert result.scenario is None


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_rejected(prompt, cli):
    with pytest.raises(InvalidInputError, match="prompt is empty"):
        expand_prompt(prompt)
    code, _, err = cli("expand", prompt)
    assert code == 2 and "prompt is empty" in err


def test_expand_cli(cli):
    code, out, err = cli("expand", "a red ball in a spaceship", "--seed", "3")
    assert code == 0 and out.strip() == expand_prompt("a red ball in a spaceship", seed=3).caption
    assert "spaceship" in err
    code, out, _ = cli("expand", "a blue star", "--json", "--size", "64x64", "--frames", "9")
    data = json.loads(out)
    assert data["caption"] == expand_prompt("a blue star", seed=0, width=64, height=64, frames=9).caption
    assert data["unknown_words"] == [] and data["seed"] == 0


# ---------------------------------------------------------------- a fake chat completions server
class FakeChat:
    """A real HTTP server on loopback answering /v1/chat/completions from a script of replies."""

    def __init__(self):
        self.requests: list[dict] = []
        self.replies: list[tuple[int, dict, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": body}
                )
                status, payload, delay = owner.replies.pop(0) if owner.replies else (200, _completion("ok"), 0.0)
                time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("retry-after-ms", "10")  # keep the client's backoff short
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _completion(text: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


@pytest.fixture
def chat(monkeypatch):
    monkeypatch.setenv("TEST_CHAT_KEY", "sk-test")
    server = FakeChat()
    yield server
    server.close()


def _frames(count: int = 10) -> np.ndarray:
    frames = np.zeros((count, 24, 32, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(count)[:, None, None] * 20  # each frame its own red level
    return frames


def test_openai_caption_sends_sampled_frames_as_png_image_parts(chat):
    from PIL import Image

    chat.replies.append((200, _completion("A  large red ball\nmoves left."), 0.0))
    backend = OpenAIBackend(chat.url, "vision-model", api_key_env="TEST_CHAT_KEY", frames=3)
    caption = backend.caption_frames(_frames(10), fps=10.0, original="a ball")
    assert caption == "A large red ball moves left."
    (request,) = chat.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    body = request["json"]
    assert body["model"] == "vision-model" and body["temperature"] == 0.0
    system, user = body["messages"]
    assert system["role"] == "system" and "The camera is static." in system["content"]
    text, *images = user["content"]
    assert text["type"] == "text" and "Frames 0, 4, 9 of a 10-frame video at 10 fps" in text["text"]
    assert "'a ball'" in text["text"]
    assert [part["type"] for part in images] == ["image_url"] * 3
    for part, index in zip(images, (0, 4, 9)):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
        assert pixels.shape == (24, 32, 3) and pixels[0, 0, 0] == index * 20


def test_openai_expand_asks_for_the_training_style(chat):
    chat.replies.append((200, _completion("A small red ball stays still. The camera is static."), 0.0))
    backend = OpenAIBackend(chat.url, "chat-model", api_key_env="TEST_CHAT_KEY")
    result = expand_prompt("a red ball", seed=5, backend=backend)
    assert result.caption == "A small red ball stays still. The camera is static." and result.scenario is None
    body = chat.requests[0]["json"]
    assert body["seed"] == 5 and body["messages"][1] == {"role": "user", "content": "a red ball"}
    assert "detailed caption" in body["messages"][0]["content"] and "A medium" in body["messages"][0]["content"]


def test_openai_errors_become_one_sentence_and_only_safe_ones_are_retried(chat):
    backend = OpenAIBackend(chat.url, "m", api_key_env="TEST_CHAT_KEY", max_retries=1)
    chat.replies.append((401, _error("Incorrect API key provided", "invalid_request_error"), 0.0))
    with pytest.raises(BackendError, match=r"HTTP 401: Incorrect API key provided\.$"):
        backend.chat([{"role": "user", "content": "hi"}])
    assert len(chat.requests) == 1  # a rejected key is never retried

    chat.requests.clear()
    chat.replies += [(429, _error("Rate limit reached", "requests"), 0.0)] * 2
    with pytest.raises(BackendError, match="HTTP 429: Rate limit reached"):
        backend.chat([{"role": "user", "content": "hi"}])
    assert len(chat.requests) == 2  # retried once, as configured

    chat.requests.clear()
    chat.replies += [(500, _error("The server had an error", "server_error"), 0.0), (200, _completion("fine"), 0.0)]
    assert backend.chat([{"role": "user", "content": "hi"}]) == "fine"
    assert len(chat.requests) == 2

    chat.replies.append((200, _completion("   "), 0.0))
    with pytest.raises(BackendError, match="no text"):
        backend.chat([{"role": "user", "content": "hi"}])


def test_openai_timeout(chat):
    backend = OpenAIBackend(chat.url, "m", api_key_env="TEST_CHAT_KEY", timeout=0.3, max_retries=0)
    chat.replies.append((200, _completion("late"), 2.0))
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"did not answer within 0.3 s"):
        backend.chat([{"role": "user", "content": "hi"}])
    assert time.perf_counter() - started < 1.5


def test_openai_backend_needs_a_key_and_a_reachable_server(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY")
    monkeypatch.setenv("NO_SUCH_KEY", "x")
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY", max_retries=0, timeout=2)
    with pytest.raises(BackendError, match="Could not reach"):
        backend.chat([{"role": "user", "content": "hi"}])


def test_sample_frame_indices():
    assert sample_frame_indices(3, 4) == [0, 1, 2]
    assert sample_frame_indices(33, 4) == [0, 11, 21, 32]
    assert sample_frame_indices(1, 4) == [0]


# ---------------------------------------------------------------- kinetoscope caption
def _media_folder(tmp_path):
    from kinetoscope.io import write_image, write_video

    folder = tmp_path / "media"
    folder.mkdir()
    write_video(folder / "a.mp4", _frames(6), 10.0)
    write_image(folder / "b.png", _frames(1)[0])
    (folder / "notes.txt").write_text("not media")
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder


def test_caption_cli_with_openai_backend_on_a_folder_and_a_manifest(chat, cli, tmp_path):
    folder = _media_folder(tmp_path)
    chat.replies += [(200, _completion("A red ball stays still."), 0.0), (200, _completion("A blue star falls."), 0.0)]
    out = tmp_path / "out" / "captions.jsonl"
    args = ["--backend", "openai", "--base-url", chat.url, "--model", "vm", "--api-key-env", "TEST_CHAT_KEY"]
    code, stdout, err = cli("caption", folder, "--out", out, *args)
    assert code == 0 and "captioned 2 files" in stdout
    assert "broken.mp4" in err  # unreadable files are listed, not fatal
    entries = read_manifest(out)
    assert [(e.path.name, e.caption) for e in entries] == [
        ("a.mp4", "A red ball stays still."),
        ("b.png", "A blue star falls."),
    ]
    assert all(e.extra == {"caption_source": "openai:vm"} for e in entries)
    assert (
        len([p for r in chat.requests for p in r["json"]["messages"][1]["content"] if p["type"] == "image_url"])
        == 4 + 1
    )

    manifest = write_manifest(
        tmp_path / "in.jsonl",
        [
            ManifestEntry(folder / "a.mp4", "a ball", fps=10.0, extra={"scenario": "x"}),
            ManifestEntry(folder / "b.png", ""),
        ],
    )
    chat.replies += [(200, _completion("New one."), 0.0), (200, _completion("New two."), 0.0)]
    code, _, _ = cli("caption", manifest, "--out", out, *args)
    assert code == 0
    first, second = read_manifest(out)
    assert first.caption == "New one." and first.extra == {
        "scenario": "x",
        "original_caption": "a ball",
        "caption_source": "openai:vm",
    }
    assert first.fps == 10.0
    assert second.caption == "New two." and "original_caption" not in second.extra


def test_caption_cli_rejects_what_it_cannot_caption(cli, tmp_path):
    code, _, err = cli("caption", tmp_path / "missing", "--out", tmp_path / "o.jsonl", "--captioner", tmp_path)
    assert code == 2 and "neither a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("caption", tmp_path / "empty", "--out", tmp_path / "o.jsonl", "--captioner", tmp_path)
    assert code == 2 and "no video or image" in err
    code, _, err = cli("caption", _media_folder(tmp_path), "--out", tmp_path / "o.jsonl", "--backend", "openai")
    assert code == 2 and "--base-url" in err
    assert not (tmp_path / "o.jsonl").exists()
