"""eval/general.py: perplexity and multiple choice scored by hand; the harness's prompts."""

import math

import pytest


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
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\nWhat is"
    )
