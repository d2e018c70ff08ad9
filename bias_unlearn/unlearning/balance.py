"""When is a bias type balanced? The rule that early stopping and the best-adapter choice share.

The paper stops when every type's dev SS is within 2 of 50. A type's SS is a macro average over its targets of
100 * (stereotype-preferring examples) / (examples), so it moves in steps: a type with one dev target of 25
examples takes only the values 0, 4, ..., 48, 52, ...; |SS - 50| < 2 can never hold and such a run would always
go to max_steps. So a type also counts as balanced when it sits within half a step of 50, the closest its dev set
can measure: its ``resolution`` is the largest gap between attainable SS values, 100 / (targets x the largest
target's examples). (The largest target sweeps its whole share of SS in steps of that size, and one example of any
other target moves SS by at most that whole share, so no gap is wider.) Some attainable value lies within half a
resolution of 50, so the rule is always reachable, and no looser than it must be.

Which of several dev evaluations is closest to balance (the delivered adapter) weighs each type by how precisely dev
measures it. A type's dev SS is an estimate from few examples: were every example a coin flip, a macro SS over T
targets of n_t examples would scatter by ``se = (50 / T) * sqrt(sum_t 1 / n_t)`` points (one target of 29 examples:
9.3; five targets of about 26: 4.4). ``balance_chi2`` sums each type's squared distance from 50 in those units, so
a 10-point miss on a well-measured type counts for as much as a 21-point miss on a one-target type, instead of the
worst type alone deciding (``excess_imbalance``: one type no checkpoint moves vetoes every trained adapter).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from bias_unlearn.data.records import BIAS_TYPES


def target_sizes(examples: Iterable) -> dict[str, list[int]]:
    """Per bias type present: the number of examples of each of its targets."""
    per_target = Counter((ex.bias_type, ex.target) for ex in examples)
    sizes = {bt: [n for (t, _), n in per_target.items() if t == bt] for bt in BIAS_TYPES}
    return {bt: n for bt, n in sizes.items() if n}


def ss_resolution(examples: Iterable) -> dict[str, float]:
    """Per bias type: the largest gap between attainable values of its macro SS, 100 / (targets x max examples)."""
    return {bt: 100.0 / (len(sizes) * max(sizes)) for bt, sizes in target_sizes(examples).items()}


def ss_standard_error(examples: Iterable) -> dict[str, float]:
    """Per bias type: the standard error of its macro SS were every example a coin flip, (50 / T) sqrt(sum 1 / n_t)."""
    return {bt: 50.0 / len(sizes) * sum(1.0 / n for n in sizes) ** 0.5 for bt, sizes in target_sizes(examples).items()}


def balance_chi2(dev_ss: Mapping[str, float], standard_error: Mapping[str, float]) -> float:
    """Sum over bias types of ((SS - 50) / se)^2: how far the dev scores lie from balance, each type in units of
    how precisely its dev examples measure it (0 at perfect balance)."""
    return sum(((dev_ss[bt] - 50) / standard_error[bt]) ** 2 for bt in BIAS_TYPES if bt in dev_ss)


def tolerance(threshold: float, resolution: float | None) -> float:
    """How far from 50 a type's SS may be and still count as balanced."""
    return max(threshold, (resolution or 0.0) / 2)


def type_balanced(ss: float, threshold: float, resolution: float | None) -> bool:
    distance = abs(ss - 50)
    return distance < threshold or distance <= (resolution or 0.0) / 2


def is_balanced(dev_ss: Mapping[str, float], threshold: float, resolution: Mapping[str, float]) -> bool:
    """Every bias type present in ``dev_ss`` is balanced (within ``threshold``, or within half its resolution)."""
    types = [bt for bt in BIAS_TYPES if bt in dev_ss]
    return bool(types) and all(type_balanced(dev_ss[bt], threshold, resolution.get(bt)) for bt in types)


def imbalance(dev_ss: Mapping[str, float]) -> float:
    """The largest |SS - 50| over bias types."""
    return max(abs(dev_ss[bt] - 50) for bt in BIAS_TYPES if bt in dev_ss)


def excess_imbalance(dev_ss: Mapping[str, float], threshold: float, resolution: Mapping[str, float]) -> float:
    """How far the least balanced type lies beyond its tolerance (0 when ``is_balanced``)."""
    return max(
        max(0.0, abs(dev_ss[bt] - 50) - tolerance(threshold, resolution.get(bt))) for bt in BIAS_TYPES if bt in dev_ss
    )


def dev_split_summary(dev_examples, resolution: dict[str, float], standard_error: dict[str, float]) -> dict:
    """Per bias type: the dev examples and targets that swaps, stopping and delivery read, the resolution of the
    type's dev SS (balance.py: one target of 25 sentences can only measure SS in steps of 4) and its standard error
    (how precisely dev measures it: the delivery rule's unit)."""
    return {
        bt: {
            "examples": sum(ex.bias_type == bt for ex in dev_examples),
            "targets": len({ex.target for ex in dev_examples if ex.bias_type == bt}),
            "resolution": round(resolution[bt], 2),
            "se": round(standard_error[bt], 2),
        }
        for bt in BIAS_TYPES
        if bt in resolution
    }
