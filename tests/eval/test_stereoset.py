"""eval/stereoset.py: StereoSetMetric (macro per-target SS / LMS / ICAT, bootstrap interval, undefined scores)."""

import math

import pytest
import torch

from bias_unlearn.eval.crows_pairs import CrowsPairsMetric
from bias_unlearn.eval.stats import icat
from bias_unlearn.eval.stereoset import StereoSetMetric


def test_stereoset_macro_average_ties_and_domains():
    targets = [("gender", "mother"), ("gender", "sister"), ("race", "Peru")]
    metric = StereoSetMetric(targets, n_bootstrap=0)
    # mother: stereo wins, tie (counts as anti), stereo wins -> SS 66.67
    # related: (s>u)+(a>u): 1, 2, 0 -> 3 of 6 -> LMS 50
    metric.update([0, 0, 0], [-1.0, -2.0, -1.0], [-2.0, -2.0, -1.5], [-1.5, -2.5, -0.1])
    # sister: one example, stereo wins, both related -> SS 100, LMS 100
    metric.update([1], [-1.0], [-3.0], [-4.0])
    # Peru: anti wins, only anti beats unrelated -> SS 0, LMS 50
    metric.update([2, 2], [-1.0, -1.0], [-0.5, -0.5], [-0.8, -0.8])
    out = metric.compute()
    assert out["gender"]["ss"] == pytest.approx((200 / 3 + 100) / 2)  # macro, not 3/4 = 75
    assert out["gender"]["lms"] == pytest.approx((50 + 100) / 2)
    assert out["gender"]["n"] == 4 and out["gender"]["n_targets"] == 2
    assert out["race"]["ss"] == 0.0 and out["race"]["lms"] == pytest.approx(50.0)
    assert out["overall"]["ss"] == pytest.approx((200 / 3 + 100 + 0) / 3)
    assert out["overall"]["lms"] == pytest.approx((50 + 100 + 50) / 3)
    assert out["overall"]["icat"] == pytest.approx(icat(out["overall"]["lms"], out["overall"]["ss"]))
    assert "religion" not in out and math.isnan(out["overall"]["ss_ci95"][0])


def test_stereoset_bootstrap_interval_brackets_estimate():
    g = torch.Generator().manual_seed(0)
    n = 400
    idx = torch.randint(0, 8, (n,), generator=g)
    stereo = torch.randn(n, generator=g)
    anti = torch.randn(n, generator=g) - 0.3
    metric = StereoSetMetric([("race", f"t{i}") for i in range(8)], n_bootstrap=300, seed=1)
    metric.update(idx, stereo, anti, stereo - 5)
    out = metric.compute()["overall"]
    low, high = out["ss_ci95"]
    assert low < out["ss"] < high and 2 < high - low < 25
    again = StereoSetMetric([("race", f"t{i}") for i in range(8)], n_bootstrap=300, seed=1)
    again.update(idx, stereo, anti, stereo - 5)
    assert again.compute()["overall"]["ss_ci95"] == [low, high]


def test_nan_scores_give_undefined_results_not_numbers():
    """A diverged model scores NaN: its SS, LMS and CrowS-Pairs percentages are NaN, never 0 (issue 11)."""
    targets = [("gender", "mother"), ("race", "Peru")]
    metric = StereoSetMetric(targets, n_bootstrap=10)
    metric.update([0, 0, 1], [float("nan"), 1.0, 2.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    result = metric.compute()
    assert math.isnan(result["overall"]["ss"]) and math.isnan(result["gender"]["lms"])
    assert result["gender"]["n_undefined"] == 1 and result["race"]["ss"] == 100.0
    crows = CrowsPairsMetric(["gender"])
    crows.update([0, 0], [float("nan"), -1.0], [3, 3], [-2.0, -2.0], [3, 3])
    assert math.isnan(crows.compute()["overall"]["pct_stereotype_mean"])
