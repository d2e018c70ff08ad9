"""This machine's matmul peak, measured in the same run as the figure it is compared with (shared machines drift by
tens of percent within an hour): fp32 on CPU, bf16 on a GPU (what a training step there runs in)."""

from __future__ import annotations

import time

import torch


def matmul_peak_gflops(m: int = 2048, k: int = 2048, n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """GFLOP/s of an (m x k) @ (k x n) matmul, best of three timings of ``repeats`` products: fp32 on CPU; on CUDA
    bf16 at 8192^3 (a 2048^3 product cannot fill a large GPU)."""
    if device.startswith("cuda"):
        m = k = n = 8192
        a, b = (
            torch.randn(m, k, device=device, dtype=torch.bfloat16),
            torch.randn(k, n, device=device, dtype=torch.bfloat16),
        )
    else:
        a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * repeats / best / 1e9
