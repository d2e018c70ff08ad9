"""A NaN loss stops the run at its step, the adapter keeps finite weights, the report and the sweep say so."""

import math
from pathlib import Path

import pytest
import torch

from bias_unlearn.config.errors import TrainingDiverged
from bias_unlearn.jobs.train import run_training
from bias_unlearn.reports.run_report import RunReport
from bias_unlearn.reports.runs import read_run
from bias_unlearn.unlearning.callbacks.non_finite import first_non_finite
from bias_unlearn.unlearning.module import BiasUnlearnModule


def test_first_non_finite_names_the_term_or_the_gradient():
    param = torch.nn.Parameter(torch.zeros(2))
    assert first_non_finite({"forget": torch.tensor(1.0), "total": torch.tensor(2.0)}, [("w", param)]) is None
    assert first_non_finite({"forget": torch.tensor(1.0), "kl": torch.tensor(math.inf)}, [("w", param)]) == "kl"
    param.grad = torch.tensor([0.0, math.nan])
    assert first_non_finite({"total": torch.tensor(1.0)}, [("w", param)]) == "grad:w"


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_adapter(cfg_train, monkeypatch):
    compute = BiasUnlearnModule.compute_losses

    def poisoned(self, chunk):  # the retain term turns NaN from step 3 on
        terms = compute(self, chunk)
        if self.global_step >= 3:
            terms["retain"] = terms["retain"] * math.nan
            terms["total"] = terms["total"] + terms["retain"]
        return terms

    monkeypatch.setattr(BiasUnlearnModule, "compute_losses", poisoned)
    cfg = cfg_train("trainer.max_steps=8", "eval.generation.prompts=[]")
    with pytest.raises(TrainingDiverged, match="step 3 .*non-finite retain"):
        run_training(cfg)
    out = Path(cfg.paths.output_dir)
    report = RunReport.load(out / "report.json")
    assert report.summary.diverged == {"step": 3, "term": "retain"} and report.summary.steps == 4
    assert "Diverged at step 3" in (out / "report.md").read_text()
    from safetensors.torch import load_file

    for directory in (out / "adapter", out / "checkpoints" / "last"):
        weights = load_file(directory / "adapter_model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values())
    assert read_run(out).status == "failed: diverged at step 3 (retain)"
