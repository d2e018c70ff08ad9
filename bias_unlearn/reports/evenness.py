"""Evenness: how far from unbiased the model is *per type*, beside the overall score (docs/method.md, "Why an overall
score is not enough"). An overall SS of 50 can be one type pushed past 50 and another left where it was.

- StereoSet per-type imbalance: the mean over the bias types present of |SS_t - 50|, each SS_t the per-target macro
  average of its type (0: every type balanced).
- CrowS-Pairs category imbalance: the mean over its categories of |% stereotyped - 50|.
- BBQ: the mean over categories of |bias score| (ambiguous and disambiguated; needs BBQ's metadata).

Intervals are percentile bootstraps that resample examples within each target (StereoSet) or category (CrowS-Pairs),
the same draws for both sides of a paired change, as in reports/paired.py.
"""

from __future__ import annotations

import math

import torch

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.eval.outcomes import CrowsOutcome, StereoSetOutcome
from bias_unlearn.reports.paired import _encode, _interval, _stats, _within_group_draws


def _type_imbalance(t, pro, rel, types, n_targets) -> float:
    distances = []
    for k in range(len(BIAS_TYPES)):
        keep = types == k
        if keep.any():
            distances.append(_stats(t[keep], pro[keep], rel[keep], n_targets)["abs_ss"])
    return sum(distances) / len(distances) if distances else math.nan


def stereoset_imbalance(rows: list[StereoSetOutcome], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """{"value", "ci95", "per_type": {type: |SS_t - 50|}} of one model's outcomes."""
    t, pro, rel, types, n_targets = _encode(rows)
    value = _type_imbalance(t, pro, rel, types, n_targets)
    draws = [_type_imbalance(t, pro[d], rel[d], types, n_targets) for d in _within_group_draws(t, n_bootstrap, seed)]
    per_type = {
        bt: _stats(t[types == k], pro[types == k], rel[types == k], n_targets)["abs_ss"]
        for k, bt in enumerate(BIAS_TYPES)
        if (types == k).any()
    }
    return {"value": value, "ci95": _interval(draws), "per_type": per_type}


def stereoset_imbalance_change(
    a: list[StereoSetOutcome], b: list[StereoSetOutcome], n_bootstrap: int = 1000, seed: int = 0
) -> dict:
    """A - B in per-type imbalance on the examples both scored, with its paired interval."""
    by_id = {r.id: r for r in b}
    common = [r for r in a if r.id in by_id]
    if not common:
        raise ValueError("the two share no test example: compare runs of the same split seed")
    t, pro_a, rel_a, types, n_targets = _encode(common)
    _, pro_b, rel_b, _, _ = _encode([by_id[r.id] for r in common])
    diff = _type_imbalance(t, pro_a, rel_a, types, n_targets) - _type_imbalance(t, pro_b, rel_b, types, n_targets)
    draws = [
        _type_imbalance(t, pro_a[d], rel_a[d], types, n_targets)
        - _type_imbalance(t, pro_b[d], rel_b[d], types, n_targets)
        for d in _within_group_draws(t, n_bootstrap, seed)
    ]
    low, high = _interval(draws)
    return {"diff": diff, "ci95": [low, high], "resolved": bool(low > 0 or high < 0), "n": len(common)}


def _category_imbalance(categories: torch.Tensor, more: torch.Tensor, n: int) -> float:
    distances = [
        abs(100 * float(more[categories == c].double().mean()) - 50) for c in range(n) if (categories == c).any()
    ]
    return sum(distances) / len(distances) if distances else math.nan


def _crows_encode(rows: list[CrowsOutcome], names: list[str]):
    return (
        torch.tensor([names.index(r.category) for r in rows], dtype=torch.long),
        torch.tensor([r.more for r in rows], dtype=torch.long),
    )


def crows_imbalance(rows: list[CrowsOutcome], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """{"value", "ci95"}: the mean over CrowS-Pairs categories of |% stereotyped - 50| (mean mode)."""
    if any(r.more < 0 for r in rows):
        return {"value": math.nan, "ci95": [math.nan, math.nan]}
    names = sorted({r.category for r in rows})
    c, more = _crows_encode(rows, names)
    draws = [_category_imbalance(c, more[d], len(names)) for d in _within_group_draws(c, n_bootstrap, seed)]
    return {"value": _category_imbalance(c, more, len(names)), "ci95": _interval(draws)}


def crows_imbalance_change(
    before: list[CrowsOutcome], after: list[CrowsOutcome], n_bootstrap: int = 1000, seed: int = 0
) -> dict:
    """After - before in CrowS-Pairs category imbalance on the same pairs, with its paired interval."""
    by_id = {r.id: r for r in before}
    common = [r for r in after if r.id in by_id]
    if not common or any(r.more < 0 or by_id[r.id].more < 0 for r in common):
        return {"diff": math.nan, "ci95": [math.nan, math.nan], "resolved": False, "n": len(common)}
    names = sorted({r.category for r in common})
    c, more_a = _crows_encode(common, names)
    _, more_b = _crows_encode([by_id[r.id] for r in common], names)
    diff = _category_imbalance(c, more_a, len(names)) - _category_imbalance(c, more_b, len(names))
    draws = [
        _category_imbalance(c, more_a[d], len(names)) - _category_imbalance(c, more_b[d], len(names))
        for d in _within_group_draws(c, n_bootstrap, seed)
    ]
    low, high = _interval(draws)
    return {"diff": diff, "ci95": [low, high], "resolved": bool(low > 0 or high < 0), "n": len(common)}


def bbq_imbalance(result: dict | None) -> dict | None:
    """The mean over BBQ categories of |bias score| (x100), ambiguous and disambiguated; None without metadata."""
    if not result:
        return None
    out = {}
    for key in ("bias_ambig", "bias_disambig"):
        values = [
            abs(v[key])
            for name, v in result.items()
            if name != "overall" and v.get(key) is not None and v[key] == v[key]
        ]
        out[key] = sum(values) / len(values) if values else None
    return out if any(v is not None for v in out.values()) else None


def run_evenness(report) -> dict:
    """A run's evenness before and after with the paired changes, from its report's outcomes."""
    out: dict = {}
    before, after = report.outcomes.before, report.outcomes.after
    rows_b = before.stereoset.get("intrasentence") if before else None
    rows_a = after.stereoset.get("intrasentence") if after else None
    if rows_b:
        out["ss_before"] = stereoset_imbalance(rows_b)
    if rows_a:
        out["ss_after"] = stereoset_imbalance(rows_a)
    if rows_a and rows_b:
        out["ss_change"] = stereoset_imbalance_change(rows_a, rows_b)
    crows_b = before.crows_pairs if before else None
    crows_a = after.crows_pairs if after else None
    if crows_b:
        out["crows_before"] = crows_imbalance(crows_b)
    if crows_a:
        out["crows_after"] = crows_imbalance(crows_a)
    if crows_a and crows_b:
        out["crows_change"] = crows_imbalance_change(crows_b, crows_a)
    for side in ("before", "after"):
        value = bbq_imbalance(getattr(report.bbq, side))
        if value:
            out[f"bbq_{side}"] = value
    return out
