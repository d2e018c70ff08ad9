"""eval/stats.py: ICAT."""

import pytest

from bias_unlearn.eval.stats import icat


def test_icat_formula():
    assert icat(90.0, 60.0) == pytest.approx(72.0)
    assert icat(90.0, 40.0) == pytest.approx(72.0)
    assert icat(80.0, 50.0) == pytest.approx(80.0)
