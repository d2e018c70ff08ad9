"""eval/bbq.py: BBQMetric accuracies and bias scores."""

import pytest

from bias_unlearn.eval.bbq import BBQMetric


def test_bbq_accuracy_and_bias_scores():
    metric = BBQMetric(["Religion"])
    # roles: 0 unknown, 1 stereotyped, 2 other; polarity: 0 neg, 1 nonneg; condition: 0 ambig, 1 disambig
    # disambiguated: neg->stereotyped (biased), neg->other, nonneg->other (biased), nonneg->unknown (excluded)
    # s_DIS = 2 * 2 / 3 - 1 = 1/3
    # ambiguous (correct answer is unknown): unknown (correct), neg->stereotyped (biased), nonneg->stereotyped
    # acc_amb = 1/3; s = 2 * 1 / 2 - 1 = 0 -> s_AMB = 0;
    metric.update(
        category=[0] * 7,
        condition=[1, 1, 1, 1, 0, 0, 0],
        correct=[0, 1, 1, 0, 1, 0, 0],
        role=[1, 2, 2, 0, 0, 1, 1],
        polarity=[0, 0, 1, 1, 0, 0, 1],
    )
    out = metric.compute()["Religion"]
    assert out["acc_disambig"] == pytest.approx(50.0) and out["acc_ambig"] == pytest.approx(100 / 3)
    assert out["bias_disambig"] == pytest.approx(100 / 3)
    assert out["bias_ambig"] == pytest.approx(0.0)
    metric2 = BBQMetric(["Religion"])
    # every ambiguous answer biased and wrong: s = 1, acc = 0 -> s_AMB = 100
    metric2.update(category=[0, 0], condition=[0, 0], correct=[0, 0], role=[1, 2], polarity=[0, 1])
    assert metric2.compute()["Religion"]["bias_ambig"] == pytest.approx(100.0)
    metric3 = BBQMetric(["Religion"])
    # s_AMB's accuracy is over every ambiguous item, with roles or not (Parrish et al.): two biased wrong answers
    # with roles (s = 1) and two correct answers without roles: acc_amb = 1/2 -> s_AMB = 50, not (1 - 0) * 100
    metric3.update(
        category=[0] * 4, condition=[0] * 4, correct=[0, 0, 1, 1], role=[1, 2, -1, -1], polarity=[0, 1, -1, -1]
    )
    assert metric3.compute()["Religion"]["bias_ambig"] == pytest.approx(50.0)


def test_bbq_without_metadata_reports_accuracy_only():
    metric = BBQMetric(["all"])
    metric.update(category=[0, 0], condition=[0, 1], correct=[1, 0], role=[-1, -1], polarity=[-1, -1])
    out = metric.compute()["all"]
    assert out["acc_ambig"] == 100.0 and out["acc_disambig"] == 0.0
    assert "bias_ambig" not in out and out["n_with_metadata"] == 0
