"""kinetoscope.io: round trips per format, time-range decoding, probe, and every error path."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from kinetoscope.errors import InvalidInputError, MediaError
from kinetoscope.io import (
    DEFAULT_FPS,
    frames_to_tensor,
    is_image_path,
    is_video_path,
    probe,
    pyav,
    read_image,
    read_video,
    tensor_to_frames,
    write_image,
    write_video,
)
from kinetoscope.io.timeline import guess_rate, rounded_durations_ms


def smooth_clip(num_frames: int, height: int, width: int) -> np.ndarray:
    """Gentle gradients that drift over time (R along x, G along y, B constant): what lossy codecs are built for."""
    t = np.arange(num_frames)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    channels = np.broadcast_arrays(40 + 160 * x / width + 2 * t, 30 + 180 * y / height + t, 120 + 0 * x + 3 * t)
    return np.stack(channels, axis=-1).round().clip(0, 255).astype(np.uint8)


def counting_clip(num_frames: int, size: int = 16) -> np.ndarray:
    """Frame i is a flat grey of brightness 5 * i, so the frame index can be read back from the pixels."""
    return (
        np.repeat((5 * np.arange(num_frames, dtype=np.uint8))[:, None, None, None], size, 1)
        .repeat(size, 2)
        .repeat(3, 3)
    )


def indices(frames: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / 5) for f in frames]


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------- frames <-> tensors
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
    "bad",
    [np.zeros((2, 4, 4, 3), np.float32), np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4, 4), np.uint8), "frames"],
)
def test_bad_frame_arrays_are_rejected(bad, tmp_path):
    with pytest.raises(InvalidInputError, match="frames must"):
        frames_to_tensor(bad)
    with pytest.raises(InvalidInputError, match="frames must"):
        write_video(tmp_path / "x.mp4", bad, 24)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    "bad", [torch.zeros(4, 2, 3, 3), torch.zeros(2, 3, 2, 3, 3), torch.zeros(3, 2, 3, 3, dtype=torch.uint8)]
)
def test_bad_tensors_are_rejected(bad):
    with pytest.raises(InvalidInputError):
        tensor_to_frames(bad)


def test_nan_tensor_is_rejected():
    with pytest.raises(InvalidInputError, match="NaN"):
        tensor_to_frames(torch.full((3, 1, 2, 2), float("nan")))


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("size", [(32, 48), (17, 33), (1, 1)])
def test_mp4_round_trip(tmp_path, size):
    frames = smooth_clip(12, *size)
    path = write_video(tmp_path / "clip.mp4", frames, 24)
    video = read_video(path)
    assert video.frames.shape == frames.shape  # odd sizes come back cropped to their true size
    assert video.fps == 24 and video.duration == pytest.approx(0.5)
    assert mean_abs_error(video.frames, frames) < 6
    info = probe(path)
    assert (info.num_frames, info.width, info.height, info.codec, info.fps) == (12, size[1], size[0], "h264", 24)
    assert info.duration == pytest.approx(0.5)


def test_mp4_quality_trades_size_for_error(tmp_path):
    frames = smooth_clip(8, 64, 64)
    frames[:, ::2] //= 2  # stripes, so the low-quality encode has something to lose
    low, high = (write_video(tmp_path / f"{q}.mp4", frames, 24, quality=q) for q in (10, 95))
    assert low.stat().st_size < high.stat().st_size
    assert mean_abs_error(read_video(low).frames, frames) > mean_abs_error(read_video(high).frames, frames)


def test_mp4_keeps_ntsc_rate(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", smooth_clip(5, 8, 8), 24000 / 1001)
    assert probe(path).fps == pytest.approx(24000 / 1001, rel=1e-9)


def test_gif_round_trip(tmp_path):
    frames = smooth_clip(12, 32, 48)
    path = write_video(tmp_path / "clip.gif", frames, 24)
    video = read_video(path)
    assert video.frames.shape == frames.shape and video.fps == 24
    # Each frame's colours form a sheet of ~160 x 180 levels (R along x, G along y, B constant).
    # The octree palette cuts colour space into cubes 16 levels wide (~10 x 11 of them cover the
    # sheet, well under 256); a value uniform in a 16-level cell is off by 4 on average, on two of
    # three channels: (4 + 4 + 0) / 3 = 2.7, plus a little for cells merged to fit.
    assert mean_abs_error(video.frames, frames) < 3.5
    info = probe(path)
    assert (info.num_frames, info.width, info.height, info.fps, info.codec) == (12, 48, 32, 24, "gif")


def test_webp_round_trip(tmp_path):
    frames = smooth_clip(12, 32, 48)
    path = write_video(tmp_path / "clip.webp", frames, 24)
    video = read_video(path)
    assert video.frames.shape == frames.shape and video.fps == 24
    assert mean_abs_error(video.frames, frames) < 6
    info = probe(path)
    assert (info.num_frames, info.width, info.height, info.fps, info.codec) == (12, 48, 32, 24, "webp")
    lossless = write_video(tmp_path / "exact.webp", frames, 24, quality=100)
    assert np.array_equal(read_video(lossless).frames, frames)


@pytest.mark.parametrize("name", ["clip.gif", "clip.webp"])
def test_repeated_frames_survive_gif_and_webp(tmp_path, name):
    # Both encoders merge identical neighbours into one longer frame; reading must undo it.
    frames = counting_clip(10)[[0, 0, 1, 2, 2, 2, 3, 4, 4, 5]]
    video = read_video(write_video(tmp_path / name, frames, 30, quality=100))
    assert indices(video.frames) == [0, 0, 1, 2, 2, 2, 3, 4, 4, 5]
    assert video.fps == 30 and probe(tmp_path / name).num_frames == 10


def test_png_folder_round_trip_is_exact(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, size=(4, 9, 11, 3), dtype=np.uint8)
    path = write_video(tmp_path / "frames", frames, 12.5)
    assert sorted(p.name for p in path.iterdir()) == [f"frame_0000{i}.png" for i in range(4)] + ["video.json"]
    video = read_video(path)
    assert np.array_equal(video.frames, frames) and video.fps == 12.5
    assert probe(path) == type(probe(path))(12.5, 4, 4 / 12.5, 11, 9, "png")
    write_video(path, frames[:2], 12.5)  # an existing frame folder is replaced as a whole
    assert read_video(path).num_frames == 2


def test_folder_without_metadata_reads_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(counting_clip(11)[i]).save(tmp_path / f"f{i}.png")
    video = read_video(tmp_path)
    assert indices(video.frames) == [1, 2, 10] and video.fps == DEFAULT_FPS


def test_foreign_gif_rate_is_recovered_from_durations(tmp_path):
    images = [Image.fromarray(f) for f in counting_clip(6)[[0, 1, 1, 2, 3, 4, 5]]]
    images[0].save(tmp_path / "x.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    video = read_video(tmp_path / "x.gif")  # no fps tag: 10 fps from the 1/10 s delays
    assert video.fps == 10 and indices(video.frames) == [0, 1, 1, 2, 3, 4, 5]
    # 24 fps stored as 1/100 s delays (4, 4, 5, ...) snaps back to exactly 24.
    durations = [d / 1000 for d in rounded_durations_ms(30, 24, 10)]
    assert set(durations) == {0.04, 0.05} and guess_rate(durations, 0.01) == 24


def test_images_read_as_one_frame_videos(tmp_path):
    frame = smooth_clip(1, 10, 14)[0]
    for name in ("a.png", "a.jpg", "a.webp"):
        path = write_image(tmp_path / name, frame)
        video = read_video(path)
        assert video.frames.shape == (1, 10, 14, 3) and video.fps == DEFAULT_FPS
        assert mean_abs_error(read_image(path), frame) < (0.01 if name == "a.png" else 4)
        assert probe(path).num_frames == 1 and (probe(path).width, probe(path).height) == (14, 10)


def test_read_image_composites_alpha_on_white_and_applies_exif_orientation(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    image = read_image(tmp_path / "alpha.png")
    assert image[0, 0].tolist() == [200, 0, 0] and image[0, 5].tolist() == [255, 255, 255]

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (20, 10, 3)


def test_suffix_predicates():
    assert is_video_path("a.MP4") and is_video_path("b.gif") and is_video_path("c.webp")
    assert is_image_path("a.JPG") and is_image_path("c.webp") and not is_image_path("a.mp4")
    assert not is_video_path("notes.txt") and not is_image_path("notes.txt")


# ---------------------------------------------------------------- time ranges
@pytest.fixture(scope="module", params=["clip.mp4", "clip.gif", "frames"])
def counting_video(request, tmp_path_factory):
    """Two seconds at 24 fps whose frame i has brightness 5 * i, in each format."""
    return write_video(tmp_path_factory.mktemp("counting") / request.param, counting_clip(48), 24, quality=95)


def test_time_range_returns_the_frames_in_it(counting_video):
    assert indices(read_video(counting_video, start=1.0, end=1.5).frames) == list(range(24, 36))
    assert indices(read_video(counting_video, start=0.51, end=0.7).frames) == [13, 14, 15, 16]
    assert indices(read_video(counting_video, start=1.9).frames) == [46, 47]
    assert indices(read_video(counting_video, max_frames=3).frames) == [0, 1, 2]


def test_time_range_resampled_to_a_target_fps(counting_video):
    video = read_video(counting_video, start=0.5, end=1.5, fps=8)
    assert video.fps == 8 and indices(video.frames) == [12, 15, 18, 21, 24, 27, 30, 33]
    # 10 fps: grid times 0.1 k fall between frames; the nearest one wins.
    assert indices(read_video(counting_video, end=0.5, fps=10).frames) == [0, 2, 5, 7, 10]
    # Upsampling repeats frames; a grid time exactly between two frames takes the earlier.
    assert indices(read_video(counting_video, end=0.125, fps=48).frames) == [0, 0, 1, 1, 2, 2]
    assert read_video(counting_video, fps=12).num_frames == 24


def test_mp4_time_range_seeks_instead_of_decoding_from_the_start(tmp_path):
    path = write_video(tmp_path / "clip.mp4", counting_clip(48), 24)
    timeline = pyav._decode(path, start=1.6)
    first_time, _ = next(timeline)
    timeline.close()
    # Keyframes are 1 s apart, so decoding starts at the keyframe at 1.0 s, not at frame 0.
    assert 0.5 < first_time <= 1.6


# ---------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory):
    noise = np.random.default_rng(2).integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)  # every frame is big
    path = write_video(tmp_path_factory.mktemp("mp4") / "clip.mp4", noise, 24)
    return path.read_bytes()


def test_missing_empty_and_non_video_files(tmp_path):
    with pytest.raises(MediaError, match=r"nope\.mp4: no such file"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        read_video(tmp_path / "empty.mp4")
    with pytest.raises(MediaError, match="is empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "notes.mp4").write_text("not a video at all\n")
    with pytest.raises(MediaError, match=r"notes\.mp4 is not a video or image file"):
        read_video(tmp_path / "notes.mp4")
    (tmp_path / "notes.png").write_text("not an image\n")
    with pytest.raises(MediaError, match=r"notes\.png is not a video or image file"):
        read_image(tmp_path / "notes.png")
    (tmp_path / "notes.txt").write_text("text\n")
    with pytest.raises(MediaError, match=r"cannot read .*notes\.txt: its suffix"):
        read_video(tmp_path / "notes.txt")


def test_empty_folder_is_not_a_video(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="holds no frames"):
        read_video(tmp_path / "empty")


def test_truncated_mp4_keeps_the_frames_that_decode(tmp_path, mp4_bytes):
    (tmp_path / "half.mp4").write_bytes(mp4_bytes[: len(mp4_bytes) // 2])
    with pytest.warns(UserWarning, match=r"half\.mp4 is truncated"):
        video = read_video(tmp_path / "half.mp4")
    assert 1 <= video.num_frames < 24


def test_mp4_with_no_decodable_frame_is_an_error(tmp_path, mp4_bytes):
    (tmp_path / "head.mp4").write_bytes(mp4_bytes[: len(mp4_bytes) // 10])  # index cut short
    with pytest.raises(MediaError, match=r"head\.mp4 is corrupt or truncated"):
        read_video(tmp_path / "head.mp4")
    cut = mp4_bytes.index(b"mdat") + 20  # index intact, almost no picture data
    (tmp_path / "nodata.mp4").write_bytes(mp4_bytes[:cut])
    with pytest.raises(MediaError, match=r"nodata\.mp4 is corrupt or truncated"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_video(tmp_path / "nodata.mp4")


@pytest.mark.parametrize("name", ["clip.webp", "clip.gif", "one.png", "one.jpg"])
def test_corrupt_gif_webp_and_images(tmp_path, name):
    frames = smooth_clip(4 if name.startswith("clip") else 1, 16, 16)
    path = (
        write_video(tmp_path / name, frames, 8) if name.startswith("clip") else write_image(tmp_path / name, frames[0])
    )
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:40]))
    with pytest.raises(MediaError, match=f"{name} is corrupt or truncated"):
        read_video(path)


@pytest.fixture(scope="module")
def one_second_mp4(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("args") / "args.mp4", smooth_clip(24, 8, 8), 24)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(start=1.0, end=1.0), r"end \(1 s\) must be after start"),
        (dict(start=-1), "start must be a number of seconds >= 0"),
        (dict(end=float("nan")), "end must be a number"),
        (dict(fps=0), "fps must be a finite number"),
        (dict(fps=-5), "fps must be a finite number"),
        (dict(max_frames=0), "max_frames must be a positive integer"),
        (dict(start=5.0), r"start \(5 s\) is after the last frame"),
        (dict(start=0.51, end=0.52), "no frame of .* starts between"),
    ],
)
def test_bad_read_arguments(one_second_mp4, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        read_video(one_second_mp4, **kwargs)


def test_bad_write_arguments(tmp_path):
    frames = smooth_clip(2, 8, 8)
    with pytest.raises(MediaError, match=r"cannot write a video to .*x\.avi"):
        write_video(tmp_path / "x.avi", frames, 24)
    with pytest.raises(MediaError, match=r"cannot write an image to .*x\.bmp"):
        write_image(tmp_path / "x.bmp", frames[0])
    with pytest.raises(InvalidInputError, match=r"\(H, W, 3\)"):
        write_image(tmp_path / "x.png", frames)
    with pytest.raises(InvalidInputError, match="fps must be"):
        write_video(tmp_path / "x.mp4", frames, 0)
    with pytest.raises(InvalidInputError, match="quality must be"):
        write_video(tmp_path / "x.mp4", frames, 24, quality=101)
    with pytest.raises(InvalidInputError, match="fps must be <= 100"):
        write_video(tmp_path / "x.gif", frames, 120)
    assert list(tmp_path.iterdir()) == []


def test_folder_writes_refuse_to_clobber_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me\n")
    with pytest.raises(MediaError, match="refusing to replace folder"):
        write_video(tmp_path, smooth_clip(2, 8, 8), 24)
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"


def test_folder_frames_of_different_sizes_are_an_error(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "frame_0.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "frame_1.png")
    with pytest.raises(MediaError, match=r"frame_1\.png is 9x8 but earlier frames are 8x8"):
        read_video(tmp_path)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", smooth_clip(3, 8, 8), 24)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pyav.av.VideoFrame, "from_ndarray", explode)
    with pytest.raises(RuntimeError):
        write_video(path, smooth_clip(5, 8, 8), 24)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


# ---------------------------------------------------------------- command line
def test_cli_info(cli, tmp_path):
    path = write_video(tmp_path / "clip.mp4", smooth_clip(12, 17, 33), 24)
    code, out, err = cli("info", path)
    assert code == 0 and err == ""
    assert "size      33x17" in out and "frames    12" in out and "duration  0.500 s" in out and "h264" in out
    code, out, _ = cli("info", path, "--json")
    assert code == 0 and json.loads(out) == {
        "file": str(path),
        "fps": 24.0,
        "num_frames": 12,
        "duration": 0.5,
        "width": 33,
        "height": 17,
        "codec": "h264",
    }


def test_cli_convert(cli, tmp_path):
    source = write_video(tmp_path / "clip.mp4", counting_clip(48), 24, quality=95)
    code, out, _ = cli("convert", source, tmp_path / "cut.gif", "--start", "0.5", "--end", "1.5", "--fps", "8")
    assert code == 0 and "wrote" in out and "8 frames" in out
    assert indices(read_video(tmp_path / "cut.gif").frames) == [12, 15, 18, 21, 24, 27, 30, 33]
    code, out, _ = cli("convert", tmp_path / "cut.gif", tmp_path / "frames")
    assert code == 0 and probe(tmp_path / "frames").num_frames == 8
    code, _, _ = cli("convert", source, tmp_path / "still.png", "--start", "1", "--end", "1.04")
    assert code == 0 and indices(read_video(tmp_path / "still.png").frames) == [24]


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "{tmp}/missing.mp4"], "missing.mp4: no such file"),
        (["info", "{tmp}/notes.mp4"], "notes.mp4 is not a video or image file"),
        (["convert", "{tmp}/notes.mp4", "{tmp}/out.gif"], "notes.mp4 is not a video or image file"),
        (["convert", "{tmp}/clip.mp4", "{tmp}/out.gif", "--start", "2", "--end", "1"], "must be after start"),
        (["convert", "{tmp}/clip.mp4", "{tmp}/out.gif", "--fps", "0"], "fps must be"),
        (["convert", "{tmp}/clip.mp4", "{tmp}/out.txt"], "cannot write a video"),
        (["convert", "{tmp}/clip.mp4", "{tmp}/out.png"], "out.png is an image but"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(cli, tmp_path, args, message):
    write_video(tmp_path / "clip.mp4", smooth_clip(4, 8, 8), 24)
    (tmp_path / "notes.mp4").write_text("not a video\n")
    code, out, err = cli(*[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err and "Traceback" not in err
