"""Train / dev / test splits of StereoSet that are disjoint by target term and stratified by bias type.

StereoSet's own dev/test split has disjoint targets; a split of one file must keep that property, or the test
score measures memorisation of target terms seen in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bias_unlearn.config.errors import ConfigError, DataError
from bias_unlearn.data.records import BIAS_TYPES, StereoSetExample
from bias_unlearn.io import write_json

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "dev", "test")


@dataclass
class StereoSetSplit:
    train: list[StereoSetExample]
    dev: list[StereoSetExample]
    test: list[StereoSetExample]
    info: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[StereoSetExample]:
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, name)

    def save(self, path: str | Path) -> Path:
        """Write the split's recipe and target lists (enough to trace any result to its data)."""
        return write_json(path, self.info)


def _counts(examples: list[StereoSetExample]) -> dict:
    out: dict = defaultdict(lambda: defaultdict(int))
    for ex in examples:
        out[ex.bias_type][ex.kind] += 1
    return {bt: dict(kinds) for bt, kinds in sorted(out.items())}


def _fingerprint(examples: list[StereoSetExample]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(f"{ex.kind}|{ex.target}|{ex.bias_type}|{ex.context}|{ex.stereotype}\n".encode())
    return digest.hexdigest()[:16]


def _describe(split: dict[str, list[StereoSetExample]], recipe: dict) -> dict:
    info = dict(recipe)
    for name, examples in split.items():
        info[name] = {
            "n_examples": len(examples),
            "counts": _counts(examples),
            "targets": sorted({f"{ex.bias_type}:{ex.target}" for ex in examples}),
        }
    return info


def target_keys(examples: Iterable[StereoSetExample]) -> set[str]:
    """``bias_type:target`` (target lower-cased, as the split assigns it) of every example."""
    return {f"{ex.bias_type}:{ex.target.lower()}" for ex in examples}


def saved_target_keys(info: dict, names: Iterable[str]) -> set[str]:
    """The same keys from a saved split (``split.json``) for the named parts."""
    keys = set()
    for name in names:
        for key in info.get(name, {}).get("targets", []):
            bias_type, _, target = key.partition(":")
            keys.add(f"{bias_type}:{target.lower()}")
    return keys


def adapter_split(adapter: str) -> Path | None:
    """The ``split.json`` of the run that trained an adapter: in the adapter folder, or its run directory (the
    delivered ``adapter/`` and the ``checkpoints/best``, ``checkpoints/last`` folders)."""
    here = Path(adapter)
    for path in (here / "split.json", here.parent / "split.json", here.parent.parent / "split.json"):
        if path.is_file():
            return path
    return None


def check_held_out(adapter: str, examples: list, split: str) -> None:
    """Refuse to score an adapter on target terms its run trained on or chose by (a memorisation score, not a
    held-out one): the evaluation's StereoSet split must be built as the adapter's run built its own."""
    path = adapter_split(adapter)
    if path is None:
        log.warning(
            "no split.json beside adapter %s: cannot check that its StereoSet %s targets are held out", adapter, split
        )
        return
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: malformed split file ({err})") from None
    seen = saved_target_keys(info, ("train", "dev")) & target_keys(examples)
    if not seen:
        return
    if split == "all":
        log.warning("split=all includes %d target terms adapter %s was trained or chosen on", len(seen), adapter)
        return
    raise ConfigError(
        f"adapter {adapter} was trained or chosen on {len(seen)} of the {len(target_keys(examples))} target terms "
        f"of this StereoSet {split} split (e.g. {', '.join(sorted(seen)[:3])}; its run's split: {path}, seed "
        f"{info.get('seed')}); evaluate split=test with seed={info.get('seed')} and the run's data.split settings to "
        "score its held-out split"
    )


def _partition(examples: list[StereoSetExample], seed: int, fractions: dict[str, float]) -> dict:
    """Assign each (bias type, target) to one part; every bias type gets at least one target in every part.

    Targets are shuffled per bias type with a seed derived from ``seed`` and the type's name, so adding a bias type
    does not reshuffle the others. The first part takes whatever the rounding of the others leaves.
    """
    values = list(fractions.values())
    if any(f <= 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise DataError("split", f"fractions {fractions} must be positive numbers summing to 1")
    by_type: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        by_type[ex.bias_type].add(ex.target.lower())
    names = list(fractions)
    assignment: dict[tuple[str, str], str] = {}
    for bias_type in sorted(by_type):
        targets = sorted(by_type[bias_type])
        n = len(targets)
        sizes = [max(1, round(n * fractions[name])) for name in names[1:]]
        if n - sum(sizes) < 1:
            raise DataError(
                "split",
                f"bias type {bias_type!r} has {n} target(s); a target-disjoint split into "
                f"{names} needs at least {len(names)} and enough for the fractions",
            )
        random.Random(f"{seed}:{bias_type}").shuffle(targets)
        bounds = [n - sum(sizes)]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        for i, target in enumerate(targets):
            assignment[(bias_type, target)] = names[next(k for k, b in enumerate(bounds) if i < b)]
    parts: dict[str, list[StereoSetExample]] = {name: [] for name in names}
    for ex in examples:
        parts[assignment[(ex.bias_type, ex.target.lower())]].append(ex)
    return parts


def split_by_target(
    examples: list[StereoSetExample], seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.15, 0.25)
) -> StereoSetSplit:
    """Split one file into train / dev / test by target term, stratified by bias type."""
    if len(fractions) != 3:
        raise DataError("split", f"fractions {tuple(fractions)} must be three numbers (train, dev, test)")
    parts = _partition(examples, seed, dict(zip(SPLIT_NAMES, fractions)))
    recipe = {
        "mode": "by_target",
        "seed": seed,
        "fractions": list(fractions),
        "source_fingerprint": _fingerprint(examples),
        "n_source_examples": len(examples),
    }
    return StereoSetSplit(**parts, info=_describe(parts, recipe))


def explicit_split(
    train_examples: list[StereoSetExample],
    eval_examples: list[StereoSetExample],
    seed: int = 0,
    dev_fraction: float = 0.1,
) -> StereoSetSplit:
    """The paper's setup: train on one file, test on another; dev is a target-disjoint slice of the train file."""
    if not 0 < dev_fraction < 1:
        raise DataError("split", f"dev_fraction {dev_fraction} must lie in (0, 1)")
    shared = target_keys(train_examples) & target_keys(eval_examples)
    if shared:  # a test set must be target-disjoint from what trains and chooses (StereoSet's dev and test are)
        raise DataError(
            "split",
            f"the evaluation file shares {len(shared)} target term(s) with the train file "
            f"(e.g. {', '.join(sorted(shared)[:3])}): give files with disjoint targets, or "
            "use data.split.mode=by_target",
        )
    parts = _partition(train_examples, seed, {"train": 1 - dev_fraction, "dev": dev_fraction})
    parts["test"] = list(eval_examples)
    recipe = {
        "mode": "explicit",
        "seed": seed,
        "dev_fraction": dev_fraction,
        "train_fingerprint": _fingerprint(train_examples),
        "eval_fingerprint": _fingerprint(eval_examples),
    }
    return StereoSetSplit(**parts, info=_describe(parts, recipe))


def check_split(split: StereoSetSplit) -> None:
    """Raise if a split is empty for some bias type (nothing to train on or nothing to measure)."""
    for name in SPLIT_NAMES:
        present = {ex.bias_type for ex in split[name]}
        if not split[name]:
            raise DataError("split", f"the {name} split is empty")
        missing = [bt for bt in BIAS_TYPES if bt not in present]
        if missing and name != "test":
            raise DataError("split", f"the {name} split has no examples of bias type(s) {missing}")
