import math

import pytest
import torch

from bias_unlearn.eval.bbq import BBQMetric
from bias_unlearn.eval.crows_pairs import CrowsPairsMetric
from bias_unlearn.eval.stats import icat
from bias_unlearn.eval.stereoset import StereoSetMetric


def test_icat_formula():
    assert icat(90.0, 60.0) == pytest.approx(72.0)
    assert icat(90.0, 40.0) == pytest.approx(72.0)
    assert icat(80.0, 50.0) == pytest.approx(80.0)


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


def test_bbq_accuracy_and_bias_scores():
    metric = BBQMetric(["Religion"])
    # roles: 0 unknown, 1 stereotyped, 2 other; polarity: 0 neg, 1 nonneg; condition: 0 ambig, 1 disambig
    # disambiguated: neg->stereotyped (biased), neg->other, nonneg->other (biased), nonneg->unknown (excluded)
    # s_DIS = 2 * 2 / 3 - 1 = 1/3
    # ambiguous (correct answer is unknown): unknown (correct), neg->stereotyped (biased), nonneg->stereotyped
    # acc_amb = 1/3; s = 2 * 1 / 2 - 1 = 0 -> s_AMB = 0;
    metric.update(category=[0] * 7, condition=[1, 1, 1, 1, 0, 0, 0], correct=[0, 1, 1, 0, 1, 0, 0],
                  role=[1, 2, 2, 0, 0, 1, 1], polarity=[0, 0, 1, 1, 0, 0, 1])
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
    metric3.update(category=[0] * 4, condition=[0] * 4, correct=[0, 0, 1, 1], role=[1, 2, -1, -1],
                   polarity=[0, 1, -1, -1])
    assert metric3.compute()["Religion"]["bias_ambig"] == pytest.approx(50.0)


def test_bbq_without_metadata_reports_accuracy_only():
    metric = BBQMetric(["all"])
    metric.update(category=[0, 0], condition=[0, 1], correct=[1, 0], role=[-1, -1], polarity=[-1, -1])
    out = metric.compute()["all"]
    assert out["acc_ambig"] == 100.0 and out["acc_disambig"] == 0.0
    assert "bias_ambig" not in out and out["n_with_metadata"] == 0


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


def test_general_ability_scores_by_hand(tiny):
    """Perplexity from summed token log-probs; accuracy picks the option with the highest summed log-prob."""
    from bias_unlearn.data.general import ChoiceItem
    from bias_unlearn.eval.general import evaluate_choices, evaluate_perplexity, wilson_interval
    from bias_unlearn.eval.scorer import SentenceScorer

    model, tokenizer = tiny
    scorer = SentenceScorer(model, tokenizer, batch_size=2)
    texts = ["The nurse was caring today .", "The fox is far away ."]
    result = evaluate_perplexity(scorer, texts)
    scores = [scorer.sentences([[t]])[0][0] for t in texts]
    by_hand = math.exp(-sum(s.logprob for s in scores) / sum(s.n_tokens for s in scores))
    assert result["perplexity"] == pytest.approx(by_hand, rel=1e-5) and result["n"] == 2
    item = ChoiceItem("The nurse was", ("caring today", "blue today"), 0)
    options = scorer.continuations([("Question: The nurse was\nAnswer:", list(item.options))])[0]  # PIQA's prompt
    picked = max(range(2), key=lambda k: options[k].logprob)
    assert evaluate_choices(scorer, [item], "piqa")["acc"] == (100.0 if picked == 0 else 0.0)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(49.0, abs=0.1) and high == pytest.approx(94.3, abs=0.1)


def test_multiple_choice_prompts_are_the_harness_ones():
    from bias_unlearn.data.general import ChoiceItem
    from bias_unlearn.eval.general import choice_request

    item = ChoiceItem("What is 2 + 2?", ("3", "4 "), 1)
    assert choice_request("piqa", item) == ("Question: What is 2 + 2?\nAnswer:", ["3", "4 "])
    assert choice_request("openbookqa", item) == ("What is 2 + 2?", ["3", "4 "])
    assert choice_request("mmlu", item) == ("What is 2 + 2?\nA. 3\nB. 4\nAnswer:", ["A", "B"])
    with_subject = ChoiceItem("What is 2 + 2?", ("3", "4"), 1, "elementary_mathematics")
    assert choice_request("mmlu", with_subject)[0].startswith(
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\nWhat is")
