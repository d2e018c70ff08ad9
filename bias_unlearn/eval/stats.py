"""The statistics the benchmarks share (docs/scoring.md): per-target macro SS / LMS, ICAT, and the Wilson
interval of a proportion."""

from __future__ import annotations

import math

import torch


def as_tensor(values, dtype) -> torch.Tensor:
    return torch.as_tensor(values, dtype=dtype).reshape(-1)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion, in percent."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [100 * (centre - half), 100 * (centre + half)]


def icat(lms: float, ss: float) -> float:
    return lms * min(ss, 100.0 - ss) / 50.0


def macro_ss_lms(
    target_idx: torch.Tensor,
    pro: torch.Tensor,
    related: torch.Tensor,
    n_targets: int,
    weights: torch.Tensor | None = None,
) -> tuple[float, float, int]:
    """Per-target SS and LMS averaged over the targets present: SS_t = 100*pro_t/n_t, LMS_t = 100*related_t/(2 n_t)."""
    w = torch.ones_like(pro, dtype=torch.float64) if weights is None else weights.double()
    n = torch.bincount(target_idx, weights=w, minlength=n_targets)
    present = n > 0
    ss_t = 100 * torch.bincount(target_idx, weights=w * pro.double(), minlength=n_targets)[present] / n[present]
    lms_t = (
        100 * torch.bincount(target_idx, weights=w * related.double(), minlength=n_targets)[present] / (2 * n[present])
    )
    return float(ss_t.mean()), float(lms_t.mean()), int(present.sum())
