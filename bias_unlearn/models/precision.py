"""Which precision a run computes in, chosen per machine: bf16 where the hardware computes it and it pays, fp32
elsewhere (``model.dtype: auto``, ``trainer.precision: auto``; an explicit value always wins).

On CUDA, bf16. On a CPU, bf16 only where torch reports native bf16 instructions (AVX512_BF16 or AMX) *and* a one-off
matmul measurement at the step's shapes finds bf16 at least ``PAYS`` times fp32's rate; elsewhere bf16 is emulated
(measured 5x slower than fp32 on an AVX-512 Xeon without AVX512_BF16, 2026-12-05) and fp32 stays. The measurement
is cached per machine (its CPU, flags, torch version and thread count) under the project's cache, so every run on a
machine makes the same choice. In bf16 the frozen base is stored in bf16 and its products run under autocast
(``bf16-mixed``); the LoRA adapters and AdamW's state stay fp32, as on a GPU.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bias_unlearn.io import write_json
from bias_unlearn.offline import cache_dir

PAYS = 1.25  # bf16 must beat fp32's matmul rate by this factor to be chosen on a CPU
STEP_SHAPES = ((192, 576, 1536), (192, 1536, 576))  # the offline model's MLP products at the preset's chunk


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        line = next((line for line in text.splitlines() if line.startswith("model name")), "")
        return line.partition(":")[2].strip() or platform.processor()
    except OSError:
        return platform.processor()


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: torch's own check where it has one, else the CPU's flags."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check() for check in checks if check is not None)
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def matmul_gflops(dtype: torch.dtype, shape: tuple[int, int, int], repeats: int = 20) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product in ``dtype`` on the CPU: the best of three timings."""
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * repeats / best / 1e9


@dataclass(frozen=True)
class CpuSpeed:
    cpu: str
    native_bf16: bool
    threads: int
    fp32_gflops: float  # at the step's shapes
    bf16_gflops: float

    @property
    def bf16_pays(self) -> bool:
        return self.native_bf16 and self.bf16_gflops >= PAYS * self.fp32_gflops


def machine_key() -> str:
    """This machine as the cached measurements know it."""
    parts = [cpu_name(), " ".join(sorted(cpu_flags())), torch.__version__, str(torch.get_num_threads())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@functools.cache
def cpu_speed(key: str | None = None) -> CpuSpeed:
    """The fp32 and bf16 matmul rates at the step's shapes, measured once per machine and kept."""
    path = cache_dir() / "machine" / f"{key or machine_key()}.json"
    try:
        return CpuSpeed(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    native = native_cpu_bf16()
    rates = {
        dtype: min(matmul_gflops(dtype, shape) for shape in STEP_SHAPES) for dtype in (torch.float32, torch.bfloat16)
    }
    speed = CpuSpeed(
        cpu_name(), native, torch.get_num_threads(), round(rates[torch.float32], 1), round(rates[torch.bfloat16], 1)
    )
    write_json(path, asdict(speed))
    return speed


def fastest_dtype(device: str) -> torch.dtype:
    """The weights' dtype ``model.dtype=fastest`` means on ``device``: bf16 on CUDA; on a CPU bf16 only where it
    pays."""
    if device.startswith("cuda"):
        return torch.bfloat16
    if not native_cpu_bf16():  # emulated bf16: not worth measuring
        return torch.float32
    return torch.bfloat16 if cpu_speed(machine_key()).bf16_pays else torch.float32


def resolve_precision(precision, device: str, weights: torch.dtype) -> str:
    """Lightning's precision for ``trainer.precision`` (``auto``: bf16-mixed over bf16 weights, else 32-true)."""
    if precision != "auto":
        return str(precision)
    return "bf16-mixed" if weights == torch.bfloat16 else "32-true"
