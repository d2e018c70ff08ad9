"""General ability: perplexity on held-out text and multiple-choice accuracy by log-likelihood, with
lm-evaluation-harness's prompts for PIQA, MMLU and OpenBookQA (``choice_request``): ``acc`` picks the choice with the
highest summed log-probability given the prompt, ``acc_norm`` divides it by the choice's length in characters.

Two differences from the harness remain: the prompt starts with the model's start token (``scoring.start``, as
every score in this project; the harness adds none for most models), and the offline MMLU rows name no subject, so
their prompt has no "about <subject>" line (the hub's rows do)."""

from __future__ import annotations

import math

from bias_unlearn.data.general import TEXT_TASK
from bias_unlearn.eval.stats import wilson_interval


def evaluate_perplexity(scorer, texts: list[str]) -> dict:
    """Token-level perplexity exp(-sum log p / tokens) over every text, each scored from its first token."""
    scores = [group[0] for group in scorer.sentences([[t] for t in texts], desc="perplexity")]
    tokens = sum(s.n_tokens for s in scores)
    nll = -sum(s.logprob for s in scores) / tokens
    return {"n": len(texts), "n_tokens": tokens, "nll_per_token": nll, "perplexity": math.exp(nll)}


def choice_request(task: str, item) -> tuple[str, list[str]]:
    """(prompt, choices) as lm-evaluation-harness's task configs build them; the scorer puts a space before each
    choice (the harness's target delimiter). MMLU lists the lettered options and scores the letters."""
    if task == "piqa":
        return f"Question: {item.question.strip()}\nAnswer:", list(item.options)
    if task == "mmlu":
        letters = [chr(ord("A") + k) for k in range(len(item.options))]
        listing = "\n".join(f"{letter}. {option.strip()}" for letter, option in zip(letters, item.options))
        about = (
            f"The following are multiple choice questions (with answers) about {item.subject.replace('_', ' ')}.\n\n"
            if item.subject
            else ""
        )
        return f"{about}{item.question.strip()}\n{listing}\nAnswer:", letters
    return item.question.strip(), list(item.options)  # openbookqa: the question stem alone


def evaluate_choices(scorer, items, task: str = "openbookqa") -> dict:
    """Accuracy (%) with its 95% interval, and length-normalised accuracy."""
    requests = [choice_request(task, item) for item in items]
    scores = scorer.continuations(requests, desc=f"multiple choice ({task})")
    correct = correct_norm = 0
    for item, options, (_, choices) in zip(items, scores, requests):
        summed = [s.logprob for s in options]
        normed = [s.logprob / max(len(c.strip()), 1) for s, c in zip(options, choices)]
        correct += summed.index(max(summed)) == item.answer
        correct_norm += normed.index(max(normed)) == item.answer
    n = len(items)
    return {
        "n": n,
        "acc": 100 * correct / n,
        "acc_ci95": wilson_interval(correct, n),
        "acc_norm": 100 * correct_norm / n,
    }


def evaluate_general(scorer, data: dict) -> dict:
    """{task: result} for every loaded task (``data``: task -> texts or ChoiceItems)."""
    return {
        task: evaluate_perplexity(scorer, items) if task == TEXT_TASK else evaluate_choices(scorer, items, task)
        for task, items in data.items()
    }
