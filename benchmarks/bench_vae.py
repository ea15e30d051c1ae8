"""kinetoscope's CausalVAE against diffusers' AutoencoderKLWan: encode+decode time and peak memory.

Both are built at the same shape with random weights, fp32 on the CPU: base width 96, channel
multipliers (1, 2, 4, 4), 2 residual blocks, 16 latent channels, 8x spatial and 4x temporal
compression, per-frame attention in the middle block (our ``wan`` preset); the script prints
both parameter counts. Each model runs with its own defaults for long videos: Wan streams
1 then 4 frames per encoder call and 1 latent frame per decoder call; ours streams frame 0,
then 4 frames (1 latent frame) per chunk.

Time: both models live in this process and their runs are interleaved, so machine noise hits
both alike; the median over repeats is reported, after one warm-up run of each. Both wall
time and process CPU time are printed. On a machine shared with other jobs, wall time mostly
measures waiting for a core; with one thread (the default) CPU time is the time actually
spent computing, so the speed ratio is taken from it.

Peak memory: torch's CPU allocator reports every allocation and free to the profiler when
``profile_memory=True`` (oneDNN's scratch and weight reorders go through it too). Replaying
those events gives the peak of bytes allocated during the call above what was allocated
before it: activations, caches, outputs and temporaries, not the weights (which are equal
in size). Unlike resident memory it does not depend on what the C allocator keeps cached.

    python benchmarks/bench_vae.py                        # everything, 1 thread
    python benchmarks/bench_vae.py --only speed --shapes 17x64x64 --repeats 5
    python benchmarks/bench_vae.py --only throughput --threads 2   # clips/s: cpu and world presets, Wan
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from kinetoscope.profiling import peak_allocated

SHAPES = ["17x64x64", "33x128x128"]


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


def bench_speed_and_memory(shapes: list[str], repeats: int, only: str) -> None:
    wan, ours = build_models()
    print(f"parameters: wan {sum(p.numel() for p in wan.parameters()) / 1e6:.2f}M, ours {ours.num_parameters / 1e6:.2f}M", flush=True)
    for shape in shapes:
        x = video(shape)
        run = runners(wan, ours, x)
        with torch.no_grad():
            if only in ("all", "speed"):
                for fn in run.values():
                    fn()  # warm-up: oneDNN primitive creation, allocator growth
                times: dict[str, list[tuple[float, float]]] = {"wan": [], "ours": []}
                for _ in range(repeats):
                    for name, fn in run.items():
                        times[name].append(timed(fn))
                for i, kind in ((1, "CPU"), (0, "wall")):
                    wan_s = statistics.median(t[i] for t in times["wan"])
                    ours_s = statistics.median(t[i] for t in times["ours"])
                    runs = ", ".join(f"{n} " + "/".join(f"{t[i]:.1f}" for t in ts) for n, ts in times.items())
                    print(
                        f"{shape} encode+decode {kind} time: wan {wan_s:.2f} s, ours {ours_s:.2f} s "
                        f"-> {wan_s / ours_s:.2f}x faster  ({runs})",
                        flush=True,
                    )
            if only in ("all", "memory"):
                peaks = {name: peak_allocated(fn) for name, fn in run.items()}
                print(
                    f"{shape} peak memory: wan {peaks['wan'] / 2**20:.1f} MiB, ours {peaks['ours'] / 2**20:.1f} MiB "
                    f"-> {peaks['ours'] / peaks['wan']:.2f}x",
                    flush=True,
                )


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


def cpu_model() -> str:
    """``lscpu``'s model name, printed beside every figure: the CPUs of one machine kind differ."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown CPU")


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
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated FRAMESxHEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["all", "speed", "memory", "duration", "large", "throughput"], default="all")
    parser.add_argument("--batch", type=int, default=8, help="clips per call in --only throughput")
    parser.add_argument("--duration-size", type=int, default=64, help="frame size for the 33 vs 257 frames test")
    parser.add_argument("--large-preset", default="world")
    parser.add_argument("--large-size", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu_model()}")
    if args.only == "throughput":
        bench_throughput(args.batch, args.repeats)
        return
    if args.only in ("all", "speed", "memory"):
        bench_speed_and_memory(args.shapes.split(","), args.repeats, args.only)
    if args.only in ("all", "duration"):
        bench_duration(args.duration_size)
    if args.only in ("all", "large"):
        bench_large_image(args.large_preset, args.large_size)


if __name__ == "__main__":
    main()
