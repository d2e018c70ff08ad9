"""Adaptive per-type draw weights (``train.type_weights=adaptive``): after each dev evaluation every bias type's share
of the forget / retain draws is its size times a factor set from how far its dev SS lies from balance, in units of
how precisely dev measures it. A type far from 50 gets more draws, a balanced type none (a per-type stop: its
streams pause while the others continue), and a type that crosses 50 has already been swapped (swapping.py), so
the same factor pulls it back. Rank 0's factors are broadcast, so every rank draws alike."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning as L

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.unlearning.balance import tolerance

log = logging.getLogger(__name__)


def type_factors(
    dev_ss: Mapping[str, float],
    standard_error: Mapping[str, float],
    resolution: Mapping[str, float],
    threshold: float = 2.0,
    max_factor: float = 3.0,
) -> dict[str, float]:
    """Per bias type: min(max_factor, excess / se), where excess is how far its dev SS lies beyond its balance
    tolerance (balance.py) and se its dev standard error. 0 for a balanced type."""
    out = {}
    for bt in BIAS_TYPES:
        if bt not in dev_ss:
            continue
        excess = max(0.0, abs(dev_ss[bt] - 50) - tolerance(threshold, resolution.get(bt)))
        out[bt] = round(min(max_factor, excess / standard_error[bt]), 4)
    return out


class AdaptiveTypeWeights(L.Callback):
    """Sets the datamodule's type factors from the step-0 dev score and after every dev evaluation (only when
    ``train.type_weights=adaptive``); ``events`` keeps every setting for the report."""

    def __init__(self, threshold: float = 2.0, max_factor: float = 3.0):
        if not max_factor > 0:
            raise ValueError(f"max_factor must be positive, got {max_factor}")
        self.threshold, self.max_factor = float(threshold), float(max_factor)
        self.events: list[dict] = []

    def apply(self, trainer, pl_module, step: int) -> None:
        datamodule = trainer.datamodule
        if getattr(datamodule, "type_weights", None) != "adaptive":
            return
        factors = type_factors(
            pl_module.dev_history[-1], pl_module.dev_se, pl_module.dev_resolution, self.threshold, self.max_factor
        )
        factors = trainer.strategy.broadcast(factors, src=0)
        datamodule.set_type_factors(factors)
        self.events.append({"step": step, "factors": factors})
        log.info("step %d: type draw factors %s", step, ", ".join(f"{bt} {f:.2f}" for bt, f in factors.items()))

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.dev_history and not self.events:
            self.apply(trainer, pl_module, 0)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not pl_module.dev_history:
            return
        self.apply(trainer, pl_module, trainer.global_step)

    def state_dict(self) -> dict:
        return {"events": self.events}

    def load_state_dict(self, state: dict) -> None:
        self.events = list(state.get("events", []))
