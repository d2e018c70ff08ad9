"""Configs saved by earlier versions, read in today's layout, so old run directories still resume and report.

Until 2026-12-05 a method was spread over four places (``loss.*`` with ``loss.adversarial_fraction``,
``train.paired``, ``callbacks.swapping.enabled``) and the callbacks and the FSDP strategy lived at other import
paths. ``upgrade`` moves each value to its key today (``method.*``), names the method from what it trained, and
rewrites moved ``_target_`` strings; a config already in today's layout comes back unchanged.
"""

from __future__ import annotations

import copy

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
