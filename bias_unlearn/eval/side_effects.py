"""One model's evaluation for a run report: StereoSet on the run's test split and the side effects (what the model
scores outside StereoSet: CrowS-Pairs, BBQ, general ability), scored the same way by a training run (before and
after) and by ``evaluate.py runs=`` (side effects added to finished runs)."""

from __future__ import annotations

from bias_unlearn.eval.bbq import evaluate_bbq
from bias_unlearn.eval.crows_pairs import score_crows_pairs
from bias_unlearn.eval.general import check_harness_tasks, evaluate_general
from bias_unlearn.eval.outcomes import Evaluation, Outcomes
from bias_unlearn.eval.stereoset import score_stereoset

SIDE_EFFECTS = ("crows_pairs", "bbq", "general")


def check_side_effect_data(side: dict) -> None:
    """What can only be checked against an installed tool: the harness's task names (hub tasks)."""
    general = side.get("general")
    if general is not None and general.hub_tasks:
        check_harness_tasks(list(general.hub_tasks))


def evaluate_model(scorer, scoring, side: dict, stereoset_examples=None, cache=None) -> Evaluation:
    """StereoSet on ``stereoset_examples`` (when given) and every side effect whose data ``side`` holds
    ({"crows_pairs": pairs, "bbq": items, "general": {task: items}}; a missing or None entry is not scored). Per-example
    outcomes come with StereoSet and CrowS-Pairs (the paired comparisons read them). ``cache``
    (eval/side_effect_cache.py): side effects read from it where it holds them, and kept in it where scored."""
    result = Evaluation(outcomes=Outcomes())
    if stereoset_examples is not None:
        result.stereoset, result.outcomes.stereoset = score_stereoset(
            scorer, stereoset_examples, scoring.mode, scoring.n_bootstrap, scoring.seed
        )
    for name in SIDE_EFFECTS:
        if side.get(name) is None:
            continue
        scored = cache.load(name) if cache is not None else None
        if scored is None:
            scored = score_side_effect(name, scorer, scoring, side[name])
            if cache is not None:
                cache.save(name, scored)
        setattr(result, name, getattr(scored, name))
        if name == "crows_pairs":
            result.outcomes.crows_pairs = scored.outcomes.crows_pairs
    return result


def score_side_effect(name: str, scorer, scoring, data) -> Evaluation:
    """One side effect scored: its field of an Evaluation (with CrowS-Pairs' per-pair outcomes)."""
    scored = Evaluation(outcomes=Outcomes())
    if name == "crows_pairs":
        scored.crows_pairs, scored.outcomes.crows_pairs = score_crows_pairs(scorer, data)
    elif name == "bbq":
        scored.bbq = evaluate_bbq(scorer, data, scoring.mode)
    else:
        scored.general = evaluate_general(scorer, data, scoring.harness_batch_size)
    return scored
