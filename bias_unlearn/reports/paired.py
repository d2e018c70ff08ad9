"""Comparisons that a single run's table cannot make, from the per-example outcomes every report keeps
(``RunReport.outcomes``: ``StereoSetOutcome`` and ``CrowsOutcome`` rows, eval/outcomes.py). Everything is computed
the way StereoSetMetric computes it (per-target macro SS / LMS, ICAT), and every interval is a percentile bootstrap
that resamples examples within each target (StereoSet) or within each category (CrowS-Pairs), the same draws for both
sides of a paired difference.

- ``paired_difference``: method A - method B on the same test examples (e.g. a baseline - BiasUnlearn, or after -
  before), with its 95% interval; ``resolved`` when the interval excludes 0.
- ``pooled``: one estimate from several runs' test examples together (split seeds: each run's targets are its own).
- ``crows_change``: per CrowS-Pairs category, after - before in % of pairs preferring the stereotype.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import mean, stdev

import torch

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.eval.outcomes import CrowsOutcome, StereoSetOutcome
from bias_unlearn.eval.stats import icat, macro_ss_lms

STATISTICS = ("abs_ss", "lms", "icat")  # |SS - 50| (lower is better), LMS, ICAT (higher is better)


def _target(row: StereoSetOutcome) -> tuple[str, str]:
    return row.bias_type, row.target


def _encode(rows: list[StereoSetOutcome], key=_target):
    """(target index, pro, related, bias-type index) tensors, targets keyed by ``key`` (bias type, target)."""
    targets = {k: i for i, k in enumerate(sorted({key(r) for r in rows}))}
    t = torch.tensor([targets[key(r)] for r in rows], dtype=torch.long)
    pro = torch.tensor([r.pro for r in rows], dtype=torch.long)
    rel = torch.tensor([r.related for r in rows], dtype=torch.long)
    types = torch.tensor(
        [BIAS_TYPES.index(r.bias_type) if r.bias_type in BIAS_TYPES else -1 for r in rows], dtype=torch.long
    )
    return t, pro, rel, types, len(targets)


def _stats(t, pro, rel, n_targets) -> dict:
    if len(t) == 0 or (pro < 0).any():
        return {"ss": math.nan, "lms": math.nan, "icat": math.nan, "abs_ss": math.nan}
    ss, lms, _ = macro_ss_lms(t, pro, rel, n_targets)
    return {"ss": ss, "lms": lms, "icat": icat(lms, ss), "abs_ss": abs(ss - 50)}


def _within_group_draws(group: torch.Tensor, n_bootstrap: int, seed: int):
    """Per bootstrap replicate, an index per row: a row drawn with replacement from the same group (row j's draw
    belongs to group[j], so the targets stay where they are and only the outcomes are resampled)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.argsort(group, stable=True)  # the rows of each group, contiguous
    counts = torch.bincount(group)
    starts, sizes = (torch.cumsum(counts, 0) - counts)[group], counts[group]
    for _ in range(n_bootstrap):
        yield order[starts + (torch.rand(len(group), generator=generator) * sizes).long()]


