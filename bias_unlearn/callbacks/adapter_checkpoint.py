"""Adapter checkpoints in standard PEFT format, with the swap state and dev scores beside them.

``last/`` is replaced atomically after every dev evaluation (a run stopped by Ctrl-C keeps its last complete
checkpoint); ``best/`` holds the adapter whose dev SS was closest to balance (the smallest max_t |SS_t - 50|)
among those whose dev LMS stayed within ``max_lms_drop`` of the model's dev LMS before training.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy

from bias_unlearn.data.records import BIAS_TYPES


def imbalance(entry: dict) -> float:
    return max(abs(entry[bt] - 50) for bt in BIAS_TYPES if bt in entry)


def save_adapter(model, directory: Path, state: dict, state_dict: dict | None = None) -> Path:
    """Write the adapter and ``state.json`` to a temporary folder, then swap it into place."""
    directory = Path(directory)
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


class AdapterCheckpoint(L.Callback):
    def __init__(self, dirpath: str, save_best: bool = True, max_lms_drop: float | None = 2.0):
        self.dirpath = Path(dirpath)
        self.save_best, self.max_lms_drop = save_best, max_lms_drop
        self.best: dict | None = None

    def is_better(self, entry: dict, history: list[dict]) -> bool:
        """Closer to balance than the best so far, and (if a limit is set) LMS not fallen too far."""
        if self.max_lms_drop is not None and history and entry["lms"] < history[0]["lms"] - self.max_lms_drop:
            return False
        return self.best is None or imbalance(entry) < imbalance(self.best)

    def state(self, trainer, pl_module) -> dict:
        swapping = next((cb for cb in trainer.callbacks if hasattr(cb, "events")), None)
        return {"step": trainer.global_step, "dev": pl_module.dev_history[-1] if pl_module.dev_history else None,
                "dev_history": pl_module.dev_history, "swapped": sorted(trainer.datamodule.swapped),
                "swap_events": swapping.events if swapping else []}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not pl_module.dev_history:
            return
        weights = None
        if isinstance(trainer.strategy, FSDPStrategy):
            # Sharded parameters: gather the full state dict (a collective call, so on every rank).
            full = trainer.strategy.lightning_module_state_dict()
            weights = {k[len("model."):]: v for k, v in full.items() if k.startswith("model.")}
        if trainer.is_global_zero:
            state = self.state(trainer, pl_module)
            save_adapter(pl_module.model, self.dirpath / "last", state, weights)
            entry = pl_module.dev_history[-1]
            if self.save_best and self.is_better(entry, pl_module.dev_history):
                self.best = entry
                save_adapter(pl_module.model, self.dirpath / "best", state, weights)
        trainer.strategy.barrier()
