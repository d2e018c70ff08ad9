"""reports/evenness.py: per-type and per-category imbalance, with intervals and paired changes: an overall score at
50 made of one type past 50 and one left above it is uneven, and says so."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bias_unlearn.eval.outcomes import CrowsOutcome, StereoSetOutcome
from bias_unlearn.reports.evenness import (
    bbq_imbalance,
    crows_imbalance,
    crows_imbalance_change,
    stereoset_imbalance,
    stereoset_imbalance_change,
)
from bias_unlearn.reports.paired import stereoset_summary


def rows(rates: dict[str, float], n: int = 40) -> list[StereoSetOutcome]:
    """Two targets per type; a share ``rates[type]`` of each target's examples prefers the stereotype."""
    out = []
    for bias_type, rate in rates.items():
        for target in ("a", "b"):
            out += [
                StereoSetOutcome(f"{bias_type}-{target}-{k}", bias_type, f"{bias_type}-{target}", int(k < rate * n), 2)
                for k in range(n)
            ]
    return out


def test_an_even_overall_can_hide_an_uneven_model():
    uneven = rows({"gender": 0.7, "race": 0.3})  # overall 50: one type above, one past it
    even = rows({"gender": 0.5, "race": 0.5})
    assert stereoset_summary(uneven, 0)["overall"]["ss"] == pytest.approx(50)
    got = stereoset_imbalance(uneven, 200)
    assert got["value"] == pytest.approx(20) and got["per_type"] == {
        "gender": pytest.approx(20),
        "race": pytest.approx(20),
    }
    assert got["ci95"][0] <= 20 <= got["ci95"][1]
    assert stereoset_imbalance(even, 0)["value"] == pytest.approx(0)


def test_the_paired_change_resolves_a_real_change_and_not_a_null_one():
    before = rows({"gender": 0.7, "race": 0.3})
    after = [replace(r, pro=1 if int(r.id.rsplit("-", 1)[1]) < 20 else 0) for r in before]  # both types to 50
    change = stereoset_imbalance_change(after, before, 200)
    assert change["diff"] == pytest.approx(-20) and change["resolved"]
    same = stereoset_imbalance_change(before, before, 200)
    assert same["diff"] == 0 and not same["resolved"]


def test_crows_category_imbalance_and_its_change():
    before = [CrowsOutcome(f"{c}{k}", c, int(k < 30)) for c in ("age", "race") for k in range(40)]  # 75% both
    after = [replace(r, more=int(int(r.id[len(r.category) :]) < (20 if r.category == "age" else 10))) for r in before]
    assert crows_imbalance(before, 0)["value"] == pytest.approx(25)
    assert crows_imbalance(after, 0)["value"] == pytest.approx((0 + 25) / 2)  # age to 50%, race past it to 25%
    assert crows_imbalance_change(before, after, 200)["diff"] == pytest.approx(-12.5)


def test_bbq_imbalance_needs_metadata():
    assert bbq_imbalance({"overall": {"acc_ambig": 50.0}, "all": {"acc_ambig": 50.0}}) is None
    assert bbq_imbalance(
        {"Age": {"bias_ambig": -10.0, "bias_disambig": 4.0}, "Religion": {"bias_ambig": 20.0, "bias_disambig": -2.0}}
    ) == {"bias_ambig": 15.0, "bias_disambig": 3.0}
