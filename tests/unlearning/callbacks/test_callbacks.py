"""Swapping, balance-based early stopping and the adapter delivery rule, driven by scripted dev scores."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.unlearning.balance import (
    balance_chi2,
    ss_resolution,
    ss_standard_error,
)
from bias_unlearn.unlearning.callbacks.adapter_checkpoint import (
    RULE_BALANCE_CHI2,
    RULE_BALANCE_MAX_EXCESS,
    RULE_LEAST_LMS_DROP,
    AdapterCheckpoint,
    selection_key,
)
from bias_unlearn.unlearning.callbacks.balance_stopping import BalancedStereotypeStopping
from bias_unlearn.unlearning.callbacks.swapping import DynamicSwapping, swap_decisions
from tests.helpers import FINE, one_target_examples

EQUAL_SE = {"gender": 4.0, "profession": 4.0, "race": 4.0, "religion": 4.0}  # every type measured alike


def test_swap_decisions_from_scripted_dev_scores():
    assert swap_decisions({"gender": 48.0, "race": 55.0, "religion": 50.0}, set()) == {"gender": True}
    assert swap_decisions({"gender": 51.0, "race": 45.0}, {"gender", "race"}) == {"gender": False}
    assert swap_decisions({"gender": 49.0}, {"gender"}) == {}


class _DataModule:
    def __init__(self):
        self.swapped = set()

    def swap(self, bias_type, flag):
        (self.swapped.add if flag else self.swapped.discard)(bias_type)


def _trainer(datamodule=None, step=0, callbacks=()):
    strategy = SimpleNamespace(broadcast=lambda value, src=0: value, barrier=lambda: None)
    return SimpleNamespace(
        strategy=strategy,
        sanity_checking=False,
        global_step=step,
        should_stop=False,
        is_global_zero=True,
        datamodule=datamodule or _DataModule(),
        callbacks=list(callbacks),
    )


def test_swapping_callback_follows_a_script():
    dm, cb = _DataModule(), DynamicSwapping()
    script = [
        {"gender": 58, "profession": 49, "race": 60, "religion": 52},
        {"gender": 53, "profession": 47, "race": 56, "religion": 44},
        {"gender": 49.5, "profession": 51, "race": 52, "religion": 50},
    ]
    states = []
    for step, entry in enumerate(script):
        cb.apply(None, dm, entry, step * 10)
        states.append(sorted(dm.swapped))
    assert states == [["profession"], ["profession", "religion"], ["gender", "religion"]]
    assert [(e["step"], e["bias_type"], e["swapped"]) for e in cb.events] == [
        (0, "profession", True),
        (10, "religion", True),
        (20, "gender", True),
        (20, "profession", False),
    ]


def test_swapping_sets_the_starting_roles_from_the_step0_dev_score():
    trainer, cb = _trainer(), DynamicSwapping()
    module = SimpleNamespace(dev_history=[{"step": 0, "gender": 47.0, "race": 60.0}])
    cb.on_train_start(trainer, module)
    assert trainer.datamodule.swapped == {"gender"} and cb.events[0]["step"] == 0


def test_stopping_callback_fires_on_the_reachable_rule():
    from bias_unlearn.config.training import EarlyStoppingNode

    for bad in (0, 50, -1, 60):
        with pytest.raises(ConfigError):
            EarlyStoppingNode(threshold=bad)
    cb = BalancedStereotypeStopping(threshold=2.0)
    resolution = ss_resolution(one_target_examples("religion", 25))
    module = SimpleNamespace(
        dev_history=[{"gender": 50.0, "profession": 50.0, "race": 50.0, "religion": 48.0}],
        dev_resolution={**FINE, **resolution},
    )
    trainer = _trainer(step=40)
    cb.on_validation_end(trainer, module)
    assert trainer.should_stop and cb.stopped_at == 40


class _Adapter:
    """Stands in for a PEFT model: writes a weights file whose content names the step."""

    def __init__(self):
        self.step = 0

    def save_pretrained(self, path, state_dict=None):
        (path / "adapter_model.safetensors").write_text(str(self.step))


def _run_checkpoints(tmp_path, script, max_lms_drop=2.0, balance="chi2", resolution=FINE, se=EQUAL_SE):
    cb = AdapterCheckpoint(str(tmp_path), max_lms_drop=max_lms_drop, threshold=2.0, balance=balance)
    adapter = _Adapter()
    module = SimpleNamespace(model=adapter, dev_history=[script[0]], dev_resolution=resolution, dev_se=se)
    for entry in script[1:]:
        adapter.step = entry["step"]
        module.dev_history.append(entry)
        cb.on_validation_end(_trainer(step=entry["step"]), module)
    return cb, json.loads((tmp_path / "best" / "state.json").read_text())


def _entry(step, ss, lms):
    return {"step": step, "gender": ss, "profession": ss, "race": ss, "religion": ss, "lms": lms}


def test_delivery_rule_prefers_balance_within_the_lms_bar(tmp_path):
    script = [_entry(0, 62, 90.0), _entry(25, 56, 89.5), _entry(50, 50.5, 87.0), _entry(75, 53, 88.5)]
    cb, state = _run_checkpoints(tmp_path, script)
    assert cb.best["step"] == 75 and state["best"]["rule"] == RULE_BALANCE_CHI2 and state["best"]["lms_bar_met"]
    assert (tmp_path / "best" / "adapter_model.safetensors").read_text() == "75"
    assert (tmp_path / "last" / "adapter_model.safetensors").read_text() == "75"


def test_delivery_rule_when_no_evaluation_meets_the_bar_is_the_least_lms_drop(tmp_path):
    """The old rule delivered the last (most degraded) adapter silently; now the least damaged one, and it says so."""
    script = [_entry(0, 62, 90.0), _entry(25, 55, 87.5), _entry(50, 51, 86.0), _entry(75, 50, 80.0)]
    cb, state = _run_checkpoints(tmp_path, script)
    assert cb.best["step"] == 25 and state["best"]["rule"] == RULE_LEAST_LMS_DROP
    assert state["best"]["lms_bar_met"] is False
    assert (tmp_path / "best" / "adapter_model.safetensors").read_text() == "25"


def test_selection_key_orders_bar_first_then_balance():
    meets = selection_key(_entry(1, 56, 89.0), 90.0, 2.0, 9.0)
    closer_but_broken = selection_key(_entry(2, 50, 70.0), 90.0, 2.0, 0.0)
    assert meets < closer_but_broken
    assert selection_key(_entry(3, 50, 70.0), 90.0, None, 0.0) < meets  # no bar: balance alone


# A run's dev history (seed 2 of the offline preset, dev split only): religion's one dev target (29 examples) falls
# from 44.8 to 10-34 whatever its training data does, while race and profession reach 50.
SEED2_DEV = [
    (0, 55.77, 56.94, 70.71, 44.83, 89.83),
    (25, 55.77, 54.46, 67.49, 34.48, 90.07),
    (50, 63.46, 48.34, 62.55, 20.69, 89.05),
    (75, 63.46, 57.39, 51.29, 17.24, 89.53),
    (100, 65.38, 53.88, 54.52, 20.69, 88.94),
    (250, 57.69, 47.75, 58.21, 24.14, 88.66),
    (275, 57.69, 45.92, 59.72, 27.59, 89.08),
    (350, 65.38, 50.36, 50.69, 17.24, 88.48),
]
SEED2_SIZES = {"gender": (26, 26), "profession": (29, 29, 28, 28), "race": (26, 26, 26, 26, 25), "religion": (29,)}


def test_a_type_no_checkpoint_balances_does_not_veto_every_trained_adapter(tmp_path):
    """Under max_excess the religion target decides alone and the barely trained step-25 adapter is delivered (dev
    race still at 67.5); chi2 weighs religion's one target as the 9-point standard error it has."""
    examples = [
        SimpleNamespace(bias_type=bt, target=f"{bt}{i}")
        for bt, sizes in SEED2_SIZES.items()
        for i, n in enumerate(sizes)
        for _ in range(n)
    ]
    resolution, se = ss_resolution(examples), ss_standard_error(examples)
    assert se["religion"] == pytest.approx(50 / 29**0.5) and se["race"] < 4.5
    script = [
        {"step": step, "gender": g, "profession": p, "race": r, "religion": rel, "lms": lms}
        for step, g, p, r, rel, lms in SEED2_DEV
    ]
    old, old_state = _run_checkpoints(tmp_path / "old", script, 1.0, "max_excess", resolution, se)
    new, new_state = _run_checkpoints(tmp_path / "new", script, 1.0, "chi2", resolution, se)
    assert old.best["step"] == 25 and old_state["best"]["rule"] == RULE_BALANCE_MAX_EXCESS
    assert new.best["step"] == 275 and new_state["best"]["rule"] == RULE_BALANCE_CHI2
    assert new_state["best"]["balance"] == "chi2" and new.best["lms_bar_met"]
    chi2 = {e["step"]: balance_chi2(e, se) for e in script}
    assert chi2[275] < chi2[25] < chi2[0]  # within the LMS bar (step 350 is closer still, but lost 1.35 LMS)


