"""Resume after a kill (resume.py): a tiny run killed between dev evaluations, or halfway through writing a
checkpoint, or stopped by SIGTERM, then resumed, ends exactly as the uninterrupted run: swap events, dev history,
delivered adapter weights and report numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.jobs.train import run_training
from bias_unlearn.unlearning.resume import config_differences
from tests.helpers import ROOT, compose_config, tiny_run_overrides

# Dev evaluations every 3 steps; a large learning rate so the tiny model's dev SS crosses 50 and types swap.
RUN = ["trainer.max_steps=12", "trainer.val_check_interval=3", "model.lr=0.05", "eval.generation.prompts=[]"]


def run(out: Path, model_dir: Path, data: Path, at: str = "none", *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "tests.helpers.interrupted_run",
        "--at",
        at,
        *tiny_run_overrides(out, model_dir, data),
        *RUN,
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def outcome(run_dir: Path) -> tuple[dict, dict]:
    report = json.loads((run_dir / "report.json").read_text())
    for key in ("adapter", "adapter_from", "train_seconds", "wall_seconds"):  # where and how long, not what
        report["summary"].pop(key)
    return report, load_file(run_dir / "adapter" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, stereoset_jsonl):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = run(out, tiny_model_dir, stereoset_jsonl)
    assert done.returncode == 0, done.stderr[-2000:]
    return outcome(out)


@pytest.mark.parametrize("at", ["step:7", "save:3", "term:5"])
def test_resumed_run_equals_the_uninterrupted_run(at, tmp_path, tiny_model_dir, stereoset_jsonl, uninterrupted):
    out = tmp_path / "run"
    killed = run(out, tiny_model_dir, stereoset_jsonl, at)
    assert killed.returncode == {"step": -9, "save": -9, "term": 143}[at.split(":")[0]], killed.stderr[-2000:]
    assert not (out / "report.json").exists()
    checkpoint = out / "checkpoints" / "resume.ckpt"
    assert checkpoint.exists()  # the previous checkpoint survives a kill during the next one's write
    assert torch.load(checkpoint, weights_only=True)["global_step"] in (3, 6)
    if at.startswith("term"):
        assert "resume=" in killed.stderr  # the log says how to continue
    resumed = run(tmp_path / "elsewhere", tiny_model_dir, stereoset_jsonl, "none", f"resume={out}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report, weights = outcome(out)  # the resumed run writes into the run it continues
    expected_report, expected_weights = uninterrupted
    assert report["summary"]["swap_events"], "the run should swap at least once for this test to mean something"
    assert report["summary"]["swap_events"] == expected_report["summary"]["swap_events"]
    assert report["summary"]["dev_history"] == expected_report["summary"]["dev_history"]
    assert report == expected_report
    assert weights.keys() == expected_weights.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], expected_weights[name])
    assert (out / "logs" / "resumed_1" / "metrics.csv").exists()


ADAPTIVE = ["train.type_weights=adaptive", "train.dev_kinds=[intrasentence,intersentence]"]


def test_a_resumed_run_with_adaptive_type_weights_equals_the_uninterrupted_run(
    tmp_path, tiny_model_dir, stereoset_jsonl
):
    whole = run(tmp_path / "whole", tiny_model_dir, stereoset_jsonl, "none", *ADAPTIVE)
    assert whole.returncode == 0, whole.stderr[-2000:]
    expected_report, expected_weights = outcome(tmp_path / "whole")
    events = expected_report["summary"]["type_weight_events"]
    assert events and events[0]["step"] == 0 and len({str(e["factors"]) for e in events}) > 1  # factors changed
    out = tmp_path / "run"
    assert run(out, tiny_model_dir, stereoset_jsonl, "step:7", *ADAPTIVE).returncode == -9
    resumed = run(tmp_path / "elsewhere", tiny_model_dir, stereoset_jsonl, "none", *ADAPTIVE, f"resume={out}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report, weights = outcome(out)
    assert report == expected_report
    for name in weights:
        torch.testing.assert_close(weights[name], expected_weights[name])


def test_resume_refuses_a_different_configuration(tmp_path, tiny_model_dir, stereoset_jsonl):
    out = tmp_path / "run"
    base = [*tiny_run_overrides(out, tiny_model_dir, stereoset_jsonl), "trainer.max_steps=2", "eval.after=false"]
    run_training(compose_config("train", *base))
    with pytest.raises(ConfigError, match=r"loss.beta \(0.1 -> 0.2\).*trainer.max_steps"):
        run_training(compose_config("train", *base, f"resume={out}", "method.loss.beta=0.2", "trainer.max_steps=3"))
    # what only changes where it writes or how it shows progress is not a difference
    run_training(
        compose_config(
            "train",
            *base,
            f"resume={out}",
            "callbacks.progress_bar.refresh_rate=5",
            f"paths.output_dir={tmp_path / 'other'}",
            "threads=1",
        )
    )


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_resume_refuses_what_is_not_a_run(make, tmp_path, cfg_train):
    target = tmp_path / "target"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("not a run")
    with pytest.raises(ConfigError, match="not a run directory"):
        run_training(cfg_train(f"resume={target}"))


def test_config_differences_ignore_paths_and_progress():
    saved = {
        "seed": 0,
        "paths": {"output_dir": "a"},
        "method": {"loss": {"beta": 0.1}},
        "callbacks": {"progress_bar": {"r": 1}},
    }
    current = {
        "seed": 1,
        "paths": {"output_dir": "b"},
        "method": {"loss": {"beta": 0.1}},
        "callbacks": {"progress_bar": {"r": 0}},
        "train": {"kl_batch": 4},
    }
    assert config_differences(saved, current) == ["seed", "train.kl_batch"]


def test_a_key_added_after_a_run_was_saved_reads_as_the_old_behaviour():
    """A run saved before compute.fused_optimizer existed ran torch's loop: resuming it with the switch off is
    the same configuration, with it on is not."""
    saved = {"seed": 0, "compute": {"fused_lora": True}}
    off = {"seed": 0, "compute": {"fused_lora": True, "fused_optimizer": False}}
    assert config_differences(saved, off) == []
    assert config_differences(saved, {**off, "compute": {"fused_lora": True, "fused_optimizer": True}}) == [
        "compute.fused_optimizer"
    ]


def test_a_run_saved_before_the_chi2_delivery_rule_resumes_only_under_its_own_rule():
    saved = {"seed": 0, "callbacks": {"adapter_checkpoint": {"max_lms_drop": 1.0}}}
    own = {"seed": 0, "callbacks": {"adapter_checkpoint": {"max_lms_drop": 1.0, "balance": "max_excess"}}}
    assert config_differences(saved, own) == []
    new = {"seed": 0, "callbacks": {"adapter_checkpoint": {"max_lms_drop": 1.0, "balance": "chi2"}}}
    assert config_differences(saved, new) == ["callbacks.adapter_checkpoint.balance"]


def test_a_run_saved_before_adaptive_weighting_resumes_with_the_inert_callback_but_not_as_adaptive():
    """The type-weighting callback acts only under train.type_weights=adaptive; an old run ran "size"."""
    node = {"_target_": "bias_unlearn.unlearning.callbacks.AdaptiveTypeWeights", "max_factor": 3.0, "threshold": 2.0}
    saved = {"seed": 0, "callbacks": {"swapping": {"threshold": 50.0}}}
    today = {"seed": 0, "train": {"type_weights": "size"}, "callbacks": {"swapping": {"threshold": 50.0}}}
    today["callbacks"]["type_weighting"] = node
    assert config_differences(saved, today) == []
    adaptive = {**today, "train": {"type_weights": "adaptive"}}
    assert config_differences(saved, adaptive) == ["train.type_weights"]


def test_resuming_under_a_key_added_later_names_the_behaviour_the_run_had(tmp_path):
    """The refusal says what the run ran (max_excess), not '<absent>', so the override that resumes it is plain."""
    from omegaconf import OmegaConf

    from bias_unlearn.unlearning.resume import resume_checkpoint

    (tmp_path / "config.yaml").write_text("seed: 0\ncallbacks:\n  adapter_checkpoint:\n    max_lms_drop: 1.0\n")
    cfg = OmegaConf.create(
        {
            "seed": 0,
            "resume": str(tmp_path),
            "paths": {"output_dir": "x"},
            "callbacks": {"adapter_checkpoint": {"max_lms_drop": 1.0, "balance": "chi2"}},
        }
    )
    with pytest.raises(ConfigError, match=r"balance \('max_excess' \(the key did not exist then\) -> 'chi2'\)"):
        resume_checkpoint(cfg)


def test_a_run_saved_before_the_move_resumes_and_ends_as_todays_uninterrupted_run(
    tmp_path, tiny_model_dir, stereoset_jsonl, uninterrupted
):
    """A run killed under the code of 2026-12-04 (old config layout, callbacks at their old import paths, no digest
    beside its checkpoint: tests/fixtures/legacy) resumes under today's code and ends as today's uninterrupted run.
    Its paths are put where this machine has them (the run, as resumed, never moved)."""
    import shutil

    from tests.helpers import LEGACY

    out = tmp_path / "run"
    shutil.copytree(LEGACY / "killed_run", out)
    moved = {  # where the fixture's run saved them -> where they are here (config, split, adapter configs)
        "LEGACY_ROOT/killed_run": out,
        "LEGACY_ROOT/tiny_llama": tiny_model_dir,
        "LEGACY_ROOT/stereoset.jsonl": stereoset_jsonl,
    }
    for path in [out / "config.yaml", out / "split.json", *out.glob("checkpoints/*/adapter_config.json")]:
        text = path.read_text()
        for old, new in moved.items():
            text = text.replace(old, str(new))
        path.write_text(text)
    config = (out / "config.yaml").read_text()
    assert "bias_unlearn.callbacks." in config and "\nloss:" in config  # the old layout
    resumed = run(tmp_path / "elsewhere", tiny_model_dir, stereoset_jsonl, "none", f"resume={out}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report, weights = outcome(out)
    expected_report, expected_weights = uninterrupted
    assert report == expected_report
    assert weights.keys() == expected_weights.keys()
    # Its first steps ran on the machine that made the fixture (an AVX-512 Xeon); elsewhere (an AMD Zen 4, 2026-12-06)
    # fp32 kernels round differently: the weights agree to 1.6e-6, not bit for bit, while one AdamW step moves each by
    # about the learning rate (0.05 here). The report, every dev score and swap included, is equal. The resume tests
    # above, killed and resumed on one machine, stay exact.
    for k in weights:
        torch.testing.assert_close(weights[k], expected_weights[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_checkpoint_is_refused_before_any_work(tmp_path, tiny_model_dir, stereoset_jsonl, damage):
    """A resume checkpoint cut short (or with its bytes changed and unreadable): one line naming the file and what
    to do, exit status 2 (through run_cli), and nothing in the run directory written or changed. The code of
    2026-12-04 loaded the model, scored the base model, then died on torch's OSError, leaving new files behind."""
    out = tmp_path / "run"
    killed = run(out, tiny_model_dir, stereoset_jsonl, "step:7")
    assert killed.returncode == -9
    checkpoint = out / "checkpoints" / "resume.ckpt"
    assert (out / "checkpoints" / "resume.ckpt.sha256").read_text().strip()  # written beside it at save time
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[:5000] if damage == "truncated" else data[:100] + b"\xff" * 200 + data[300:])
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    resumed = run(tmp_path / "elsewhere", tiny_model_dir, stereoset_jsonl, "none", f"resume={out}")
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    line = resumed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {checkpoint}: damaged resume checkpoint") and "start the run again" in line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_resume_keeps_the_runs_own_auto_choice_of_the_lora_forward(
    tmp_path, tiny_model_dir, stereoset_jsonl, monkeypatch
):
    """compute.fused_lora=auto is a timing on the machine: a resume takes the run's choice instead of timing again (a
    busy machine may time the other way, and the comparison would refuse the run as configured differently)."""
    import bias_unlearn.models.fused_lora as fused_lora

    out = tmp_path / "run"
    base = [*tiny_run_overrides(out, tiny_model_dir, stereoset_jsonl), "trainer.max_steps=2", "eval.after=false"]
    run_training(compose_config("train", *base, "compute.fused_lora=false"))
    monkeypatch.setattr(fused_lora, "fused_pays", lambda dtype=None: True)  # this time the timing says fused
    run_training(compose_config("train", *base, f"resume={out}", "compute.fused_lora=auto"))
    assert json.loads((out / "report.json").read_text())["summary"]["precision"]["fused_lora"] is False
