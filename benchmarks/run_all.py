"""Run every benchmark in a quick mode, one after another, and say which ran (``make bench``).

Each script still runs alone with its full options (and the figures in RESULTS.md come from
those runs); the quick mode here only checks that every benchmark runs on this machine and
shows its ratios in a few minutes. The CPU's model name comes first, as beside every benchmark.

    python benchmarks/run_all.py            # every benchmark, quick
    python benchmarks/run_all.py dit vae    # some of them
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench_vae import cpu_model  # the one reading of lscpu's model name (this folder is on the path)

HERE = Path(__file__).resolve().parent

#: name -> the script's quick arguments.
QUICK = {
    "dit": ["bench_dit.py", "--tokens", "1024", "--repeats", "1"],
    "vae": ["bench_vae.py", "--only", "throughput", "--repeats", "1", "--batch", "2", "--threads", "2"],
    "io": ["bench_io.py", "--repeats", "1", "--frames", "16", "--long-seconds", "10", "--long-size", "128"],
    "world": ["bench_world.py", "--seconds", "0.5"],
    "watermark": ["bench_watermark.py", "--n", "10", "--competitor", "4"],
    "captioner": ["bench_captioner.py", "--clips", "40", "--show", "0"],
    "eval-floors": ["bench_eval_floors.py", "--n", "3"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of: {', '.join(QUICK)} (default: all)")
    names = parser.parse_args().names or list(QUICK)
    unknown = [name for name in names if name not in QUICK]
    if unknown:
        parser.error(f"no benchmark named {unknown[0]!r}; choose from {', '.join(QUICK)}.")
    print(f"CPU: {cpu_model()}\n", flush=True)
    outcomes = []
    for name in names:
        script, *args = QUICK[name]
        print(f"== {name}: python benchmarks/{script} {' '.join(args)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(HERE / script), *args]).returncode
        outcomes.append((name, code, time.perf_counter() - started))
        print(flush=True)
    print("benchmark     result   seconds")
    for name, code, seconds in outcomes:
        print(f"{name:<13} {'ok' if code == 0 else f'exit {code}':<8} {seconds:7.1f}")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
