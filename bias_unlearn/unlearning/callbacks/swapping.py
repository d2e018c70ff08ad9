"""Dynamic dataset swapping: a bias type whose dev SS falls below 50 forgets its anti-stereotypes instead."""

from __future__ import annotations

import logging

import lightning as L

from bias_unlearn.data.records import BIAS_TYPES

log = logging.getLogger(__name__)


def swap_decisions(dev_ss: dict[str, float], swapped: set[str]) -> dict[str, bool]:
    """Types whose role should change: below 50 and not swapped -> swap; above 50 and swapped -> swap back.
    At exactly 50 nothing changes."""
    out = {}
    for bias_type in BIAS_TYPES:
        ss = dev_ss.get(bias_type)
        if ss is None:
            continue
        if ss < 50 and bias_type not in swapped:
            out[bias_type] = True
        elif ss > 50 and bias_type in swapped:
            out[bias_type] = False
    return out


class DynamicSwapping(L.Callback):
    """After each dev evaluation, swap (or swap back) the forget and retain sets of each bias type.

    Rank 0's decision is broadcast, so every rank trains on the same roles.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.events: list[dict] = []

    def apply(self, trainer, datamodule, dev_entry: dict, step: int) -> dict[str, bool]:
        if not self.enabled:
            return {}
        decisions = swap_decisions(dev_entry, datamodule.swapped)
        if trainer is not None:
            decisions = trainer.strategy.broadcast(decisions, src=0)
        for bias_type, swapped in decisions.items():
            datamodule.swap(bias_type, swapped)
            event = {"step": step, "bias_type": bias_type, "swapped": swapped, "dev_ss": dev_entry[bias_type]}
            self.events.append(event)
            log.info(
                "step %d: %s %s (dev SS %.2f)",
                step,
                "swap" if swapped else "swap back",
                bias_type,
                dev_entry[bias_type],
            )
        return decisions

    def on_train_start(self, trainer, pl_module) -> None:
        # The step-0 dev score (recorded by the module on fit start) decides the starting roles.
        if pl_module.dev_history and not self.events:
            self.apply(trainer, trainer.datamodule, pl_module.dev_history[0], 0)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not pl_module.dev_history:
            return
        self.apply(trainer, trainer.datamodule, pl_module.dev_history[-1], trainer.global_step)

    def state_dict(self) -> dict:
        return {"events": self.events}

    def load_state_dict(self, state: dict) -> None:
        self.events = list(state.get("events", []))
