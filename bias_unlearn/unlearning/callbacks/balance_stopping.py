"""Early stopping when every bias type's dev SS is balanced (the paper: within ``threshold`` of 50; see balance.py
for the resolution rule that keeps it reachable for types with few dev examples)."""

from __future__ import annotations

import logging

import lightning as L

from bias_unlearn.unlearning.balance import is_balanced

log = logging.getLogger(__name__)


class BalancedStereotypeStopping(L.Callback):
    def __init__(self, threshold: float = 2.0, enabled: bool = True):
        self.threshold, self.enabled = float(threshold), enabled  # (0, 50): config/schema.py checks it
        self.stopped_at: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.enabled or trainer.sanity_checking or not pl_module.dev_history:
            return
        entry = pl_module.dev_history[-1]
        stop = trainer.strategy.broadcast(is_balanced(entry, self.threshold, pl_module.dev_resolution), src=0)
        if stop:
            self.stopped_at = trainer.global_step
            trainer.should_stop = True
            log.info(
                "step %d: every bias type's dev SS is balanced (within %.1f of 50 or its resolution); stopping",
                trainer.global_step,
                self.threshold,
            )

    def state_dict(self) -> dict:
        return {"stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict) -> None:
        self.stopped_at = state.get("stopped_at")
