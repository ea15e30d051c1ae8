"""Captions and prompt expansions from any OpenAI-compatible chat completions endpoint.

One small client over the official ``openai`` SDK (the ``language`` extra): it already
speaks every OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio, ...), carries
timeouts, and retries only what is safe to repeat: connection failures, timeouts, 408, 409,
429 and 5xx answers, with backoff that honours ``Retry-After``. A chat completion changes
nothing on the server, so a repeated request can cost tokens but never double an effect;
401, 403, 404 and 400 are never retried. Every failure becomes one :class:`BackendError`.

Frames are sent as PNG ``data:`` URLs in ``image_url`` content parts, the format the vision
chat API takes; the key comes from an environment variable, never from the command line.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import numpy as np

from kinetoscope.errors import ConfigError, KinetoscopeError, require

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

CAPTION_SYSTEM_PROMPT = """You write captions for a video dataset. Every caption has this fixed style, one sentence each:
1. one sentence per object: "A {size} {colour} {shape} {motion}." where size is tiny, small, medium, large or huge, and motion is "stays still", "moves {direction} at a {speed} speed", "falls" or "is thrown {direction} at a {speed} speed and falls"; directions are right, up-right, up, up-left, left, down-left, down, down-right; speeds are very slow, slow, moderate, fast, very fast;
2. the background: "The background is plain {colour}." or "The background is a gradient from {colour} at the top to {colour} at the bottom.";
3. the camera: "The camera is static." or "The camera pans right and then back left.";
4. events, each as "The {colour} {shape} bounces off the floor at frame {n}.", "The {colour} {shape} and the {colour} {shape} collide at frame {n}.", "The {colour} {shape} leaves the frame at frame {n}.".
For footage that is not of simple shapes, keep the same order and plain words: each subject, what it does and where it goes, the setting, the camera, and what happens when.
Answer with the caption only.

Examples:
{examples}"""

EXPAND_SYSTEM_PROMPT = """You turn a short video prompt into a detailed caption in the exact style of the training captions below. Keep everything the prompt says (colours, shapes, sizes, motions, directions, speeds, background, events) and fill in what it leaves open with plausible choices. Keep any words you cannot fit into the style at the end of the caption. Answer with the caption only.

Examples:
{examples}"""


class BackendError(KinetoscopeError):
    """The chat endpoint failed or answered something unusable."""

    code = "backend_error"
    status_code = 502


class OpenAIBackend:
    """A chat completions client: ``caption_frames(frames)`` and ``expand(prompt)``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout: float = 60.0,
        max_retries: int = 2,
        frames: int = 4,
    ):
        openai = require("openai", "The OpenAI-compatible backend")
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(
                f"The environment variable {api_key_env} holds no API key; set it (a local server that takes "
                f"no key accepts any value, e.g. {api_key_env}=none)."
            )
        if frames < 1:
            raise ConfigError(f"The number of frames to send must be at least 1, got {frames}.")
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.frames = frames
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def chat(self, messages: list[dict[str, Any]], **options: Any) -> str:
        """The assistant's text for ``messages``; failures raise :class:`BackendError`."""
        import openai

        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages, **options)
        except openai.APITimeoutError:
            raise BackendError(f"The chat endpoint {self.base_url} did not answer within {self.timeout:g} s.") from None
        except openai.APIConnectionError as e:
            raise BackendError(f"Could not reach the chat endpoint {self.base_url}: {e.__cause__ or e}.") from None
        except openai.APIStatusError as e:
            raise BackendError(
                f"The chat endpoint {self.base_url} answered HTTP {e.status_code}: {_error_message(e)}."
            ) from None
        except openai.APIError as e:
            raise BackendError(f"The chat endpoint {self.base_url} sent an unusable answer: {e}.") from None
        if not response.choices or not (response.choices[0].message.content or "").strip():
            raise BackendError(f"The chat endpoint {self.base_url} answered with no text.")
        return " ".join(response.choices[0].message.content.split())

    def caption_frames(self, frames: np.ndarray, fps: float | None = None, original: str | None = None) -> str:
        """A detailed caption of uint8 ``(T, H, W, 3)`` frames, from ``self.frames`` evenly spaced ones."""
        picked = sample_frame_indices(len(frames), self.frames)
        timing = f" at {fps:g} fps" if fps else ""
        intro = f"Frames {', '.join(map(str, picked))} of a {len(frames)}-frame video{timing}, in order."
        if original:
            intro += f" Its existing caption, which may be short or wrong: {original!r}."
        content: list[dict[str, Any]] = [{"type": "text", "text": intro}]
        content += [{"type": "image_url", "image_url": {"url": png_data_url(frames[i])}} for i in picked]
        messages = [
            {"role": "system", "content": CAPTION_SYSTEM_PROMPT.replace("{examples}", _examples())},
            {"role": "user", "content": content},
        ]
        return self.chat(messages, temperature=0.0)

    def expand(self, prompt: str, seed: int = 0) -> str:
        """A detailed caption for a short prompt; ``seed`` is passed on for endpoints that honour it."""
        messages = [
            {"role": "system", "content": EXPAND_SYSTEM_PROMPT.replace("{examples}", _examples())},
            {"role": "user", "content": prompt},
        ]
        return self.chat(messages, seed=seed, temperature=0.7)


def sample_frame_indices(total: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices from first to last (all of them for short clips)."""
    if total <= count:
        return list(range(total))
    return sorted({round(float(i)) for i in np.linspace(0, total - 1, count)})


def png_data_url(frame: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _examples() -> str:
    """Three captions of the world, always the same, to show the style."""
    from kinetoscope.world import describe, sample_state

    states = [sample_state(name, seed=seed) for name, seed in (("collision", 1), ("bounce", 2), ("static", 3))]
    return "\n".join(f"- {describe(state)[1]}" for state in states)


def _error_message(error: Any) -> str:
    """The ``error.message`` of an OpenAI error body, else the raw body's start."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"]).rstrip(".")
    text = error.response.text if error.response is not None else ""
    return (text.strip()[:200] or error.message).rstrip(".")
