"""StereoSet scoring: each example's three sentences scored, compared, and aggregated by StereoSetMetric."""
from __future__ import annotations

from typing import Sequence

from bias_unlearn.data.records import StereoSetExample
from bias_unlearn.eval.metrics import StereoSetMetric
from bias_unlearn.eval.scorer import SentenceScorer

_OPTIONS = ("stereotype", "anti_stereotype", "unrelated")


def stereoset_sentence_scores(scorer: SentenceScorer, examples: Sequence[StereoSetExample],
                              mode: str = "mean") -> list[tuple[float, float, float]]:
    """(stereotype, anti-stereotype, unrelated) scores per example.

    Intrasentence: the whole filled-in sentence. Intersentence: " " + sentence given [start] + context.
    """
    intra = [i for i, ex in enumerate(examples) if ex.kind == "intrasentence"]
    inter = [i for i, ex in enumerate(examples) if ex.kind == "intersentence"]
    out: list = [None] * len(examples)
    if intra:
        groups = [[getattr(examples[i], opt) for opt in _OPTIONS] for i in intra]
        for i, scores in zip(intra, scorer.sentences(groups, desc="StereoSet intrasentence")):
            out[i] = tuple(s.value(mode) for s in scores)
    if inter:
        groups = [(examples[i].context, [getattr(examples[i], opt) for opt in _OPTIONS]) for i in inter]
        for i, scores in zip(inter, scorer.continuations(groups, desc="StereoSet intersentence")):
            out[i] = tuple(s.value(mode) for s in scores)
    return out


def evaluate_stereoset(scorer: SentenceScorer, examples: Sequence[StereoSetExample], mode: str = "mean",
                       n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """SS / LMS / ICAT per bias type and overall, separately for each kind present (intrasentence first)."""
    return score_stereoset(scorer, examples, mode, n_bootstrap, seed)[0]


def stereoset_outcomes(examples: Sequence[StereoSetExample], scores) -> dict[str, list]:
    """Per kind, one row per example: [id, bias_type, target, pro, related] with pro = stereotype preferred (1/0),
    related = how many of the two meaningful sentences beat the unrelated one (0-2); -1 for both where a score is
    undefined. The rows a paired or pooled comparison needs (paired.py), in the metric's own terms."""
    out: dict[str, list] = {}
    for ex, (stereo, anti, unrel) in zip(examples, scores):
        if any(s != s for s in (stereo, anti, unrel)):  # NaN
            pro = related = -1
        else:
            pro, related = int(stereo > anti), int(stereo > unrel) + int(anti > unrel)
        out.setdefault(ex.kind, []).append([ex.id, ex.bias_type, ex.target, pro, related])
    return out


def score_stereoset(scorer: SentenceScorer, examples: Sequence[StereoSetExample], mode: str = "mean",
                    n_bootstrap: int = 1000, seed: int = 0) -> tuple[dict, dict]:
    """(evaluate_stereoset's results, stereoset_outcomes) from one scoring pass."""
    scores = stereoset_sentence_scores(scorer, examples, mode)
    results = {}
    for kind in ("intrasentence", "intersentence"):
        idx = [i for i, ex in enumerate(examples) if ex.kind == kind]
        if not idx:
            continue
        targets = sorted({(examples[i].bias_type, examples[i].target) for i in idx})
        position = {t: k for k, t in enumerate(targets)}
        # This process scored every example: no rank to gather from (after training only rank 0 evaluates).
        metric = StereoSetMetric(targets, n_bootstrap=n_bootstrap, seed=seed, sync_on_compute=False)
        metric.update([position[(examples[i].bias_type, examples[i].target)] for i in idx],
                      [scores[i][0] for i in idx], [scores[i][1] for i in idx], [scores[i][2] for i in idx])
        results[kind] = metric.compute()
    return results, stereoset_outcomes(examples, scores)
