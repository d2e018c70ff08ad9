"""eval/crows_pairs.py: CrowsPairsMetric in mean and sum modes, likelihood_diff."""

import pytest

from bias_unlearn.eval.crows_pairs import CrowsPairsMetric


def test_crows_pairs_modes_and_likelihood_diff():
    metric = CrowsPairsMetric(["gender", "race"])
    # pair 0: sums -10 vs -12 (more wins in sum); means -10/5=-2 vs -12/4=-3 (more wins)
    # pair 1: sums -10 vs -9 (less wins in sum); means -10/5=-2 vs -9/3=-3 (more wins): the modes disagree
    # pair 2: tie in both modes -> does not prefer sent_more
    metric.update([0, 0, 1], [-10.0, -10.0, -6.0], [5, 5, 3], [-12.0, -9.0, -6.0], [4, 3, 3])
    out = metric.compute()
    assert out["gender"]["pct_stereotype_sum"] == pytest.approx(50.0)
    assert out["gender"]["pct_stereotype_mean"] == pytest.approx(100.0)
    assert out["race"]["pct_stereotype_mean"] == 0.0 and out["race"]["n"] == 1
    assert out["overall"]["n"] == 3
    assert out["overall"]["pct_stereotype_mean"] == pytest.approx(200 / 3)
    assert out["overall"]["likelihood_diff"] == pytest.approx((2 + 1 + 0) / 3)
