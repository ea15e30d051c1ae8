"""Watermark robustness and false positives, with invisible-watermark's dwtDct as the competitor.

Watermarked set: with ``--generated DIR``, the videos in DIR as they are (clips the pipeline
wrote carry the watermark already; ``benchmarks/generate_clips.py`` makes such a folder), or
else world clips of every scenario at varied sizes, watermarked with ``embed_watermark`` and
written as mp4 at the default quality (a stand-in for generated clips). Each clip is attacked:

- ``none``: the mp4 as written;
- ``crf28``: decoded and re-encoded with H.264 at CRF 28;
- ``resize``: resized to half size and back (bilinear), re-encoded at the default quality;
- ``crop10``: 90% of the width and height kept at a random offset, re-encoded;
- ``all``: crop, then resize, then CRF 28 (not asked for; shows the margin).

False positives: never-watermarked world clips (other seeds, same sizes, mp4 at the default
quality) and "photos": random crops, rescales and flips of the images scikit-image ships
(``skimage.data``) plus 1/f-noise textures, saved as JPEG at quality 90.

Competitor: invisible-watermark's ``dwtDct`` (32 bits, per-frame decode, bits voted over frames)
on 320x320 clips (it refuses frames under 256x256), half world clips and half slow pans across
photos, same attacks, in the same run.

    python benchmarks/bench_watermark.py --n 200 --out bench_watermark.json
    python benchmarks/generate_clips.py --model runs/dit-tiny/final --n 200 --out generated/
    python benchmarks/bench_watermark.py --generated generated/ --model-id MODEL_ID --n 200
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from kinetoscope.io import read_video, write_image, write_video
from kinetoscope.safety.watermark import MAX_PAYLOAD_ERRORS, embed_watermark, model_hash, read_watermark
from kinetoscope.world import SCENARIOS, clip_seed, sample_clip

MODEL_ID = "kinetoscope-bench"
CRF28_QUALITY = 45  # kinetoscope.io maps quality 45 to x264 CRF round(51 * 55 / 100) = 28
SIZES = ((128, 128), (160, 96), (96, 160), (256, 144), (192, 192), (144, 256), (320, 180), (112, 112))
WORLD_SCENARIOS = tuple(name for name in SCENARIOS if name != "mixed")
PHOTO_NAMES = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "text",
    "coins",
    "colorwheel",
    "retina",
    "cell",
    "clock",
)


# ---------------------------------------------------------------- attacks
def resize_half_and_back(frames: np.ndarray) -> np.ndarray:
    height, width = frames.shape[1:3]
    return np.stack(
        [
            np.asarray(
                Image.fromarray(f)
                .resize((width // 2, height // 2), Image.Resampling.BILINEAR)
                .resize((width, height), Image.Resampling.BILINEAR)
            )
            for f in frames
        ]
    )


def crop_10(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = frames.shape[1:3]
    h, w = round(0.9 * height), round(0.9 * width)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    return np.ascontiguousarray(frames[:, top : top + h, left : left + w])


def mp4_roundtrip(frames: np.ndarray, fps: float, folder: Path, quality: int = 75) -> np.ndarray:
    path = folder / "attacked.mp4"
    write_video(path, frames, fps, quality=quality)
    return read_video(path).frames


def jpeg_roundtrip(image: np.ndarray, folder: Path) -> np.ndarray:
    path = folder / "photo.jpg"
    write_image(path, image, quality=90)
    return read_video(path).frames


def attacks(frames: np.ndarray, fps: float, rng: np.random.Generator, folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, attacked frames) for every attack on the frames of a written mp4."""
    yield "none", frames
    yield "crf28", mp4_roundtrip(frames, fps, folder, CRF28_QUALITY)
    yield "resize", mp4_roundtrip(resize_half_and_back(frames), fps, folder)
    yield "crop10", mp4_roundtrip(crop_10(frames, rng), fps, folder)
    yield "all", mp4_roundtrip(resize_half_and_back(crop_10(frames, rng)), fps, folder, CRF28_QUALITY)


