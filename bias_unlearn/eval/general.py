"""General ability: perplexity on held-out text and multiple-choice accuracy by log-likelihood (as
lm-evaluation-harness scores PIQA, MMLU and OpenBookQA: ``acc`` picks the option with the highest summed
log-probability given the question, ``acc_norm`` divides it by the option's length in bytes)."""
from __future__ import annotations

import math

from bias_unlearn.data.general import TEXT_TASK
from bias_unlearn.eval.metrics import wilson_interval


def evaluate_perplexity(scorer, texts: list[str]) -> dict:
    """Token-level perplexity exp(-sum log p / tokens) over every text, each scored from its first token."""
    scores = [group[0] for group in scorer.sentences([[t] for t in texts], desc="perplexity")]
    tokens = sum(s.n_tokens for s in scores)
    nll = -sum(s.logprob for s in scores) / tokens
    return {"n": len(texts), "n_tokens": tokens, "nll_per_token": nll, "perplexity": math.exp(nll)}


def evaluate_choices(scorer, items) -> dict:
    """Accuracy (%) with its 95% interval, and length-normalised accuracy."""
    scores = scorer.continuations([(item.question, list(item.options)) for item in items], desc="multiple choice")
    correct = correct_norm = 0
    for item, options in zip(items, scores):
        summed = [s.logprob for s in options]
        normed = [s.logprob / max(len((" " + o.strip()).encode("utf-8")), 1) for s, o in zip(options, item.options)]
        correct += summed.index(max(summed)) == item.answer
        correct_norm += normed.index(max(normed)) == item.answer
    n = len(items)
    return {"n": n, "acc": 100 * correct / n, "acc_ci95": wilson_interval(correct, n), "acc_norm": 100 * correct_norm / n}


def evaluate_general(scorer, data: dict) -> dict:
    """{task: result} for every loaded task (``data``: task -> texts or ChoiceItems)."""
    return {task: evaluate_perplexity(scorer, items) if task == TEXT_TASK else evaluate_choices(scorer, items)
            for task, items in data.items()}
