"""The device and precision a model runs in: what ``--device`` and ``--dtype`` name, ``auto`` included.

``auto`` devices: CUDA, then Apple's MPS, then the CPU. ``auto`` precision: bfloat16 on CUDA
(float16 where the GPU has no bfloat16), float32 on MPS and on the CPU. On a CPU with AMX,
bfloat16 sampled the bundled model 1.9x faster and a 22M transformer 3.4x, with frames within
one level of 255 (benchmarks/RESULTS.md, "precision of sampling on the CPU"); but one process
that generated in several modes gave the same seed's clip a few levels apart the second time,
where float32 gives it bit for bit. Until that is understood ``--dtype bfloat16`` is opt-in on
the CPU, and ``--seed`` keeps its promise under ``auto``.

Training's ``precision: auto`` (:func:`training_autocast`) is bf16 autocast on CUDA and on a CPU
with bf16 units (AMX-BF16 or AVX-512 BF16: 1.4x on the bundled model's transformer), float32 on
any other CPU, where torch emulates bf16 and the same step ran 12x slower (AMD EPYC, AVX2).
"""

from __future__ import annotations

import functools
import sys

import torch

from kinetoscope.errors import InvalidInputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs products in on ``device_type``, or None where it is off."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (none where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_has_bf16_units() -> bool:
    """Whether the CPU multiplies bf16 in hardware (AMX-BF16 or AVX-512 BF16) rather than emulating it."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def training_autocast(precision: str, device: torch.device, *, warn: bool = True) -> torch.dtype | None:
    """The autocast dtype of a training run's ``precision`` (``auto``, ``fp32``, ``bf16``) on ``device``, or None;
    ``warn``: say so on stderr when bf16 is asked of a CPU that would emulate it."""
    emulated = device.type == "cpu" and not cpu_has_bf16_units()
    if precision == "auto":
        # On a CPU only AMX pays: the bundled model's step ran 1.4x faster in bf16 with AMX, and 1.3x
        # slower with AVX-512 BF16 alone (its casts and elementwise work cost more than its products save).
        faster = device.type == "cuda" or (device.type == "cpu" and "amx_bf16" in cpu_flags())
        return torch.bfloat16 if faster else None
    if warn and precision == "bf16" and emulated:
        print(
            "precision bf16: this CPU has no bf16 units (AMX-BF16 or AVX-512 BF16), so torch emulates bf16 and "
            "training runs several times slower than in fp32; precision auto picks the faster.",
            file=sys.stderr,
        )
    return torch.bfloat16 if precision == "bf16" else None


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a device that exists here."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(
            f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}.", param="device"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"--device {name}: no CUDA device is available here; use auto or cpu.", param="device")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidInputError(f"--device {name}: MPS is not available here; use auto or cpu.", param="device")
    return device


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``, ``float32``, ``bfloat16`` or ``float16`` as the precision to run on ``device``."""
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise InvalidInputError(f"--dtype must be auto, {', '.join(DTYPES)}, got {name!r}.", param="dtype")
    if name == "float16" and device.type == "cpu":
        raise InvalidInputError("--dtype float16 runs on GPUs only; on the CPU use bfloat16 or float32.", param="dtype")
    return DTYPES[name]
