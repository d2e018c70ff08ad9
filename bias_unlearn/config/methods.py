"""Which method a run trained, named from what it trained, never from a label.

Each method is declared whole in ``conf/method/<name>.yaml`` (its objective, pairing, swapping and adversarial slice;
the ablations and baselines inherit ``bias_unlearn``). A command line can still change any part of it
(``method=bias_unlearn method.loss.kl_weight=0``), so every report names the method with ``method_name``, from the
effective settings, and the training job says so where that differs from the declared ``method.name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Objective:
    """What a run optimises: the parts of the method that decide its name."""

    forget: str  # npo | ga | ce | dpo
    forget_weight: float
    retain_weight: float
    kl_weight: float
    adversarial_fraction: float
    paired: bool
    swapping: bool

    @classmethod
    def from_method(cls, method) -> Objective:
        """From a method's settings: a ``MethodConfig``, its config node, or a plain dict of the same layout."""
        get = (lambda key: method[key]) if isinstance(method, Mapping) else (lambda key: getattr(method, key))
        loss = get("loss")
        lget = (lambda key: loss[key]) if isinstance(loss, Mapping) else (lambda key: getattr(loss, key))
        return cls(
            str(lget("forget")),
            float(lget("forget_weight")),
            float(lget("retain_weight")),
            float(lget("kl_weight")),
            float(get("adversarial_fraction")),
            bool(get("paired")),
            bool(get("swapping")),
        )

    @classmethod
    def from_config(cls, cfg) -> Objective:
        return cls.from_method(cfg["method"] if isinstance(cfg, Mapping) else cfg.method)

    def as_dict(self) -> dict:
        return asdict(self)


def method_name(obj: Objective) -> str:
    """``bias_unlearn``, one of its ablations (``no_kl``, ``no_retain``, ``no_adv``, ``no_swap``, joined with ``+``
    when several apply), a baseline (``cda``, ``sft``, ``dpo``, ``ga``, ``npo``), or ``custom``."""
    forgets = obj.forget_weight > 0
    if obj.forget == "dpo" and forgets and obj.paired:
        return "dpo" if obj.retain_weight == obj.kl_weight == 0 and not obj.swapping else "custom"
    if obj.forget == "ce" and forgets and obj.paired:
        return "sft" if obj.kl_weight == 0 and not obj.swapping and obj.adversarial_fraction == 0 else "custom"
    if obj.paired:
        return "custom"
    if not forgets:
        plain = obj.retain_weight > 0 and obj.kl_weight == 0 and not obj.swapping and obj.adversarial_fraction == 0
        return "cda" if plain else "custom"
    forget_only = obj.retain_weight == 0 and obj.kl_weight == 0 and not obj.swapping and obj.adversarial_fraction == 0
    if obj.forget == "ga":
        return "ga" if forget_only else "custom"
    if obj.forget != "npo":
        return "custom"
    if forget_only:
        return "npo"
    missing = [
        name
        for name, absent in (
            ("no_retain", obj.retain_weight == 0),
            ("no_kl", obj.kl_weight == 0),
            ("no_adv", obj.adversarial_fraction == 0),
            ("no_swap", not obj.swapping),
        )
        if absent
    ]
    return "+".join(missing) if missing else "bias_unlearn"
