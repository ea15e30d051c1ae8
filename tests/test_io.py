"""kinetoscope.io: round trips per format, time-range decoding, probe, and every error path."""

import numpy as np
import pytest
import torch

from kinetoscope.errors import InvalidInputError, MediaError
from kinetoscope.io import frames_to_tensor, probe, read_video, tensor_to_frames, write_video


def smooth_clip(num_frames: int, height: int, width: int) -> np.ndarray:
    """Gentle gradients that drift over time: what lossy codecs are built for."""
    t = np.arange(num_frames)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    channels = np.broadcast_arrays(40 + 160 * x / width + 2 * t, 30 + 180 * y / height + t, 120 + 0 * x + 3 * t)
    return np.stack(channels, axis=-1).round().clip(0, 255).astype(np.uint8)


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_frames_tensor_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (3, 3, 5, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x[0, 1, 2, 3].item() == pytest.approx(frames[1, 2, 3, 0] / 127.5 - 1)
    assert np.array_equal(tensor_to_frames(x), frames)
    assert np.array_equal(tensor_to_frames(x[None]), frames)


def test_tensor_to_frames_clamps_and_rounds():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.999, 5.0]).reshape(1, 1, 1, 5).expand(3, 1, 1, 5)
    assert tensor_to_frames(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 4, 4, 3), np.float32), np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4, 4), np.uint8), "frames"]
)
def test_bad_frame_arrays_are_rejected(bad, tmp_path):
    with pytest.raises(InvalidInputError, match="frames must"):
        frames_to_tensor(bad)
    with pytest.raises(InvalidInputError, match="frames must"):
        write_video(tmp_path / "x.mp4", bad, 24)


@pytest.mark.parametrize("bad", [torch.zeros(4, 2, 3, 3), torch.zeros(2, 3, 2, 3, 3), torch.zeros(3, 2, 3, 3, dtype=torch.uint8)])
def test_bad_tensors_are_rejected(bad):
    with pytest.raises(InvalidInputError):
        tensor_to_frames(bad)


def test_nan_tensor_is_rejected():
    with pytest.raises(InvalidInputError, match="NaN"):
        tensor_to_frames(torch.full((3, 1, 2, 2), float("nan")))


@pytest.mark.parametrize("size", [(32, 48), (17, 33)])
def test_mp4_round_trip(tmp_path, size):
    frames = smooth_clip(12, *size)
    path = write_video(tmp_path / "clip.mp4", frames, 24)
    video = read_video(path)
    assert video.frames.shape == frames.shape
    assert video.fps == 24
    assert mean_abs_error(video.frames, frames) < 6
    info = probe(path)
    assert (info.num_frames, info.width, info.height, info.codec) == (12, size[1], size[0], "h264")
    assert info.duration == pytest.approx(0.5)