def _interval(values: list[float]) -> list[float]:
    """The 2.5% and 97.5% quantiles of bootstrap replicates; undefined (NaN) when any replicate is: a replicate is
    NaN only where the estimate itself is (a row without a score), and the finite ones would be those that missed
    that row by chance."""
    if not values or any(v != v for v in values):
        return [math.nan, math.nan]
    q = torch.quantile(torch.tensor(values, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return [float(q[0]), float(q[1])]


def stereoset_summary(rows: list[StereoSetOutcome], n_bootstrap: int = 1000, seed: int = 0, key=_target) -> dict:
    """Per domain (overall and each bias type): SS, LMS, ICAT, |SS - 50|, n, and SS's 95% interval."""
    t, pro, rel, types, n_targets = _encode(rows, key)
    out = {}
    for domain in ("overall", *BIAS_TYPES):
        keep = torch.ones_like(t, dtype=torch.bool) if domain == "overall" else types == BIAS_TYPES.index(domain)
        if not keep.any():
            continue
        tk, pk, rk = t[keep], pro[keep], rel[keep]
        values = [_stats(tk, pk[d], rk[d], n_targets)["ss"] for d in _within_group_draws(tk, n_bootstrap, seed)]
        out[domain] = {
            **_stats(tk, pk, rk, n_targets),
            "n": int(keep.sum()),
            "n_targets": int(tk.unique().numel()),
            "ss_ci95": _interval(values),
        }
    return out


def keyed(rows: list[StereoSetOutcome], prefix: str) -> list[StereoSetOutcome]:
    """The rows with ids and targets prefixed, so that rows of different runs (splits) never share either."""
    return [replace(r, id=f"{prefix}:{r.id}", target=f"{prefix}:{r.target}") for r in rows]


def pooled(runs: dict[str, list[StereoSetOutcome]], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """One StereoSet estimate over several runs' test examples (``runs``: name -> rows); a target of one run is
    not the same target in another (its split differs), so targets are keyed by run."""
    return stereoset_summary([r for name, rows in runs.items() for r in keyed(rows, name)], n_bootstrap, seed)


def paired_difference(
    a: list[StereoSetOutcome], b: list[StereoSetOutcome], n_bootstrap: int = 1000, seed: int = 0
) -> dict:
    """A - B in |SS - 50|, LMS and ICAT (overall and per bias type) on the examples both scored, with paired 95%
    bootstrap intervals; ``resolved``: the interval excludes 0."""
    by_id = {r.id: r for r in b}
    common = [r for r in a if r.id in by_id]
    if not common:
        raise ValueError("the two runs share no test example: compare runs of the same split seed")
    rows_b = [by_id[r.id] for r in common]
    t, pro_a, rel_a, types, n_targets = _encode(common)
    _, pro_b, rel_b, _, _ = _encode(rows_b)
    out = {}
    for domain in ("overall", *BIAS_TYPES):
        keep = torch.ones_like(t, dtype=torch.bool) if domain == "overall" else types == BIAS_TYPES.index(domain)
        if not keep.any():
            continue
        tk = t[keep]
        sa, sb = _stats(tk, pro_a[keep], rel_a[keep], n_targets), _stats(tk, pro_b[keep], rel_b[keep], n_targets)
        draws = {s: [] for s in STATISTICS}
        for d in _within_group_draws(tk, n_bootstrap, seed):
            da = _stats(tk, pro_a[keep][d], rel_a[keep][d], n_targets)
            db = _stats(tk, pro_b[keep][d], rel_b[keep][d], n_targets)
            for s in STATISTICS:
                draws[s].append(da[s] - db[s])
        out[domain] = {"n": int(keep.sum())}
        for s in STATISTICS:
            low, high = _interval(draws[s])
            out[domain][s] = {"diff": sa[s] - sb[s], "ci95": [low, high], "resolved": bool(low > 0 or high < 0)}
    return out


def crows_change(before: list[CrowsOutcome], after: list[CrowsOutcome], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Per CrowS-Pairs category and overall: % of pairs preferring the stereotype before and after, and the paired
    change (after - before) with its 95% bootstrap interval; ``resolved``: the interval excludes 0."""
    by_id = {r.id: r for r in before}
    rows = [(by_id[r.id].category, by_id[r.id].more, r.more) for r in after if r.id in by_id]
    categories = sorted({c for c, _, _ in rows})
    out = {}
    for name in ("overall", *categories):
        sel = [(b, a) for c, b, a in rows if name in ("overall", c)]
        if any(b < 0 or a < 0 for b, a in sel):
            continue
        b = torch.tensor([x for x, _ in sel], dtype=torch.float64)
        a = torch.tensor([y for _, y in sel], dtype=torch.float64)
        diffs = list(_within_group_draws(torch.zeros(len(sel), dtype=torch.long), n_bootstrap, seed))
        values = [float(100 * (a[d].mean() - b[d].mean())) for d in diffs]
        low, high = _interval(values)
        out[name] = {
            "n": len(sel),
            "before": float(100 * b.mean()),
            "after": float(100 * a.mean()),
            "change": float(100 * (a.mean() - b.mean())),
            "ci95": [low, high],
            "resolved": bool(low > 0 or high < 0),
        }
    return out


def over_seeds(values: list[float]) -> dict:
    """Mean and standard deviation over runs (seeds); sd is None for a single run."""
    finite = [v for v in values if v is not None and v == v]
    return {
        "mean": mean(finite) if finite else None,
        "sd": stdev(finite) if len(finite) > 1 else None,
        "n_runs": len(finite),
    }
