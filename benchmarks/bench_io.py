"""kinetoscope.io: encode/decode rates per format and size, and time-range decoding against a naive read.

Rates: ``write_video`` then ``read_video`` of the same clip (48 frames of a smoothly moving
sine texture, 24 fps, default quality), median wall time over repeats, in frames per second.

Time range: a 60 s, 24 fps, 256x256 mp4 written by ``write_video``; we read its last second
with ``read_video(start=59, end=60)``, which seeks to the keyframe before 59 s. The naive
baseline in the same process decodes the whole file with PyAV and slices the last 24 frames,
once converting every frame to RGB (what "read the video, then slice" does) and once
converting only the kept frames (so the ratio isolates the cost of decoding). Both return the
same frames; the script checks that.

    python benchmarks/bench_io.py                 # full table + 60 s time-range comparison
    python benchmarks/bench_io.py --repeats 1 --long-seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from kinetoscope.io import read_video, write_video

FPS = 24
CASES = [(".mp4", 64), (".mp4", 256), (".mp4", 512), (".gif", 64), (".gif", 256), (".webp", 64), (".webp", 256)]


def moving_texture(num_frames: int, size: int, first: int = 0) -> np.ndarray:
    """A sine texture drifting diagonally, colour varying across the frame: compressible, never static."""
    t = np.arange(first, first + num_frames, dtype=np.float32)[:, None, None, None]
    y = np.arange(size, dtype=np.float32)[None, :, None, None] * (64.0 / size)
    x = np.arange(size, dtype=np.float32)[None, None, :, None] * (64.0 / size)
    phase = np.array([0.0, 2.0, 4.0], dtype=np.float32)
    pixels = 128 + 60 * np.sin(0.2 * (x - 1.5 * t) + phase) + 50 * np.cos(0.15 * (y + t) - phase)
    return pixels.clip(0, 255).astype(np.uint8)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rates(folder: Path, repeats: int, num_frames: int) -> None:
    print(f"encode/decode rates, {num_frames} frames, median of {repeats}")
    print(f"{'format':<7}{'size':>9}{'encode fps':>12}{'decode fps':>12}{'KiB':>8}")
    for suffix, size in CASES:
        frames = moving_texture(num_frames, size)
        path = folder / f"rate{size}{suffix}"
        encode = median_seconds(lambda path=path, frames=frames: write_video(path, frames, FPS), repeats)
        decode = median_seconds(lambda path=path: read_video(path), repeats)
        assert read_video(path).frames.shape == frames.shape
        kib = path.stat().st_size / 1024
        print(
            f"{suffix[1:]:<7}{f'{size}x{size}':>9}{num_frames / encode:>12.0f}{num_frames / decode:>12.0f}{kib:>8.0f}"
        )


def write_long_clip(path: Path, seconds: int, size: int) -> None:
    # One write_video call; 60 s at 256x256 is 1440 frames, about 280 MB of RGB (made a second at a time).
    frames = np.concatenate([moving_texture(FPS, size, first=FPS * s) for s in range(seconds)])
    write_video(path, frames, FPS)


def naive_last_second(path: Path, convert_all: bool) -> np.ndarray:
    """Decode every frame from the start, then keep the last second (RGB conversion as fast as ours)."""
    to_rgb = VideoReformatter()
    rgb = lambda frame: to_rgb.reformat(frame, format="rgb24").to_ndarray()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = [rgb(f) if convert_all else f for f in container.decode(stream)]
    kept = decoded[-FPS:]
    return np.stack(kept if convert_all else [rgb(f) for f in kept])


def time_range(folder: Path, repeats: int, seconds: int, size: int) -> None:
    path = folder / "long.mp4"
    write_long_clip(path, seconds, size)
    ours = lambda: read_video(path, start=seconds - 1, end=seconds).frames
    assert np.array_equal(ours(), naive_last_second(path, convert_all=False))
    assert np.array_equal(ours(), naive_last_second(path, convert_all=True))
    t_ours = median_seconds(ours, repeats)
    t_full = median_seconds(lambda: naive_last_second(path, convert_all=True), repeats)
    t_decode = median_seconds(lambda: naive_last_second(path, convert_all=False), repeats)
    print(f"\nlast 1 s of a {seconds} s {size}x{size} mp4 at {FPS} fps ({seconds * FPS} frames), median of {repeats}")
    print(f"{'method':<44}{'ms':>10}{'ratio':>10}")
    print(f"{'kinetoscope read_video(start, end) (seek)':<44}{t_ours * 1e3:>10.1f}{1.0:>10.2f}")
    print(f"{'naive: decode + convert all, then slice':<44}{t_full * 1e3:>10.1f}{t_full / t_ours:>10.2f}")
    print(f"{'naive: decode all, convert only the slice':<44}{t_decode * 1e3:>10.1f}{t_decode / t_ours:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=48, help="frames per clip for the rate table")
    parser.add_argument("--long-seconds", type=int, default=60, help="length of the clip for the time-range test")
    parser.add_argument("--long-size", type=int, default=256)
    args = parser.parse_args()
    print(f"PyAV {av.__version__} (FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})")
    with tempfile.TemporaryDirectory() as tmp:
        rates(Path(tmp), args.repeats, args.frames)
        time_range(Path(tmp), args.repeats, args.long_seconds, args.long_size)


if __name__ == "__main__":
    main()