# ---------------------------------------------------------------- data
def world_clip(index: int, seed: int, frames: int, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    width, height = size or SIZES[index % len(SIZES)]
    scenario = WORLD_SCENARIOS[index % len(WORLD_SCENARIOS)]
    clip = sample_clip(scenario, seed=clip_seed(seed, index), width=width, height=height, frames=frames)
    return clip.frames, clip.fps


def watermarked_clips(args, folder: Path) -> Iterator[tuple[str, np.ndarray, float]]:
    """(name, frames of the written mp4, fps): generated videos as they are, or watermarked world clips."""
    if args.generated:
        for path in sorted(p for p in Path(args.generated).iterdir() if p.suffix.lower() in (".mp4", ".webm", ".mov")):
            video = read_video(path)
            yield path.name, video.frames, video.fps
        return
    for i in range(args.n):
        frames, fps = world_clip(i, seed=1, frames=args.frames)
        yield f"world-{i}", mp4_roundtrip(embed_watermark(frames, MODEL_ID), fps, folder), fps


def photos(n: int, seed: int) -> Iterator[np.ndarray]:
    """Natural images from skimage.data (random crop, scale and flip), every fourth a 1/f-noise texture."""
    import skimage.data

    sources = []
    for name in PHOTO_NAMES:
        image = np.asarray(getattr(skimage.data, name)())
        image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
        sources.append(image.astype(np.uint8))
    rng = np.random.default_rng(seed)
    for i in range(n):
        if i % 4 == 3:
            yield pink_noise(rng, int(rng.integers(96, 400)), int(rng.integers(96, 400)))
            continue
        image = sources[(i - i // 4) % len(sources)]
        scale = rng.uniform(0.5, 1.0)
        height, width = image.shape[:2]
        image = np.asarray(Image.fromarray(image).resize((max(96, int(width * scale)), max(96, int(height * scale)))))
        h, w = (int(rng.integers(min(96, side), side + 1)) for side in image.shape[:2])
        top, left = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - w + 1)
        crop = image[top : top + h, left : left + w]
        yield np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


def pink_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A colour texture with a natural image's 1/f amplitude spectrum."""
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.rfftfreq(width), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width))
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width))
        channels.append((field - field.mean()) / field.std())
    return np.clip(128 + 40 * np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- competitor
def competitor_clips(n: int, frames: int) -> Iterator[tuple[np.ndarray, float]]:
    """320x320 clips, alternately a world clip and a slow pan across a photo (dwtDct's home ground)."""
    pictures = photos(n, seed=6)
    for i in range(n):
        if i % 2 == 0:
            yield world_clip(i // 2, seed=3, frames=frames, size=(320, 320))
            continue
        picture = next(pictures)
        while min(picture.shape[:2]) < 96:
            picture = next(pictures)
        scale = 360 / min(picture.shape[:2])
        big = np.asarray(
            Image.fromarray(picture).resize((round(picture.shape[1] * scale), round(picture.shape[0] * scale)))
        )
        yield np.stack([big[:320, 4 * t : 4 * t + 320] for t in range(frames)]), 10.0


def competitor_rows(n: int, frames: int, folder: Path) -> dict[str, dict[str, float]]:
    """invisible-watermark dwtDct vs ours on 320x320 clips: bit accuracy / detection per attack."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    bits = np.random.default_rng(0).integers(0, 2, 32)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits.tolist())
    decoder = WatermarkDecoder("bits", 32)
    theirs: dict[str, list[float]] = {}
    exact: dict[str, list[bool]] = {}
    ours: dict[str, list[bool]] = {}
    for i, (clip, fps) in enumerate(competitor_clips(n, frames)):
        # invisible-watermark works on BGR (OpenCV order)
        marked_theirs = np.stack([encoder.encode(f[..., ::-1].copy(), "dwtDct")[..., ::-1] for f in clip])
        marked_ours = embed_watermark(clip, MODEL_ID)
        for method, marked in (("theirs", marked_theirs), ("ours", marked_ours)):
            written = mp4_roundtrip(np.ascontiguousarray(marked), fps, folder)
            for attack, attacked in attacks(written, fps, np.random.default_rng(i), folder):
                if method == "ours":
                    reading = read_watermark(attacked, known_hashes=[model_hash(MODEL_ID)])
                    ours.setdefault(attack, []).append(reading.detected and reading.model_hash == model_hash(MODEL_ID))
                    continue
                if min(attacked.shape[1:3]) < 256:  # dwtDct refuses frames under 256x256
                    votes = np.full(32, 0.5)
                else:
                    votes = np.mean([decoder.decode(f[..., ::-1].copy(), "dwtDct") for f in attacked], axis=0)
                voted = (votes > 0.5).astype(int)
                theirs.setdefault(attack, []).append(float(np.mean(voted == bits)))
                exact.setdefault(attack, []).append(bool(np.all(voted == bits)))
    return {
        attack: {
            "dwtdct_bit_accuracy": float(np.mean(theirs[attack])),
            "dwtdct_exact": float(np.mean(exact[attack])),
            "ours_detected_and_id": float(np.mean(ours[attack])),
        }
        for attack in theirs
    }


# ---------------------------------------------------------------- timing
def per_frame_ms(function: Callable[[], object], frames: int, repeats: int = 3) -> float:
    best = min(_timed(function) for _ in range(repeats))
    return 1000 * best / frames


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def timings() -> dict[str, dict[str, float]]:
    rows = {}
    for width, height in ((128, 128), (1280, 720)):
        frames = np.random.default_rng(0).integers(0, 256, (8, height, width, 3), dtype=np.uint8)
        marked = embed_watermark(frames, MODEL_ID)
        rows[f"{width}x{height}"] = {
            "embed_ms_per_frame": per_frame_ms(lambda frames=frames: embed_watermark(frames, MODEL_ID), 8),
            "detect_ms_per_frame": per_frame_ms(lambda marked=marked: read_watermark(marked), 8),
        }
    return rows


# ---------------------------------------------------------------- main
def rate(values: list[bool]) -> str:
    return f"{100 * np.mean(values):.1f}% ({sum(values)}/{len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="Clips in each set (watermarked, clean world, photos).")
    parser.add_argument("--frames", type=int, default=17, help="Frames per world clip.")
    parser.add_argument("--generated", type=Path, help="Folder of generated (already watermarked) videos to attack.")
    parser.add_argument("--model-id", default=None, help="Model id the generated videos should name.")
    parser.add_argument("--competitor", type=int, default=20, help="320x320 clips for the dwtDct comparison (0: skip).")
    parser.add_argument("--out", type=Path, help="Write every number as JSON here.")
    args = parser.parse_args()
    if args.generated and not args.model_id:
        parser.error("--generated needs --model-id: the id the generating pipeline watermarked with.")
    expected = model_hash(args.model_id or MODEL_ID)

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        detected: dict[str, list[bool]] = {}
        identified: dict[str, list[bool]] = {}
        blind: dict[str, list[bool]] = {}
        agreement: dict[str, list[float]] = {}
        psnr = []
        for i, (name, frames, fps) in enumerate(watermarked_clips(args, folder)):
            for attack, attacked in attacks(frames, fps, np.random.default_rng(i), folder):
                reading = read_watermark(attacked, known_hashes=[expected])
                correct = reading.detected and reading.model_hash == expected
                detected.setdefault(attack, []).append(reading.detected)
                identified.setdefault(attack, []).append(correct)
                blind.setdefault(attack, []).append(correct and reading.payload_errors <= MAX_PAYLOAD_ERRORS)
                agreement.setdefault(attack, []).append(reading.agreement)
            if not args.generated:
                clean, _ = world_clip(i, seed=1, frames=args.frames)
                error = np.mean((embed_watermark(clean, MODEL_ID).astype(np.float64) - clean) ** 2)
                psnr.append(10 * np.log10(255**2 / error))
        results["watermarked"] = {
            attack: {
                "detected": float(np.mean(detected[attack])),
                "model_id_correct": float(np.mean(identified[attack])),
                "model_id_correct_blind": float(np.mean(blind[attack])),
                "min_agreement": float(np.min(agreement[attack])),
                "clips": len(detected[attack]),
            }
            for attack in detected
        }
        if psnr:
            results["psnr_db"] = {"min": float(np.min(psnr)), "median": float(np.median(psnr))}

        clean = [
            read_watermark(mp4_roundtrip(*world_clip(i, seed=2, frames=args.frames), folder)) for i in range(args.n)
        ]
        unmarked_photos = [read_watermark(jpeg_roundtrip(photo, folder)) for photo in photos(args.n, seed=4)]
        results["false_positives"] = {
            name: {
                "rate": float(np.mean([r.detected for r in readings])),
                "max_agreement": float(np.max([r.agreement for r in readings])),
                "count": len(readings),
            }
            for name, readings in (("world", clean), ("photos", unmarked_photos))
        }
        marked_photos = [
            read_watermark(jpeg_roundtrip(embed_watermark(photo[None], MODEL_ID)[0], folder))
            for photo in photos(args.n // 4, seed=5)
        ]
        results["watermarked_photos_jpeg90"] = {
            "detected": float(np.mean([r.detected for r in marked_photos])),
            "model_id_correct_blind": float(np.mean([r.model_hash == model_hash(MODEL_ID) for r in marked_photos])),
            "count": len(marked_photos),
        }
        if args.competitor:
            results["competitor"] = competitor_rows(args.competitor, 8, folder)
    results["timing"] = timings()

    print("| attack | detected | model id (known) | model id (blind) | lowest marker agreement |")
    print("|--------|---------:|-----------------:|-----------------:|------------------------:|")
    for attack, found in detected.items():
        print(
            f"| {attack} | {rate(found)} | {rate(identified[attack])} | {rate(blind[attack])} | "
            f"{np.min(agreement[attack]):.2f} |"
        )
    for name, readings in (("world clips", clean), ("photos", unmarked_photos)):
        print(
            f"false positives on unmarked {name}: {rate([r.detected for r in readings])}, "
            f"highest marker agreement {max(r.agreement for r in readings):.2f}"
        )
    print(
        f"watermarked photos saved as JPEG 90: detected {rate([r.detected for r in marked_photos])}, "
        f"model id {rate([r.model_hash == model_hash(MODEL_ID) for r in marked_photos])}"
    )
    if psnr:
        print(f"PSNR of the watermark: min {np.min(psnr):.1f} dB, median {np.median(psnr):.1f} dB")
    if "competitor" in results:
        print("\n| attack (320x320) | dwtDct bit accuracy | dwtDct exact payload | ours detected + id |")
        print("|---|---:|---:|---:|")
        for attack, row in results["competitor"].items():
            print(
                f"| {attack} | {100 * row['dwtdct_bit_accuracy']:.1f}% | {100 * row['dwtdct_exact']:.0f}% | "
                f"{100 * row['ours_detected_and_id']:.0f}% |"
            )
    for size, row in results["timing"].items():
        print(
            f"{size}: embed {row['embed_ms_per_frame']:.1f} ms/frame, detect {row['detect_ms_per_frame']:.1f} ms/frame"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
