"""kinetoscope's CausalVAE against diffusers' AutoencoderKLWan: encode+decode time and peak memory.

Both are built at the same shape with random weights on the CPU: base width 96, channel
multipliers (1, 2, 4, 4), 2 residual blocks, 16 latent channels, 8x spatial and 4x temporal
compression, per-frame attention in the middle block (our ``wan`` preset); the script prints
both parameter counts. The comparison runs in fp32 and in bf16 (``--dtypes``): bf16 is
``torch.autocast("cpu", dtype=torch.bfloat16)`` around encode+decode of both models alike, as a
user of either library runs mixed precision on a CPU; the weights stay fp32. Each model runs
with its own defaults for long videos: Wan streams 1 then 4 frames per encoder call and 1 latent
frame per decoder call; ours streams frame 0, then 4 frames (1 latent frame) per chunk.

Time: both models live in this process and their runs are interleaved, so machine noise hits
both alike; the median over repeats is reported, after one warm-up run of each. Both wall
time and process CPU time are printed. On a machine shared with other jobs, wall time mostly
measures waiting for a core; with one thread (the default) CPU time is the time actually
spent computing, so the speed ratio is taken from it.

Fraction of the machine's peak: the run times a 2048 x 2048 ``torch.mm`` in each dtype at its
thread count, before and after the models (the larger is the peak). Each model's FLOPs for one
encode+decode are counted once per shape and dtype, in an untimed call, by torch's
``FlopCounterMode`` (convolutions, matrix products, attention), with the share of them that ran
in bf16; achieved GFLOP/s is those FLOPs over the median wall time. They are counted as run, so
they differ between the models and between dtypes: ours' Winograd time convolutions (its fp32
oneDNN path) do a third fewer products than direct ones.

Peak memory: torch's CPU allocator reports every allocation and free to the profiler when
``profile_memory=True`` (oneDNN's scratch and weight reorders go through it too). Replaying
those events gives the peak of bytes allocated during the call above what was allocated
before it: activations, caches, outputs and temporaries, not the weights (which are equal
in size). Unlike resident memory it does not depend on what the C allocator keeps cached.

    python benchmarks/bench_vae.py                        # everything, 1 thread, fp32 and bf16
    python benchmarks/bench_vae.py --only compare         # against Wan only: time, memory, table
    python benchmarks/bench_vae.py --only speed --shapes 17x64x64 --repeats 5 --dtypes bf16
    python benchmarks/bench_vae.py --quick                # smoke test: against Wan at 5x32x32, 1 repeat
    python benchmarks/bench_vae.py --only throughput --threads 2   # clips/s: cpu and world presets, Wan

The comparison with Wan (``speed``, ``memory``, ``compare``) ends with a markdown table for
benchmarks/RESULTS.md, headed by the CPU model; the other parts run in fp32 only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from kinetoscope.profiling import peak_allocated
# This folder is on the path. run_all.py and bench_dit_kernels.py import cpu_model from here.
from machine import DTYPES, autocast, count_flops, cpu_model, gemm_peaks, gflops, header, markdown

SHAPES = ["17x64x64", "33x128x128"]
QUICK_SHAPE = "5x32x32"


def build_models():
    from diffusers import AutoencoderKLWan

    from kinetoscope.vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    wan = AutoencoderKLWan(
        base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True]
    ).eval()
    ours = CausalVAE(VAEConfig.from_preset("wan")).eval()
    return wan, ours


def video(shape: str) -> torch.Tensor:
    frames, height, width = (int(v) for v in shape.split("x"))
    return torch.rand(1, 3, frames, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1


def runners(wan, ours, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    return {
        "wan": lambda: wan.decode(wan.encode(x).latent_dist.mode()).sample,
        "ours": lambda: ours.decode(ours.encode(x)),
    }


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_speed_and_memory(shapes: list[str], dtypes: list[str], repeats: int, only: str) -> list[tuple]:
    """Time, FLOPs and peak memory of both models per shape and dtype, printed as measured and
    returned as ``(shape, dtype, times, peaks, flops)`` for :func:`table`."""
    wan, ours = build_models()
    print(f"parameters: wan {sum(p.numel() for p in wan.parameters()) / 1e6:.2f}M, ours {ours.num_parameters / 1e6:.2f}M", flush=True)
    measured = []
    for shape in shapes:
        x = video(shape)
        run = runners(wan, ours, x)
        for dtype in dtypes:
            times: dict[str, list[tuple[float, float]]] = {"wan": [], "ours": []}
            peaks: dict[str, float] = {}
            with torch.no_grad(), autocast(dtype):
                flops = {name: count_flops(fn) for name, fn in run.items()}
                print(
                    f"{shape} {dtype} GFLOP per encode+decode: "
                    + ", ".join(f"{name} {f / 1e9:.1f} ({share:.0%} in bf16)" for name, (f, share) in flops.items()),
                    flush=True,
                )
                if only in ("all", "compare", "speed"):
                    for fn in run.values():
                        fn()  # warm-up: oneDNN primitive creation, allocator growth
                    for _ in range(repeats):
                        for name, fn in run.items():
                            times[name].append(timed(fn))
                    for i, kind in ((1, "CPU"), (0, "wall")):
                        wan_s = statistics.median(t[i] for t in times["wan"])
                        ours_s = statistics.median(t[i] for t in times["ours"])
                        runs = ", ".join(f"{n} " + "/".join(f"{t[i]:.1f}" for t in ts) for n, ts in times.items())
                        print(
                            f"{shape} {dtype} encode+decode {kind} time: wan {wan_s:.2f} s, ours {ours_s:.2f} s "
                            f"-> {wan_s / ours_s:.2f}x faster  ({runs})",
                            flush=True,
                        )
                if only in ("all", "compare", "memory"):
                    peaks = {name: peak_allocated(fn) / 2**20 for name, fn in run.items()}
                    print(
                        f"{shape} {dtype} peak memory: wan {peaks['wan']:.1f} MiB, ours {peaks['ours']:.1f} MiB "
                        f"-> {peaks['ours'] / peaks['wan']:.2f}x",
                        flush=True,
                    )
            measured.append((shape, dtype, times, peaks, flops))
    return measured


def table(measured: list, peak: dict[str, float]) -> str:
    """The markdown table of :func:`bench_speed_and_memory`'s measurements against this run's GEMM peak."""
    rows = []
    for shape, dtype, times, peaks, flops in measured:
        wall = {n: statistics.median(t[0] for t in ts) for n, ts in times.items() if ts}
        cpu = {n: statistics.median(t[1] for t in ts) for n, ts in times.items() if ts}
        for name in ("wan", "ours"):
            count, in_bf16 = flops[name]
            achieved = count / wall[name] / 1e9 if wall else None
            ours = name == "ours"
            rows.append(
                [
                    shape,
                    dtype,
                    "Wan" if name == "wan" else "ours",
                    f"{wall[name]:.2f}" if wall else "-",
                    f"{count / 1e9:.1f}",
                    "-" if achieved is None else f"{achieved:.0f}",
                    "-" if achieved is None else f"{achieved / peak[dtype]:.0%}",
                    f"{in_bf16:.0%}" if dtype == "bf16" else "-",
                    f"{peaks[name]:.0f}" if peaks else "-",
                    f"{wall['wan'] / wall['ours']:.2f}x" if ours and wall else "-",
                    f"{cpu['wan'] / cpu['ours']:.2f}x" if ours and cpu else "-",
                    f"{peaks['ours'] / peaks['wan']:.2f}" if ours and peaks else "-",
                ]
            )
    columns = ["shape", "dtype", "model", "median s", "GFLOP", "GFLOP/s", "of GEMM peak", "in bf16", "peak MiB"]
    columns += ["speed-up vs Wan", "same, CPU time", "memory vs Wan"]
    return markdown(columns, rows, right=3)


def compare(shapes: list[str], dtypes: list[str], repeats: int, only: str) -> None:
    """Both models against this run's GEMM peak per dtype, measured before and after them; ends with the table."""
    before = gemm_peaks(dtypes, "before the models")
    measured = bench_speed_and_memory(shapes, dtypes, repeats, only)
    after = gemm_peaks(dtypes, "after the models")
    peak = {dtype: max(before[dtype], after[dtype]) for dtype in dtypes}
    print(
        f"\nFraction of peak: FLOPs of one encode+decode over its median wall time, over the larger GEMM peak of "
        f"this run ({gflops(peak)}). Speed-up: Wan's median time over ours (wall; then process CPU time); "
        "memory: ours over Wan's peak allocated.\n"
    )
    print(table(measured, peak), flush=True)


