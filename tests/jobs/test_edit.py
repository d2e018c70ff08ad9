"""BiasEdit as a run of the grid (jobs/edit.py): the editor meta-trained, dev choosing its epoch, the one edit saved
and the edited model scored like any other."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from bias_unlearn.jobs.edit import run_editing
from bias_unlearn.reports.run_report import RunReport
from tests.helpers import ALL_BENCHMARKS

FAST = [
    "method=biasedit",
    "method.editing.layers=2",
    "method.editing.rank=4",
    "method.editing.n_edits=4",
    "method.editing.epochs=2",
    "method.editing.lr=0.01",
    "method.editing.meta_lr=0.001",
]


def test_biasedit_runs_every_benchmark_and_saves_its_edit(cfg_train, data_overrides, tmp_path):
    report = run_editing(
        cfg_train(
            *FAST,
            *data_overrides,
            *ALL_BENCHMARKS,
            "eval.generation.max_new_tokens=3",
            "eval.generation.prompts=[The nurse]",
        )
    )
    summary = report.summary
    batches = summary.editing["batches"]
    assert summary.method == "biasedit" and summary.steps == 2 * batches
    assert [e["step"] for e in summary.dev_history] == [0, batches, 2 * batches]  # the base, then each epoch's edit
    assert any(summary.adapter_from.startswith(f"editor after {e['step']} meta-steps") for e in summary.dev_history[1:])
    shifts = load_file(str(tmp_path / "run" / "edit" / "shifts.safetensors"))
    assert sorted(shifts) == sorted(summary.editing["modules"]) and len(shifts) == 2
    assert all(s.abs().sum() > 0 for s in shifts.values())
    assert report.stereoset.after and report.crows_pairs.after["overall"]["n"] > 0
    assert report.general.after["piqa"]["n"] == 2 and report.bbq.after
    assert summary.generations[0]["prompt"] == "The nurse"
    assert RunReport.load(tmp_path / "run" / "report.json").summary.editing == summary.editing


def test_biasedit_reads_the_base_models_side_effects_from_the_cache(cfg_train, data_overrides, tmp_path, monkeypatch):
    """Its base model is every method's: under eval.cache_before its side effects are kept for the sweep and read
    back; the edited model's are scored (never cached: they are its own)."""
    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path / "cache"))
    common = (*FAST, *data_overrides, "eval.before=true", "eval.crows_pairs=true", "eval.cache_before=true")
    first = run_editing(cfg_train(*common, "seed=0", f"paths.output_dir={tmp_path / 's0'}"))
    kept = list((tmp_path / "cache" / "side_effects").iterdir())
    assert [p.name.split("-")[0] for p in kept] == ["crows_pairs"]  # the base's only
    entry = json.loads(kept[0].read_text())
    assert entry["crows_pairs"] == first.crows_pairs.before
    entry["crows_pairs"]["overall"]["n"] = 12345  # marked: the next seed must read this entry, not score afresh
    kept[0].write_text(json.dumps(entry))
    second = run_editing(cfg_train(*common, "seed=1", f"paths.output_dir={tmp_path / 's1'}"))
    assert second.crows_pairs.before["overall"]["n"] == 12345
    assert second.crows_pairs.after["overall"]["n"] == first.crows_pairs.after["overall"]["n"]  # scored, not cached
