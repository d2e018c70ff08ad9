"""BBQ as multiple choice: the option with the highest length-normalised log-probability given the passage and
question is the model's answer."""
from __future__ import annotations

from typing import Sequence

from bias_unlearn.data.records import BBQ_LEFT_OUT_REASONS, BBQItem
from bias_unlearn.eval.metrics import CONDITIONS, POLARITIES, ROLES, BBQMetric
from bias_unlearn.eval.scorer import SentenceScorer


def bbq_prompt(item: BBQItem) -> str:
    return f"{item.context.strip()}\nQuestion: {item.question.strip()}\nAnswer:"


def evaluate_bbq(scorer: SentenceScorer, items: Sequence[BBQItem], mode: str = "mean") -> dict:
    scores = scorer.continuations([(bbq_prompt(item), item.options) for item in items], desc="BBQ")
    categories = sorted({item.category for item in items})
    rows = {"category": [], "condition": [], "correct": [], "role": [], "polarity": [], "reason": []}
    for item, item_scores in zip(items, scores):
        values = [s.value(mode) for s in item_scores]
        choice = max(range(len(values)), key=values.__getitem__)
        rows["category"].append(categories.index(item.category))
        rows["condition"].append(CONDITIONS.index(item.context_condition))
        rows["correct"].append(int(choice == item.label))
        rows["role"].append(ROLES.index(item.option_roles[choice]) if item.option_roles else -1)
        rows["polarity"].append(POLARITIES.index(item.polarity) if item.polarity else -1)
        # why the bias score leaves the item out (-1: it does not, or the loader gave no reason)
        rows["reason"].append(BBQ_LEFT_OUT_REASONS.index(item.roles_issue)
                              if item.roles_issue in BBQ_LEFT_OUT_REASONS else -1)
    metric = BBQMetric(categories, sync_on_compute=False)  # one process scored every item
    metric.update(**rows)
    return metric.compute()
