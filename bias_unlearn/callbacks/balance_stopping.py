"""Early stopping when every bias type's dev SS lies within ``threshold`` of 50 (the paper's criterion)."""
from __future__ import annotations

import logging

import lightning as L

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.errors import ConfigError

log = logging.getLogger(__name__)


def is_balanced(dev_ss: dict[str, float], threshold: float) -> bool:
    values = [dev_ss[bt] for bt in BIAS_TYPES if bt in dev_ss]
    return bool(values) and all(abs(v - 50) < threshold for v in values)


class BalancedStereotypeStopping(L.Callback):
    def __init__(self, threshold: float = 2.0, enabled: bool = True):
        if not 0 < threshold < 50:
            raise ConfigError(f"early-stopping threshold must lie in (0, 50), got {threshold}")
        self.threshold, self.enabled = threshold, enabled
        self.stopped_at: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.enabled or trainer.sanity_checking or not pl_module.dev_history:
            return
        entry = pl_module.dev_history[-1]
        stop = trainer.strategy.broadcast(is_balanced(entry, self.threshold), src=0)
        if stop:
            self.stopped_at = trainer.global_step
            trainer.should_stop = True
            log.info("step %d: every bias type's dev SS is within %.1f of 50; stopping", trainer.global_step,
                     self.threshold)
