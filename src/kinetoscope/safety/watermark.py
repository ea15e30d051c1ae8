"""An invisible DWT-DCT watermark that says "made by kinetoscope" and which model made it.

Layout. Each frame's luma is cut into 16x16-pixel blocks. A block's one-level Haar LL band is
8x8; eight low-frequency coefficients of that band's DCT (indices 1..3 in both directions)
each carry one sign. They need variation both across and down the block, so the world's flat
and graded backgrounds leave them near zero, and they are low enough to survive H.264 at
CRF 28 and a resize to half size and back. A 4x4-block tile (64x64 pixels) holds 128 signs:
96 fixed marker signs (the sync pattern that says "kinetoscope") and a 32-sign Reed-Muller
RM(2, 5) codeword of the model id's 16-bit hash. The tile repeats over the whole frame and in
every frame, so any 64x64 window of any frame holds all of it.

Embedding is informed: each coefficient is pushed only as far as needed to reach ``MARGIN`` on
the right side of zero, and measured again after rounding to uint8 and clipping. The change is
capped, more loosely in blocks full of texture, which hides it.

Detection does not know where the tile starts (a crop moves it). Each coefficient is the inner
product of a block with a fixed separable 16x16 kernel, so filtering the frame gives every
coefficient at every pixel offset; each becomes a vote in [-1, 1] (edges far beyond the margin
abstain). Folding the votes modulo 64 pixels and summing over frames leaves 64x64 accumulators
in which one FFT correlation with the marker tries all 4096 tile origins. At the best origin,
the count of marker slots on the marker's side gives a p-value that holds for any picture
(``_p_value``), and the payload is decoded by maximum likelihood over all 65536 hashes.

Why not invisible-watermark's ``dwtDct`` (measured side by side in
benchmarks/bench_watermark.py): it refuses frames under 256x256 (world clips are 128x128, and
a 10% crop of a 256-pixel frame falls under it), it reads one frame at a time at a fixed block
grid, so a crop that shifts the grid leaves it reading noise, and on flat synthetic frames it
loses bits before any attack.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pywt
from scipy import fft, ndimage, stats

from kinetoscope.errors import InvalidInputError
from kinetoscope.io import is_image_path, is_video_path, read_video, write_image, write_video
from kinetoscope.io.frames import check_frames

BLOCK = 16
TILE_BLOCKS = 4
TILE = BLOCK * TILE_BLOCKS
COEFFICIENTS = ((1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (2, 3), (3, 2))
SLOTS = TILE_BLOCKS * TILE_BLOCKS * len(COEFFICIENTS)
MARKER_BITS = 96
HASH_BITS = 16
PAYLOAD_BITS = SLOTS - MARKER_BITS  # 32: one Reed-Muller RM(2, 5) codeword
#: A decoded hash is trusted up to this many payload signs off its codeword (RM(2, 5) corrects 3).
MAX_PAYLOAD_ERRORS = 3

#: Target magnitude of each marked coefficient (orthonormal units: a change of 16 moves every
#: pixel of the block by about 1 grey level). About 44 dB PSNR on world clips.
MARGIN = 7.0
#: Largest total change of one coefficient, so a block whose picture strongly disagrees is left
#: as it is rather than visibly overwritten...
MAX_CHANGE = 3.0 * MARGIN
#: ... except in texture, which hides changes: there the cap is this times 16 times the block's
#: texture (the standard deviation of its calmest 8x8 quarter, in grey levels).
TEXTURE_MASKING = 0.2
#: Detection reads each coefficient in margins, clipped to [-1, 1] so that no block outvotes
#: another; beyond OUTLIER margins it is the picture's own (an edge), not the mark, and abstains.
OUTLIER = 8.0
EMBED_PASSES = 3
#: A video counts as watermarked when an unmarked one would agree this well with the marker
#: with probability at most this (a bound that holds for any content, see ``_p_value``).
MAX_P_VALUE = 1e-3
#: Frames read for detection, spread evenly over the video.
MAX_FRAMES = 32
#: Detection reads at most this many pixels in each direction, from the centre of the frame.
DETECT_WINDOW = 512
#: Frames smaller than this in either side hold too little of the tile to be checked.
MIN_DETECT_SIZE = 32

_KEY = 0x4B696E65  # "Kine": seeds the slot layout, marker and code; changing it breaks old marks
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class WatermarkReading:
    """What :func:`read_watermark` found at the best tile origin.

    ``agreement``: the share of the ``marker_slots`` the frames hold that have the marker's sign
    (about 0.5 by chance, 1 for an intact mark; frames of 79 pixels or more hold all 96); ``p_value``: a bound on the chance that an unmarked input agrees as well;
    ``detected``: ``p_value <= MAX_P_VALUE``; ``model_hash``: the decoded 16-bit hash, or None when
    it cannot be read (meaningful only when detected); ``payload_errors``: payload signs off the
    most likely codeword (up to MAX_PAYLOAD_ERRORS it is read without knowing any model id).
    """

    detected: bool
    p_value: float
    agreement: float
    marker_slots: int
    model_hash: int | None
    payload_errors: int
    offset: tuple[int, int]
    frames_checked: int

    @property
    def score(self) -> float:
        """-log10 of ``p_value``: 3 at the threshold, about 25 for an intact mark."""
        return float(-np.log10(max(self.p_value, 1e-300)))


def model_hash(model_id: str) -> int:
    """The 16-bit hash of a model id that the watermark carries."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidInputError(f"a model id must be a non-empty string, got {model_id!r}.", param="model_id")
    return int.from_bytes(hashlib.sha256(model_id.strip().encode()).digest()[:2], "big")