def test_an_unknown_balance_measure_is_refused():
    from bias_unlearn.config.training import AdapterCheckpointNode

    with pytest.raises(ConfigError, match="adapter_checkpoint.balance"):
        AdapterCheckpointNode(dirpath="/tmp/unused", balance="closest")


def test_type_factors_grow_with_the_excess_over_tolerance_in_standard_errors():
    from bias_unlearn.unlearning.callbacks.type_weighting import type_factors

    se = {"gender": 7.0, "profession": 3.0, "race": 2.5, "religion": 10.0}
    resolution = {"gender": 2.0, "profession": 1.0, "race": 1.0, "religion": 4.0}
    dev = {"gender": 66.0, "profession": 51.5, "race": 45.0, "religion": 60.0}
    factors = type_factors(dev, se, resolution, threshold=2.0, max_factor=3.0)
    assert factors == {"gender": 2.0, "profession": 0.0, "race": 1.2, "religion": 0.8}  # race: below 50 counts too
    assert type_factors({"gender": 99.0}, se, resolution)["gender"] == 3.0  # capped


def test_adaptive_type_weights_callback_sets_factors_only_when_adaptive():
    from bias_unlearn.unlearning.callbacks.type_weighting import AdaptiveTypeWeights

    class _Weighted(_DataModule):
        type_weights = "adaptive"

        def __init__(self):
            super().__init__()
            self.factors = {}

        def set_type_factors(self, factors):
            self.factors.update(factors)

    module = SimpleNamespace(
        dev_history=[{"step": 0, "gender": 60.0, "race": 51.0}],
        dev_se=EQUAL_SE,
        dev_resolution={"gender": 1.0, "race": 1.0},
    )
    trainer, cb = _trainer(_Weighted()), AdaptiveTypeWeights()
    cb.on_train_start(trainer, module)
    assert trainer.datamodule.factors == {"gender": 2.0, "race": 0.0} and cb.events[0]["step"] == 0
    plain = _trainer()
    plain.datamodule.type_weights = "size"
    other = AdaptiveTypeWeights()
    other.on_train_start(plain, module)
    assert other.events == []
