"""The machine's fp32 matrix-multiply peak, the yardstick of the "limit" rows: `python -m bench.matmul
--threads N` prints {"gflops": ..., "size": ..., "threads": ...} as one JSON line.

The best of several timed multiplications of two square fp32 matrices (2·n³ flops each), large
enough that the multiply runs at the BLAS kernel's speed (n = 2048: 17 GFLOP per call), after a
warm-up; with the torch threads the jobs get."""

from __future__ import annotations

import argparse
import json
import time


def peak_gflops(threads: int, size: int = 2048, calls: int = 5) -> float:
    """The fastest of `calls` (n x n) @ (n x n) fp32 multiplications, in GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--size", type=int, default=2048)
    args = p.parse_args(argv)
    return {"gflops": peak_gflops(args.threads, args.size), "size": args.size, "threads": args.threads}


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
