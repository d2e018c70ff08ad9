"""unlearning/balance.py: when a bias type counts as balanced, its dev SS resolution and standard error, chi2."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bias_unlearn.unlearning.balance import (
    balance_chi2,
    excess_imbalance,
    imbalance,
    is_balanced,
    ss_resolution,
    ss_standard_error,
)
from tests.helpers import FINE, one_target_examples


def test_resolution_of_a_type_is_one_examples_step():
    examples = one_target_examples("religion", 25) + [
        SimpleNamespace(bias_type="race", target=t) for t in ("a", "b") for _ in range(10)
    ]
    assert ss_resolution(examples) == {"religion": 4.0, "race": 5.0}


@pytest.mark.parametrize("sizes", [(8, 30), (5, 40), (3, 7, 20), (25,)])
def test_resolution_is_the_largest_gap_between_attainable_values(sizes):
    """Brute force: every SS a type with these target sizes can take; the resolution is its widest gap (uneven
    targets: the largest target sets it, not the smallest)."""
    import itertools

    values = sorted(
        {
            sum(100 * k / n for k, n in zip(ks, sizes)) / len(sizes)
            for ks in itertools.product(*(range(n + 1) for n in sizes))
        }
    )
    widest = max(b - a for a, b in zip(values, values[1:]))
    examples = [SimpleNamespace(bias_type="race", target=f"t{i}") for i, n in enumerate(sizes) for _ in range(n)]
    assert ss_resolution(examples)["race"] == pytest.approx(widest)


def test_balance_is_reachable_for_a_type_with_one_small_dev_target():
    """One religion target of 25 dev examples: SS takes the values ..., 48, 52, ...; the paper's |SS - 50| < 2
    never holds (the old rule), so balance must count values within half a resolution step of 50."""
    resolution = ss_resolution(one_target_examples("religion", 25))
    reachable = [100 * k / 25 for k in range(26)]
    assert not any(abs(v - 50) < 2 for v in reachable)  # the old rule could never fire
    dev = {"gender": 50.5, "profession": 49.0, "race": 51.0, "religion": 52.0}
    assert is_balanced(dev, 2.0, resolution)
    assert not is_balanced({**dev, "religion": 56.0}, 2.0, resolution)
    assert excess_imbalance({**dev, "religion": 56.0}, 2.0, resolution) == pytest.approx(4.0)
    assert not is_balanced({"gender": 52.0, "profession": 50, "race": 50, "religion": 50}, 2.0, FINE)
    assert is_balanced({"gender": 51.9, "profession": 48.1, "race": 50, "religion": 50.5}, 2.0, FINE)
    assert not is_balanced({}, 2.0, FINE)
    assert imbalance({"gender": 53, "race": 46.5, "overall": 70}) == 3.5


@pytest.mark.parametrize("sizes", [(3,), (3, 5), (2, 4, 6)])
def test_standard_error_is_the_coin_flip_spread_of_a_macro_ss(sizes):
    """Exact: enumerate every outcome of targets of these sizes, each example a fair coin, and take the spread of
    the macro SS (the mean over targets of 100 k_t / n_t)."""
    import itertools
    from math import comb

    mean = variance = 0.0
    outcomes = list(itertools.product(*(range(n + 1) for n in sizes)))
    for ks in outcomes:
        prob = 1.0
        for k, n in zip(ks, sizes):
            prob *= comb(n, k) / 2**n
        ss = sum(100 * k / n for k, n in zip(ks, sizes)) / len(sizes)
        mean, variance = mean + prob * ss, variance + prob * ss * ss
    examples = [SimpleNamespace(bias_type="gender", target=f"t{i}") for i, n in enumerate(sizes) for _ in range(n)]
    assert ss_standard_error(examples)["gender"] == pytest.approx((variance - mean**2) ** 0.5)


def test_chi2_weighs_each_type_by_how_precisely_dev_measures_it():
    se = {"race": 4.4, "religion": 9.3}
    assert balance_chi2({"race": 50.0, "religion": 50.0, "overall": 70.0, "lms": 80.0, "step": 5}, se) == 0.0
    assert balance_chi2({"race": 60.0, "religion": 50.0}, se) == pytest.approx(
        balance_chi2({"race": 50.0, "religion": 50 - 10 * 9.3 / 4.4}, se)
    )  # 10 points on race = 21 on religion
