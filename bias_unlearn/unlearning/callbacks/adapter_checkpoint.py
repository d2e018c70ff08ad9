"""Adapter checkpoints in standard PEFT format, with the swap state and dev scores beside them.

After every dev evaluation ``last/`` is replaced atomically (a run stopped by Ctrl-C keeps its last complete
checkpoint), and ``best/`` holds the adapter chosen by the delivery rule (``selection_key``):
1. among dev evaluations whose dev LMS fell at most ``max_lms_drop`` below the base model's (the step-0 entry),
   the one closest to balance (``balance``): by default ``chi2``, the smallest sum over types of
   ((SS_t - 50) / se_t)^2, each type in units of its dev standard error (balance.py); or ``max_excess`` (the rule
   until 2026-12-04), the smallest excess of the least balanced type over the stopping tolerance; ties go to the
   smaller max_t |SS_t - 50|;
2. if no evaluation met that LMS bar, the one whose dev LMS fell least (the least damaged adapter).
``state.json`` says which rule chose it and whether the bar was met; the run report repeats it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from bias_unlearn.io import atomic_dir, write_json
from bias_unlearn.models.distributed import policy_state_dict
from bias_unlearn.unlearning.balance import balance_chi2, excess_imbalance, imbalance
from bias_unlearn.unlearning.callbacks.swapping import DynamicSwapping

RULE_BALANCE_CHI2 = (
    "closest to balance among dev evaluations within the LMS bar: the smallest sum over bias types of "
    "((dev SS - 50) / its dev standard error)^2"
)
RULE_BALANCE_MAX_EXCESS = (
    "closest to balance among dev evaluations within the LMS bar: the smallest excess of the "
    "least balanced type over the stopping tolerance"
)
RULES = {"chi2": RULE_BALANCE_CHI2, "max_excess": RULE_BALANCE_MAX_EXCESS}  # measure -> the rule it names
RULE_LEAST_LMS_DROP = "no dev evaluation met the LMS bar: the one whose dev LMS fell least"
RULE_LAST = "the last dev evaluation (eval.adapter=last)"


def meets_lms_bar(entry: dict, base_lms: float, max_lms_drop: float | None) -> bool:
    return max_lms_drop is None or entry["lms"] >= base_lms - max_lms_drop


def balance_distance(entry: dict, balance: str, threshold: float, resolution: dict, standard_error: dict) -> float:
    """How far a dev evaluation lies from balance under the ``balance`` measure (0: balanced)."""
    if balance == "chi2":
        return balance_chi2(entry, standard_error)
    return excess_imbalance(entry, threshold, resolution)


def selection_key(entry: dict, base_lms: float, max_lms_drop: float | None, distance: float) -> tuple:
    """Smaller is better: any entry that meets the LMS bar beats every entry that does not; among those that do,
    the one closest to balance (``distance``: ``balance_distance``), among those that do not the least LMS drop;
    ties go to the smaller max_t |SS_t - 50|."""
    if meets_lms_bar(entry, base_lms, max_lms_drop):
        return 0, distance, imbalance(entry)
    return 1, -entry["lms"], imbalance(entry)


def save_adapter(model, directory: Path, state: dict, state_dict: dict | None = None) -> Path:
    """Write the adapter and ``state.json`` into a temporary folder, then swap it into place."""
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        write_json(tmp / "state.json", state)
    return Path(directory)


class AdapterCheckpoint(L.Callback):
    def __init__(
        self,
        dirpath: str,
        save_best: bool = True,
        max_lms_drop: float | None = 1.0,
        threshold: float = 2.0,
        balance: str = "chi2",
    ):
        self.dirpath = Path(dirpath)
        self.save_best, self.max_lms_drop, self.threshold = save_best, max_lms_drop, float(threshold)
        self.balance = balance  # chi2 | max_excess (config/schema.py checks it)
        self.best: dict | None = None  # the chosen dev entry, with its key and rule

    def selection(self, entry: dict, history: list[dict], module) -> dict:
        """The entry's place under the delivery rule (history[0] is the base model's step-0 dev score; ``module``
        gives the dev split's per-type resolution and standard error)."""
        base_lms = history[0]["lms"]
        met = meets_lms_bar(entry, base_lms, self.max_lms_drop)
        distance = balance_distance(entry, self.balance, self.threshold, module.dev_resolution, module.dev_se)
        return {
            "step": entry["step"],
            "key": list(selection_key(entry, base_lms, self.max_lms_drop, distance)),
            "rule": RULES[self.balance] if met else RULE_LEAST_LMS_DROP,
            "lms_bar_met": met,
            "max_lms_drop": self.max_lms_drop,
            "balance": self.balance,
            "dev": entry,
        }

    def is_better(self, candidate: dict) -> bool:
        return self.best is None or candidate["key"] < self.best["key"]

    def state(self, trainer, pl_module) -> dict:
        swapping = next((cb for cb in trainer.callbacks if isinstance(cb, DynamicSwapping)), None)
        return {
            "step": trainer.global_step,
            "dev": pl_module.dev_history[-1] if pl_module.dev_history else None,
            "dev_history": pl_module.dev_history,
            "swapped": sorted(trainer.datamodule.swapped),
            "swap_events": swapping.events if swapping else [],
            "best": self.best,
        }

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not pl_module.dev_history:
            return
        weights = policy_state_dict(trainer)  # every rank: under FSDP it gathers the shards
        if trainer.is_global_zero:
            candidate = self.selection(pl_module.dev_history[-1], pl_module.dev_history, pl_module)
            better = self.save_best and self.is_better(candidate)
            if better:
                self.best = candidate
            state = self.state(trainer, pl_module)
            save_adapter(pl_module.model, self.dirpath / "last", state, weights)
            if better:
                save_adapter(pl_module.model, self.dirpath / "best", state, weights)
        trainer.strategy.barrier()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")
