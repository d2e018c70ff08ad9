"""Configs saved by earlier versions, read in today's layout, so old run directories still resume and report.

Until 2026-12-05 a method was spread over four places (``loss.*`` with ``loss.adversarial_fraction``,
``train.paired``, ``callbacks.swapping.enabled``) and the callbacks and the FSDP strategy lived at other import
paths. ``upgrade`` moves each value to its key today (``method.*``), names the method from what it trained, and
rewrites moved ``_target_`` strings; a config already in today's layout comes back unchanged. ``absent_value``
says what a key added since meant in a saved config that lacks it (resume and the reports read old runs by it).
"""

from __future__ import annotations

import copy
import functools

from omegaconf import OmegaConf

from bias_unlearn.config.methods import Objective, method_name

MOVED_TARGETS = {
    "bias_unlearn.callbacks.": "bias_unlearn.unlearning.callbacks.",
    "bias_unlearn.strategies.": "bias_unlearn.models.fsdp.",
}
OBJECTIVE_KEYS = (
    "forget",
    "forget_weight",
    "retain_weight",
    "kl_weight",
    "beta",
    "logp_reduction",
    "npo_reduction",
    "retain_reduction",
)


def _targets(tree):
    if isinstance(tree, dict):
        return {key: _targets(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_targets(value) for value in tree]
    if isinstance(tree, str):
        for old, new in MOVED_TARGETS.items():
            if tree.startswith(old):
                return new + tree[len(old) :]
    return tree


def flatten(tree, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty mapping stays a key of its own."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out or ({prefix: {}} if prefix else {})


def upgrade(saved: dict) -> dict:
    """A saved run config (a plain dict) in today's layout."""
    cfg = _targets(copy.deepcopy(saved))
    if "loss" in cfg and "method" not in cfg:  # the layout before conf/method/ declared methods whole
        loss = cfg.pop("loss") or {}
        train, callbacks = cfg.setdefault("train", {}), cfg.setdefault("callbacks", {})
        swapping = callbacks.get("swapping") or {}
        method = {
            "loss": {key: loss[key] for key in OBJECTIVE_KEYS if key in loss},
            "adversarial_fraction": loss.get("adversarial_fraction", 0.0),
            "paired": bool(train.pop("paired", False)),
            "swapping": bool(swapping.pop("enabled", True)),
        }
        train.pop("adversarial_fraction", None)
        try:
            method["name"] = method_name(Objective.from_method(method))
        except (KeyError, TypeError, ValueError):  # a partial config (no objective saved): nothing to name
            method["name"] = "custom"
        cfg["method"] = method
    split = (cfg.get("data") or {}).get("split")
    if isinstance(split, dict):
        split.pop("train_source", None)  # removed: it could only name a copy of the evaluation file
    return cfg


# Keys added after runs were saved whose absence meant another behaviour than today's default: a saved config without
# one ran the behaviour the value names.
ADDED_KEYS = {
    "compute.fused_optimizer": False,
    "train.type_weights": "size",
    "callbacks.adapter_checkpoint.balance": "max_excess",
}
# Keys added later that follow another key of the same config: an old run's value is that key's.
FOLLOWING_KEYS = {"optim.total_steps": "trainer.max_steps"}


@functools.lru_cache(maxsize=1)
def schema_defaults() -> dict:
    """Today's default of every typed training setting: what a key the schema made explicit meant when a saved
    config did not write it (the same behaviour: Lightning's and the callbacks' own defaults)."""
    from bias_unlearn.config.schema import TrainJob

    flat = flatten(OmegaConf.to_container(OmegaConf.structured(TrainJob)))
    return {key: value for key, value in flat.items() if value != "???"}


UNKNOWN = object()  # absent_value's answer for a key whose absence says nothing of the behaviour


def absent_value(key: str, old: dict):
    """What a saved config (flat, dotted) that lacks ``key`` ran with: ADDED_KEYS, FOLLOWING_KEYS, else today's
    schema default; UNKNOWN for a key no schema types (the absence tells nothing)."""
    if key in ADDED_KEYS:
        return ADDED_KEYS[key]
    if key in FOLLOWING_KEYS and FOLLOWING_KEYS[key] in old:
        return old[FOLLOWING_KEYS[key]]
    return schema_defaults().get(key, UNKNOWN)