@functools.cache
def _basis() -> np.ndarray:
    """(4, 16): 1-D patterns of DCT frequencies 0..3 of an 8-sample Haar LL row, in pixels.

    The Haar transform and the DCT are both orthonormal and separable, so coefficient (u, v) of
    a block is its inner product with ``outer(basis[u], basis[v])``.
    """
    rows = []
    for u in range(4):
        one_hot = np.zeros(BLOCK // 2)
        one_hot[u] = 1.0
        rows.append(pywt.idwt(fft.idct(one_hot, norm="ortho"), None, "haar"))
    return np.stack(rows)


@functools.cache
def _kernels() -> np.ndarray:
    """(K, 16, 16): the pixel pattern of each carrying DWT-DCT coefficient."""
    basis = _basis()
    return np.stack([np.outer(basis[u], basis[v]) for u, v in COEFFICIENTS])


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Which slot (block row, block column, coefficient) carries what, all drawn from ``_KEY``."""

    marker_slots: np.ndarray  # (MARKER_BITS,) flat slot indices
    marker_signs: np.ndarray  # (MARKER_BITS,) +-1
    payload_slots: np.ndarray  # (PAYLOAD_BITS,)
    scramble: np.ndarray  # (PAYLOAD_BITS,) +-1, so equal hash bits do not make equal blocks


@functools.cache
def _layout() -> _Layout:
    rng = np.random.default_rng(_KEY)
    order = rng.permutation(SLOTS)
    return _Layout(
        marker_slots=order[:MARKER_BITS],
        marker_signs=rng.choice([-1.0, 1.0], MARKER_BITS),
        payload_slots=order[MARKER_BITS:],
        scramble=rng.choice([-1.0, 1.0], PAYLOAD_BITS),
    )


def _reed_muller_generator() -> np.ndarray:
    """(16, 32) generator of the Reed-Muller code RM(2, 5): [32, 16] with minimum distance 8.

    Its rows are the monomials of degree <= 2 in 5 binary variables, evaluated at all 32 points.
    """
    points = (np.arange(PAYLOAD_BITS)[:, None] >> np.arange(5)) & 1
    pairs = [points[:, i] * points[:, j] for i in range(5) for j in range(i + 1, 5)]
    return np.stack([np.ones(PAYLOAD_BITS, int), *points.T, *pairs])


@functools.cache
def _codebook() -> np.ndarray:
    """(65536, 32) +-1: the scrambled codeword of every hash, for maximum-likelihood decoding."""
    hashes = np.arange(2**HASH_BITS)
    bits = (hashes[:, None] >> np.arange(HASH_BITS - 1, -1, -1)) & 1
    codeword = (bits @ _reed_muller_generator()) % 2
    return ((1 - 2 * codeword) * _layout().scramble).astype(np.float32)


def _tile_signs(model_id: str) -> np.ndarray:
    """(TILE_BLOCKS, TILE_BLOCKS, K) target sign of every coefficient in the tile."""
    layout = _layout()
    signs = np.empty(SLOTS)
    signs[layout.marker_slots] = layout.marker_signs
    signs[layout.payload_slots] = _codebook()[model_hash(model_id)]
    return signs.reshape(TILE_BLOCKS, TILE_BLOCKS, len(COEFFICIENTS))


def embed_watermark(frames: np.ndarray, model_id: str) -> np.ndarray:
    """Return uint8 ``(T, H, W, 3)`` frames carrying the watermark of ``model_id`` in every frame.

    Only whole 16x16 blocks are marked; frames under 16 pixels in a side pass unchanged.
    """
    frames = check_frames(frames)
    signs = _tile_signs(model_id)
    return np.stack([_embed_frame(frame, signs) for frame in frames])


def _embed_frame(frame: np.ndarray, tile_signs: np.ndarray) -> np.ndarray:
    rows, cols = frame.shape[0] // BLOCK, frame.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return frame.copy()
    signs = np.tile(tile_signs, (-(-rows // TILE_BLOCKS), -(-cols // TILE_BLOCKS), 1))[:rows, :cols]
    kernels = _kernels().reshape(len(COEFFICIENTS), BLOCK * BLOCK).astype(np.float32)
    pixels = frame.astype(np.float32)
    marked = pixels[: rows * BLOCK, : cols * BLOCK]  # a view: changes land in ``pixels``
    changed = np.zeros(signs.shape, np.float32)
    limit = None
    for _ in range(EMBED_PASSES):
        blocks = (marked @ _LUMA).reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2).reshape(rows, cols, -1)
        if limit is None:
            limit = np.maximum(MAX_CHANGE, TEXTURE_MASKING * BLOCK * _texture(blocks))
        step = np.clip(MARGIN - signs * (blocks @ kernels.T), 0.0, limit - changed)
        if not step.any():
            break
        changed += step
        delta = ((step * signs) @ kernels).reshape(rows, cols, BLOCK, BLOCK).swapaxes(1, 2)
        # The same change on R, G and B moves luma by exactly that change and leaves chroma alone.
        marked += delta.reshape(rows * BLOCK, cols * BLOCK, 1)
        np.clip(np.round(marked, out=marked), 0, 255, out=marked)  # measure what uint8 will hold
    return pixels.astype(np.uint8)


def _texture(blocks: np.ndarray) -> np.ndarray:
    """(rows, cols, 1): the least busy 8x8 quarter's standard deviation: high only for texture
    that fills the block, not for a lone edge on a flat background (where changes show)."""
    quarters = blocks.reshape(*blocks.shape[:2], 2, BLOCK // 2, 2, BLOCK // 2).swapaxes(3, 4)
    return quarters.reshape(*blocks.shape[:2], 4, -1).std(axis=3).min(axis=2)[..., None]


def read_watermark(
    frames: np.ndarray, known_hashes: Iterable[int] = (), max_frames: int = MAX_FRAMES
) -> WatermarkReading:
    """Look for the watermark in uint8 ``(T, H, W, 3)`` frames (any crop, any size >= 32x32).

    Frames under 79 pixels (a 64-pixel tile plus a 16-pixel block, less one) in a side hold only
    part of the tile: the decision then rests on the marker slots they hold (about 54 of 96 at
    48 pixels, 25 at 32, where only a nearly intact mark is found) and the model id is read only
    if its hash is known.

    ``known_hashes``: hashes of model ids known here, accepted from a more damaged payload.
    """
    frames = check_frames(frames)
    height, width = frames.shape[1:3]
    if min(height, width) < MIN_DETECT_SIZE:
        raise InvalidInputError(
            f"frames of {width}x{height} are too small to check for a watermark; "
            f"both sides must be at least {MIN_DETECT_SIZE} pixels.",
            param="frames",
        )
    picked = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    soft = sum(_soft_coefficients(frames[index] @ _LUMA) for index in picked)
    sums, counts = _fold(soft), _fold(np.ones_like(soft[:1]))[0]
    origin = _find_origin(sums, counts)
    layout = _layout()
    held = _at_origin(np.broadcast_to(counts, sums.shape), layout.marker_slots, origin) > 0
    votes = _at_origin(sums, layout.marker_slots, origin) * layout.marker_signs
    agreeing, slots = int((votes[held] > 0).sum()), int(held.sum())
    p_value = _p_value(agreeing, slots)
    hash_value, errors = _decode_payload(sums, origin, known_hashes)
    return WatermarkReading(
        detected=p_value <= MAX_P_VALUE,
        p_value=p_value,
        agreement=agreeing / max(slots, 1),
        marker_slots=slots,
        model_hash=hash_value,
        payload_errors=errors,
        offset=origin,
        frames_checked=len(picked),
    )


def _soft_coefficients(luma: np.ndarray) -> np.ndarray:
    """(K, H - 15, W - 15): every coefficient of the block at every pixel offset, as a vote in [-1, 1].

    Only the central DETECT_WINDOW pixels of a large frame are used: they hold dozens of tiles.
    """
    top, left = (max(0, (n - DETECT_WINDOW) // 2) for n in luma.shape)
    luma = luma[top : top + DETECT_WINDOW, left : left + DETECT_WINDOW]
    basis = _basis()
    # Separable: filter along the rows with each 1-D pattern, then down the columns. A 16-tap
    # filter centred at 8 puts block (i, j)'s coefficient at (i + 8, j + 8).
    across = {v: ndimage.correlate1d(luma, basis[v], axis=1, mode="constant") for v in {v for _, v in COEFFICIENTS}}
    maps = [ndimage.correlate1d(across[v], basis[u], axis=0, mode="constant") for u, v in COEFFICIENTS]
    valid = np.stack(maps)[:, BLOCK // 2 : luma.shape[0] - BLOCK // 2 + 1, BLOCK // 2 : luma.shape[1] - BLOCK // 2 + 1]
    soft = valid / MARGIN
    soft[np.abs(soft) > OUTLIER] = 0.0
    return np.clip(soft, -1.0, 1.0, out=soft)


def _fold(maps: np.ndarray) -> np.ndarray:
    """(K, H, W) -> (K, 64, 64): sum of all positions that share a place in the tile."""
    channels, height, width = maps.shape
    padded = np.zeros((channels, -(-height // TILE) * TILE, -(-width // TILE) * TILE))
    padded[:, :height, :width] = maps
    return padded.reshape(channels, padded.shape[1] // TILE, TILE, padded.shape[2] // TILE, TILE).sum(axis=(1, 3))


def _slot_positions(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat slot indices -> (coefficient, row offset, column offset) inside the tile."""
    block_row, block_col, k = np.unravel_index(slots, (TILE_BLOCKS, TILE_BLOCKS, len(COEFFICIENTS)))
    return k, block_row * BLOCK, block_col * BLOCK


def _find_origin(sums: np.ndarray, counts: np.ndarray) -> tuple[int, int]:
    """The tile origin whose marker correlation is highest, all 4096 tried by one FFT correlation."""
    layout = _layout()
    folded = sums / np.sqrt(np.maximum(counts, 1.0))
    median = np.median(folded, axis=(1, 2), keepdims=True)
    spread = 1.4826 * np.median(np.abs(folded - median), axis=(1, 2), keepdims=True)
    folded = (folded - median) / np.maximum(spread, 1e-6)  # weigh the coefficients equally
    template = np.zeros_like(folded)
    k, dy, dx = _slot_positions(layout.marker_slots)
    template[k, dy, dx] = layout.marker_signs
    scores = fft.irfft2((fft.rfft2(folded) * np.conj(fft.rfft2(template))).sum(axis=0), s=(TILE, TILE))
    row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(row), int(col)


def _at_origin(folded: np.ndarray, slots: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    k, dy, dx = _slot_positions(slots)
    return folded[k, (origin[0] + dy) % TILE, (origin[1] + dx) % TILE]


def _p_value(agreeing: int, slots: int = MARKER_BITS) -> float:
    """Chance that an unmarked input has ``agreeing`` or more of ``slots`` marker slots on the marker's side.

    At one tile origin each slot's sign matches the marker's (drawn at random, independently of
    any picture) with probability 1/2 at most, so the count is at most Binomial(slots, 1/2); the
    best of the 4096 origins is covered by multiplying by 4096 (a union bound). Nothing about
    the picture is assumed: structured or periodic content cannot make it over-confident.
    ``slots`` is the number of marker slots the frames hold at that origin (all 96 unless a frame
    is under 79 pixels in a side), which depends on the frame size only, not on the marker.
    """
    return float(min(1.0, TILE * TILE * stats.binom.sf(agreeing - 1, slots, 0.5)))


def _decode_payload(sums: np.ndarray, origin: tuple[int, int], known_hashes: Iterable[int]) -> tuple[int | None, int]:
    """(hash, sign errors) of the most likely codeword at a tile origin; the hash is None unless
    the codeword is within MAX_PAYLOAD_ERRORS signs or names a known model (a garbled payload
    lands on a given known hash with probability 1/65536)."""
    soft = _at_origin(sums, _layout().payload_slots, origin).astype(np.float32)
    best = int(np.argmax(_codebook() @ soft))
    errors = _sign_errors(_codebook()[best], soft)
    return (best if errors <= MAX_PAYLOAD_ERRORS or best in set(known_hashes) else None), errors


def _sign_errors(codeword: np.ndarray, soft: np.ndarray) -> int:
    return int((codeword * soft <= 0).sum())


def watermark_file(
    source: str | os.PathLike, target: str | os.PathLike, model_id: str, *, quality: int | None = None
) -> Path:
    """Watermark every frame of an existing video or image and write it to ``target`` (any io format).

    ``quality`` as in :func:`~kinetoscope.io.write_video` / ``write_image``; None keeps their defaults.
    """
    video = read_video(source)
    frames = embed_watermark(video.frames, model_id)
    options = {} if quality is None else {"quality": quality}
    if not (is_image_path(target) and not is_video_path(target)):
        return write_video(target, frames, video.fps, **options)
    if video.num_frames != 1:
        raise InvalidInputError(
            f"{target} is an image but {source} has {video.num_frames} frames; write a video or a folder instead.",
            param="target",
        )
    return write_image(target, frames[0], **options)