def bench_duration(size: int) -> None:
    """Peak memory of our encode+decode for 33 and 257 frames (time chunks keep it flat)."""
    _, ours = build_models()
    peaks = {}
    with torch.no_grad():
        for frames in (33, 257):
            x = video(f"{frames}x{size}x{size}")
            start = time.perf_counter()
            peaks[frames] = peak_allocated(lambda: ours.decode(ours.encode(x)))
            print(f"ours {frames}x{size}x{size}: peak {peaks[frames] / 2**20:.1f} MiB ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"257 vs 33 frames peak memory: {peaks[257] / peaks[33]:.2f}x")


def bench_large_image(preset: str, size: int) -> None:
    """A size x size image through encode + decode with the default spatial tiles."""
    from kinetoscope.vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    vae = CausalVAE(VAEConfig.from_preset(preset)).eval()
    x = video(f"1x{size}x{size}")
    with torch.no_grad():
        start = time.perf_counter()
        peak = peak_allocated(lambda: vae.decode(vae.encode(x)))
        elapsed = time.perf_counter() - start
    print(
        f"{preset} preset ({vae.num_parameters / 1e6:.1f}M) {size}x{size} image encode+decode: {elapsed:.1f} s, "
        f"peak {peak / 2**20:.0f} MiB (input {x.numel() * 4 / 2**20:.0f} MiB)"
    )


def bench_throughput(batch: int, repeats: int) -> None:
    """Clips per second of encode and of decode, ``batch`` clips of 17x64x64 at a time: the bundled
    model's ``cpu`` preset beside the ``world`` preset and AutoencoderKLWan at Wan's shape."""
    from kinetoscope.vae import CausalVAE, VAEConfig

    wan, _ = build_models()
    torch.manual_seed(0)
    models = {name: CausalVAE(VAEConfig.from_preset(name)).eval() for name in ("cpu", "world")}
    x = torch.rand(batch, 3, 17, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rates: dict[str, tuple[float, float]] = {}
    with torch.no_grad():
        for name, model in [*models.items(), ("wan", wan)]:
            if name == "wan":
                encode = lambda: wan.encode(x).latent_dist.mode()  # noqa: E731
                z = encode()
                decode = lambda: wan.decode(z).sample  # noqa: E731
            else:
                encode = lambda model=model: model.encode(x)  # noqa: E731
                z = encode()
                decode = lambda model=model, z=z: model.decode(z)  # noqa: E731
            encode(), decode()  # warm-up
            enc = statistics.median(timed(encode)[0] for _ in range(repeats))
            dec = statistics.median(timed(decode)[0] for _ in range(repeats))
            rates[name] = (batch / enc, batch / dec)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{name:>5} ({params:.1f}M): encode {batch / enc:6.1f} clips/s, decode {batch / dec:6.1f} clips/s", flush=True)
    cpu_enc, cpu_dec = rates["cpu"]
    for other in ("world", "wan"):
        print(f"cpu preset vs {other}: encode {cpu_enc / rates[other][0]:.1f}x, decode {cpu_dec / rates[other][1]:.1f}x faster")
    print(f"bar (encode >= 40, decode >= 20 clips/s of 17x64x64): {'met' if cpu_enc >= 40 and cpu_dec >= 20 else 'missed'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", help=f"comma-separated FRAMESxHEIGHTxWIDTH (default: {','.join(SHAPES)})")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), help="of the comparison with Wan")
    parser.add_argument("--repeats", type=int, help="default: 3")
    parser.add_argument(
        "--only", choices=["all", "compare", "speed", "memory", "duration", "large", "throughput"], help="default: all"
    )
    quick = f"smoke test: --only compare at {QUICK_SHAPE}, 1 repeat (unless given)"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--batch", type=int, default=8, help="clips per call in --only throughput")
    parser.add_argument("--duration-size", type=int, default=64, help="frame size for the 33 vs 257 frames test")
    parser.add_argument("--large-preset", default="world")
    parser.add_argument("--large-size", type=int, default=2048)
    args = parser.parse_args()
    args.shapes = args.shapes or (QUICK_SHAPE if args.quick else ",".join(SHAPES))
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.only = args.only or ("compare" if args.quick else "all")
    torch.set_num_threads(args.threads)
    if args.only == "throughput":
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu_model()}")
        bench_throughput(args.batch, args.repeats)
        return
    if args.only in ("all", "compare", "speed", "memory"):
        print(header(f"VAE at Wan's shape, median of {args.repeats}"))
        compare(args.shapes.split(","), args.dtypes, args.repeats, args.only)
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu_model()}")
    if args.only in ("all", "duration"):
        bench_duration(args.duration_size)
    if args.only in ("all", "large"):
        bench_large_image(args.large_preset, args.large_size)


if __name__ == "__main__":
    main()
