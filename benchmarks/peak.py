"""This machine's matmul peaks, measured in the same run as the figures they are compared with (shared machines drift
by tens of percent within an hour): fp32 and bf16 on a CPU (bf16 is fast only where the CPU computes it in hardware:
AVX512_BF16 or AMX), bf16 on a GPU (what a training step there runs in)."""

from __future__ import annotations

import time

import torch

from bias_unlearn.models.precision import native_cpu_bf16


def matmul_peak_gflops(
    m: int = 2048, k: int = 2048, n: int = 2048, repeats: int = 10, device: str = "cpu", dtype=torch.float32
) -> float:
    """GFLOP/s of an (m x k) @ (k x n) matmul in ``dtype``, best of three timings of ``repeats`` products; on CUDA
    bf16 at 8192^3 (a 2048^3 product cannot fill a large GPU)."""
    if device.startswith("cuda"):
        m = k = n = 8192
        a, b = (
            torch.randn(m, k, device=device, dtype=torch.bfloat16),
            torch.randn(k, n, device=device, dtype=torch.bfloat16),
        )
    else:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
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


EMULATED_BF16_SIZE = 512  # emulated bf16 (0.85 GFLOP/s on an AVX2 EPYC): 2048^3 takes ~20 s a product, 512^3 1/64 of it


def cpu_peaks(repeats: int = 3) -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s} of this CPU, measured now: 2048^3, and bf16 at 512^3 where the CPU has no
    bf16 hardware (its emulated rate is far below fp32's whatever the size; at 2048^3 a benchmark's repeated peak
    measurements alone ran for minutes on an AVX2-only CPU)."""
    size = 2048 if native_cpu_bf16() else EMULATED_BF16_SIZE
    return {
        "fp32": matmul_peak_gflops(repeats=repeats),
        "bf16": matmul_peak_gflops(size, size, size, repeats=repeats, dtype=torch.bfloat16),
    }
