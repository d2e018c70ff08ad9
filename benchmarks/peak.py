"""This machine's fp32 matmul peak, measured in the same run as the figure it is compared with (shared machines
drift by tens of percent within an hour)."""
from __future__ import annotations

import time

import torch


def matmul_peak_gflops(m: int = 2048, k: int = 2048, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an (m x k) @ (k x n) fp32 matmul, best of three timings of ``repeats`` products."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * repeats / best / 1e9
