"""Shared by test_serve.py and test_web.py: the pipeline they serve and a live uvicorn server on loopback."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

#: The fixture that gives the pipeline every test serves: the real one with the tiny trained model.
PIPELINE_FIXTURE = "world_pipeline"


@pytest.fixture(scope="module")
def world_pipeline():
    return WorldPipeline()


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_model_dir):
    from kinetoscope.pipeline import Pipeline

    return Pipeline.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def pipeline(request):
    return request.getfixturevalue(PIPELINE_FIXTURE)


class LiveServer:
    """``with LiveServer(app) as server: server.url`` runs uvicorn in a thread on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self, app, start_timeout: float = 60.0):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.start_timeout = start_timeout
        self.url = ""

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


# ---------------------------------------------------------------- stand-in until kinetoscope.pipeline lands
import dataclasses
from types import SimpleNamespace

import numpy as np

from kinetoscope.io import read_video, write_video
from kinetoscope.world import sample_clip


@dataclasses.dataclass
class _Result:
    frames: np.ndarray
    fps: float
    seed: int

    def save(self, path):
        return write_video(path, self.frames, self.fps)


class WorldPipeline:
    limits = SimpleNamespace(size_multiple=16, min_width=32, max_width=128, min_height=32, max_height=128,
                             max_frames=33, frame_multiple=4, default_fps=8.0, default_width=64, default_height=64)
    model_id = "world-test"

    def __call__(self, prompt, *, width=None, height=None, num_frames=None, fps=8.0, seconds=None, seed=0, steps=4,
                 progress=None, image=None, image_frame=0, video=None, video_b=None, direction=None, strength=None,
                 loop=False, negative_prompt=None, guidance=5.0):
        for step in range(steps):
            time.sleep(0.02)
            if progress:
                progress(step + 1, steps)
        if video is not None:
            src = read_video(video)
            height, width = src.height, src.width
            num_frames = src.num_frames if seconds is None else src.num_frames + int(seconds * fps)
        frames = sample_clip("mixed", seed=seed % 1000, width=width, height=height, frames=num_frames, fps=fps).frames
        return _Result(frames, fps, seed)
