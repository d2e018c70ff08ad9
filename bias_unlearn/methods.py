"""Which method a run trained, named from what it trained, never from a label.

Methods are defined once, in config: ``conf/loss/`` holds each objective (BiasUnlearn's ``full`` and the
ablations and baselines that each change one thing of it) and ``conf/method/`` adds how the data is paired and
whether types swap. Because a command line can mix them (``method=no_kl loss=full``), every report names the
method with ``method_name``, from the effective weights, pairing and swapping.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Objective:
    """What a run optimises: the parts of the config that decide the method."""

    forget: str  # npo | ga | ce | dpo
    forget_weight: float
    retain_weight: float
    kl_weight: float
    adversarial_fraction: float
    paired: bool
    swapping: bool

    @classmethod
    def from_config(cls, cfg) -> "Objective":
        return cls(str(cfg.loss.forget), float(cfg.loss.forget_weight), float(cfg.loss.retain_weight),
                   float(cfg.loss.kl_weight), float(cfg.loss.adversarial_fraction), bool(cfg.train.get("paired", False)),
                   bool(cfg.callbacks.swapping.enabled))

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
    missing = [name for name, absent in (("no_retain", obj.retain_weight == 0), ("no_kl", obj.kl_weight == 0),
                                         ("no_adv", obj.adversarial_fraction == 0), ("no_swap", not obj.swapping))
               if absent]
    return "+".join(missing) if missing else "bias_unlearn"
