"""The resume checkpoint (resume.py): written after every dev evaluation, once the other callbacks have acted on it
(swaps, stopping, the delivered adapter), into a temporary file then renamed, so a kill at any moment leaves the
previous checkpoint or the new one, never half of one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L

from bias_unlearn.unlearning.resume import write_digest

log = logging.getLogger(__name__)


class ResumeCheckpoint(L.Callback):
    def __init__(self, dirpath: str, enabled: bool = True):
        self.path = Path(dirpath) / "resume.ckpt"
        self.enabled = enabled
        self.saved_step: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        partial = self.path.with_name(self.path.name + ".part")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(
            partial, weights_only=False
        )  # every rank takes part (sharded states are gathered); rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)
            write_digest(self.path)
        trainer.strategy.barrier()
        self.saved_step = trainer.global_step

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.enabled and trainer.is_global_zero:
            where = (
                f"the checkpoint of step {self.saved_step} ({self.path})"
                if self.saved_step is not None
                else "no checkpoint yet (the run restarts from step 0)"
            )
            log.warning(
                "interrupted at step %d (%s); to continue: python train.py <the same overrides> resume=%s",
                trainer.global_step,
                where,
                self.path.parent.parent,
            )
