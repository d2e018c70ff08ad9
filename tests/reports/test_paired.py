"""paired.py: pooled and paired statistics from per-example outcomes agree with the metric and can resolve (or not)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from bias_unlearn.eval.outcomes import CrowsOutcome, StereoSetOutcome
from bias_unlearn.eval.stereoset import StereoSetMetric
from bias_unlearn.reports.paired import crows_change, over_seeds, paired_difference, pooled, stereoset_summary


def rows(seed: int, p_pro: float, n_per_target: int = 30) -> list:
    rng = random.Random(seed)
    out = []
    for bias_type, targets in {"gender": ["mother", "sister"], "race": ["Peru", "Japan", "Norway"]}.items():
        for target in targets:
            for k in range(n_per_target):
                out.append(
                    StereoSetOutcome(
                        f"{target}-{k}", bias_type, target, int(rng.random() < p_pro), rng.choice([1, 2, 2])
                    )
                )
    return out


def test_summary_matches_the_metric():
    data = rows(0, 0.6)
    targets = sorted({(r.bias_type, r.target) for r in data})
    metric = StereoSetMetric(targets, n_bootstrap=0)
    # scores that reproduce each row's pro / related: stereo vs anti decides pro, unrelated sits below or between
    stereo = [1.0 if r.pro else 0.0 for r in data]
    unrel = [-1.0 if r.related == 2 else 0.5 for r in data]
    metric.update([targets.index((r.bias_type, r.target)) for r in data], stereo, [1 - s for s in stereo], unrel)
    expected = metric.compute()
    got = stereoset_summary(data, n_bootstrap=50)
    for domain in ("overall", "gender", "race"):
        for key in ("ss", "lms", "icat", "n", "n_targets"):
            assert got[domain][key] == pytest.approx(expected[domain][key])
        low, high = got[domain]["ss_ci95"]
        assert low <= got[domain]["ss"] <= high


def test_paired_difference_resolves_a_real_change_and_not_a_null_one():
    before, after = rows(0, 0.65), rows(0, 0.65)
    same = paired_difference(after, before, n_bootstrap=200)["overall"]
    assert same["abs_ss"]["diff"] == 0 and same["abs_ss"]["ci95"] == [0, 0] and not same["abs_ss"]["resolved"]
    debiased = [replace(r, pro=0 if i % 8 == 0 else r.pro) for i, r in enumerate(before)]  # SS 62 -> about 55
    diff = paired_difference(debiased, before, n_bootstrap=200)["overall"]
    assert diff["abs_ss"]["diff"] < 0 and diff["abs_ss"]["resolved"]
    assert diff["lms"]["diff"] == 0 and not diff["lms"]["resolved"]
    noisy = paired_difference(rows(1, 0.65), before, n_bootstrap=200)["overall"]  # same rates, other draws
    assert not noisy["icat"]["resolved"]
    with pytest.raises(ValueError, match="share no test example"):
        paired_difference([replace(r, id=f"x{r.id}") for r in before], before)


def test_pooled_keeps_each_runs_targets_apart():
    a, b = rows(0, 0.9, 10), rows(1, 0.1, 10)
    both = pooled({"seed0": a, "seed1": b}, n_bootstrap=50)["overall"]
    assert both["n"] == len(a) + len(b) and both["n_targets"] == 10  # 5 targets per run, not 5 in all
    assert both["ss"] == pytest.approx(
        (stereoset_summary(a, 0)["overall"]["ss"] + stereoset_summary(b, 0)["overall"]["ss"]) / 2
    )


def test_crows_change_per_category():
    before = [CrowsOutcome(str(i), "age" if i < 100 else "gender", 1 if i % 4 else 0) for i in range(200)]  # 75%
    after = [replace(r, more=1 if (r.category == "age" or int(r.id) % 2) else 0) for r in before]  # 100% / 50%
    change = crows_change(before, after, n_bootstrap=200)
    assert change["age"]["before"] == 75 and change["age"]["after"] == 100
    assert change["age"]["change"] == 25 and change["age"]["resolved"]
    assert change["gender"]["change"] == -25 and change["gender"]["resolved"]
    assert change["overall"]["change"] == 0 and not change["overall"]["resolved"]


def test_over_seeds():
    assert over_seeds([1.0, 3.0]) == {"mean": 2.0, "sd": pytest.approx(2**0.5), "n_runs": 2}
    assert over_seeds([4.0, None]) == {"mean": 4.0, "sd": None, "n_runs": 1}


def test_an_undefined_estimate_has_no_interval():
    """One row without a score (-1) makes the estimate NaN; replicates that happen to miss it must not give it a
    finite interval."""
    data = rows(0, 0.6)
    data[0] = replace(data[0], pro=-1, related=-1)
    got = stereoset_summary(data, n_bootstrap=200)
    assert got["overall"]["ss"] != got["overall"]["ss"]  # NaN
    assert all(v != v for v in got["overall"]["ss_ci95"])
    assert got["race"]["ss_ci95"][0] == got["race"]["ss_ci95"][0]  # the types without that row keep theirs
