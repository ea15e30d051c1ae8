"""The web page at / driven by headless Chromium (Debian's build, through playwright): prompt in, video out."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from serve_support import LiveServer

from kinetoscope.pipeline.request import EDIT_STRENGTH
from kinetoscope.serve import Settings, create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    """The real pipeline with the tiny trained model of tests/conftest.py."""
    from kinetoscope.pipeline import Pipeline

    return Pipeline.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def browser_page(tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()


def test_the_page_turns_a_prompt_into_a_playable_video(pipeline, browser_page, tmp_path):
    page = browser_page
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    app = create_app(pipeline, Settings(data_dir=tmp_path / "data", poll_after_ms=100))
    with LiveServer(app) as live:
        page.goto(live.url)
        page.wait_for_function("document.querySelectorAll('#sizes option').length > 0")
        assert page.input_value("#size") == f"{pipeline.limits.default_width}x{pipeline.limits.default_height}"
        # An empty field means the request layer's default, and says so.
        assert page.get_attribute("#strength", "placeholder") == str(EDIT_STRENGTH)
        side = 2 * pipeline.limits.size_multiple
        small = f"{side}x{side}"
        page.fill("#size", small)  # any size the model makes may be typed in; small is fast
        page.fill("#seconds", "1")
        page.fill("#prompt", "a red ball bounces on the floor")
        page.click("summary")
        page.fill("#steps", "2")
        page.fill("#seed", "5")
        page.click("#submit")

        page.wait_for_function(
            "(() => { const v = document.getElementById('player');"
            " return !v.hidden && v.readyState >= 2 && v.duration > 0; })()",
            timeout=120_000,
        )
        page.wait_for_selector("#history li[data-status=completed] img[src^='blob:']")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        player = page.evaluate(
            "(() => { const v = document.getElementById('player');"
            " return {w: v.videoWidth, h: v.videoHeight, duration: v.duration}; })()"
        )
        assert (player["w"], player["h"]) == (side, side)
        assert player["duration"] > 0
        assert page.get_attribute("#download-video", "href").startswith("blob:")
        assert page.text_content("#status").startswith("completed")

        videos = app.state.service.store.list(after=None, limit=10, order="desc")[0]
        assert [(v.prompt, v.size, v.params["seed"], v.params["steps"]) for v in videos] == [
            ("a red ball bounces on the floor", small, 5, 2)
        ]
        assert page.text_content("#history li .prompt") == "a red ball bounces on the floor"
    assert Image.open(tmp_path / "page.png").size[0] == 1100
    assert not console_errors, console_errors
