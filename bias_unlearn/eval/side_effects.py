"""Side effects: what a model scores outside StereoSet (CrowS-Pairs, BBQ, general ability), scored the same way by
a training run's report (before and after) and by ``evaluate.py runs=`` (side effects added to finished runs)."""
from __future__ import annotations

from bias_unlearn.eval.bbq import evaluate_bbq
from bias_unlearn.eval.crows_pairs import score_crows_pairs
from bias_unlearn.eval.general import evaluate_general

SIDE_EFFECTS = ("crows_pairs", "bbq", "general")


def score_side_effects(scorer, data: dict, mode: str) -> tuple[dict, dict]:
    """({benchmark: results}, {benchmark: per-example rows}) for each benchmark whose data is given (``data``:
    {"crows_pairs": pairs, "bbq": items, "general": {task: items}}; a missing or None entry is skipped and
    reported as None). Only CrowS-Pairs has per-example rows (its paired change, paired.py)."""
    results, rows = dict.fromkeys(SIDE_EFFECTS), {}
    if data.get("crows_pairs") is not None:
        results["crows_pairs"], rows["crows_pairs"] = score_crows_pairs(scorer, data["crows_pairs"])
    if data.get("bbq") is not None:
        results["bbq"] = evaluate_bbq(scorer, data["bbq"], mode)
    if data.get("general") is not None:
        results["general"] = evaluate_general(scorer, data["general"])
    return results, rows
