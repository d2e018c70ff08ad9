"""The training job: in-process runs through the config fixture, the README's commands in fast form, bad data,
and one subprocess smoke test of ``train.py`` (a two-job Hydra multirun)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bias_unlearn.config.errors import ConfigError, DataError
from bias_unlearn.config.schema import train_settings as validate_config
from bias_unlearn.data.sources import build_stereoset_split
from bias_unlearn.jobs.cli import training_job
from bias_unlearn.jobs.train import run_training
from bias_unlearn.reports.columns import comparison_rows
from bias_unlearn.reports.run_report import RunReport
from bias_unlearn.reports.runs import read_run
from bias_unlearn.unlearning.balance import ss_standard_error
from bias_unlearn.unlearning.callbacks.adapter_checkpoint import RULE_BALANCE_CHI2, RULE_LAST, RULE_LEAST_LMS_DROP
from tests.helpers import (
    ALL_BENCHMARKS,
    ROOT,
    compose_config,
    expand_multirun,
    readme_commands,
    run_entry_point,
    tiny_run_overrides,
)

DEVICE_KEYS = ("model", "trainer", "strategy")  # what the fast form swaps for the tiny CPU model
# BiasEdit's editor small enough for the tiny model (two layers) and split
EDITING_FAST = (
    "method.editing.n_edits=4",
    "method.editing.rank=4",
    "method.editing.epochs=1",
    "method.editing.layers=2",
)


def test_the_readme_shows_the_promised_commands():
    commands = [" ".join(args) for args in readme_commands("train.py")]
    assert "model=llama3_8b loss=no_kl trainer=gpu" in commands
    assert any("strategy=fsdp" in c for c in commands) and "-m experiment=methods" in commands


@pytest.mark.parametrize("args", readme_commands("train.py"), ids=" ".join)
def test_readme_train_commands_compose_validate_and_run_fast(args, cfg_train, data_overrides):
    """Each README command composes as written and validates; then its method/loss/experiment choices run in fast
    form on the tiny model (its model, trainer and strategy choices need the hub or GPUs)."""
    for overrides in expand_multirun(args):
        validate_config(compose_config("train", "paths.output_dir=/tmp/unused", *overrides))
    kept = [o for o in expand_multirun(args)[0] if o.split("=")[0] not in DEVICE_KEYS + ("resume",)]
    fast = [*kept, *data_overrides, "trainer.max_steps=2", "eval.generation.prompts=[]"]
    if any(o.startswith("resume=") for o in args):  # a fast run of the same settings stands for the README's run
        fast.append(f"resume={Path(run_training(cfg_train(*fast)).summary.adapter).parent}")
    cfg = cfg_train(*fast)
    if cfg.method.get("editing") is not None:
        cfg = cfg_train(*fast, *EDITING_FAST)
    report = training_job(cfg)(cfg)
    trains_lora = cfg.method.get("decoding") is None and cfg.method.get("editing") is None
    assert report.summary.adapter_rule and (report.summary.steps == 2 if trains_lora else report.stereoset.after)


def test_readme_ablation_multirun_names_each_run_by_what_trained():
    """The README's ablation grid ``-m loss=full,no_kl,no_retain,no_adv``: four different names, none a label."""
    from bias_unlearn.config.methods import Objective, method_name

    (args,) = [a for a in readme_commands("train.py") if a[:2] == ["-m", "loss=full,no_kl,no_retain,no_adv"]]
    names = {method_name(Objective.from_config(compose_config("train", *o))) for o in expand_multirun(args)}
    assert names == {"bias_unlearn", "no_kl", "no_retain", "no_adv"}


def test_train_end_to_end(cfg_train):
    cfg = cfg_train("eval.before=true", "trainer.max_steps=4", "logger=csv")
    report = run_training(cfg)
    out = Path(report.summary.adapter).parent  # the run directory
    assert report.summary.steps == 4 and report.summary.method == "bias_unlearn"
    assert [h["step"] for h in report.summary.dev_history] == [0, 2, 4]
    assert (
        report.stereoset.before["intrasentence"]["overall"]["n"]
        == report.stereoset.after["intrasentence"]["overall"]["n"]
        > 0
    )
    assert report.summary.adapter_rule in (RULE_BALANCE_CHI2, RULE_LEAST_LMS_DROP)
    assert isinstance(report.summary.lms_bar_met, bool)
    saved = RunReport.load(out / "report.json")  # the file is the returned object (NaN written as null)
    assert saved.summary == report.summary and saved.stereoset.after["intrasentence"]["overall"]["ss_ci95"] == [
        None,
        None,
    ]
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "adapter" / "split.json").read_text() == (out / "split.json").read_text()  # it carries its split
    state = json.loads((out / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 4 and "swapped" in state
    assert (out / "dev_ss.png").stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert "| overall |" in markdown and report.summary.adapter_rule in markdown
    dev, split = report.summary.dev_split, json.loads((out / "split.json").read_text())  # what the dev rules read
    assert {bt: d["examples"] for bt, d in dev.items()} == {
        bt: counts["intrasentence"] for bt, counts in split["dev"]["counts"].items()
    }
    assert (
        all(d["targets"] >= 1 and d["resolution"] > 0 for d in dev.values()) and "Dev split per bias type" in markdown
    )
    dev_examples = [ex for ex in build_stereoset_split(cfg.data).dev if ex.kind == "intrasentence"]
    assert {bt: d["se"] for bt, d in dev.items()} == pytest.approx(ss_standard_error(dev_examples), abs=0.006)
    assert "standard error" in markdown
    assert "train/forget" in (out / "logs" / "metrics.csv").read_text().splitlines()[0]


def test_eval_adapter_last_names_its_rule(cfg_train):
    report = run_training(cfg_train("eval.adapter=last", "eval.after=false", "eval.generation.prompts=[]"))
    assert report.summary.adapter_rule == RULE_LAST and report.summary.adapter_from.endswith("last")


def test_counterfactual_copies_train_and_the_report_counts_them(cfg_train, tmp_path):
    report = run_training(
        cfg_train("train.counterfactual_types=[gender]", "eval.after=false", "eval.generation.prompts=[]")
    )
    counts = report.summary.counterfactual_copies["gender"]
    assert counts.get("made", 0) > 0 and set(report.summary.counterfactual_copies) == {"gender"}
    assert "## Counterfactual copies" in (tmp_path / "run" / "report.md").read_text()


def test_gradient_clipping_under_mixed_precision_trains(cfg_train):
    """Lightning's mixed precision refuses to clip a fused optimizer's gradients: with clipping the step keeps
    torch's AdamW (module.fused_optimizer)."""
    report = run_training(
        cfg_train(
            "trainer.precision=bf16-mixed",
            "trainer.gradient_clip_val=1.0",
            "eval.after=false",
            "eval.generation.prompts=[]",
        )
    )
    assert report.summary.steps == 4


def test_empty_bias_type_in_train_split(tmp_path, tiny_model_dir):
    from tests.helpers import make_stereoset_rows

    rows = [r for r in make_stereoset_rows() if not (r["bias_type"] == "religion" and r["type"] == "intrasentence")]
    path = tmp_path / "no_religion.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = compose_config(
        "train", *tiny_run_overrides(tmp_path / "run", tiny_model_dir, path), "train.kinds=[intrasentence]"
    )
    with pytest.raises(DataError, match="religion"):
        run_training(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_run_report_notebook_executes(cfg_train, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    report = run_training(cfg_train())
    monkeypatch.setenv("BIAS_UNLEARN_RUN", str(Path(report.summary.adapter).parent))
    notebook = nbformat.read(ROOT / "notebooks" / "run_report.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert any("| overall |" in str(o.get("data", {}).get("text/markdown", "")) for o in outputs)


@pytest.mark.slow
def test_train_py_two_job_multirun(tmp_path, tiny_model_dir, stereoset_jsonl):
    """The entry point as a user runs it (subprocess, Hydra's multirun launcher, exit code)."""
    out = tmp_path / "sweep"
    overrides = [
        o for o in tiny_run_overrides(tmp_path, tiny_model_dir, stereoset_jsonl) if not o.startswith("paths.output_dir")
    ]
    proc = run_entry_point(
        "train.py",
        "-m",
        *overrides,
        "loss=full,no_kl",
        "trainer.max_steps=2",
        "eval.after=false",
        f"hydra.sweep.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p for p in out.iterdir() if p.is_dir() and (p / "report.json").exists())
    assert len(runs) == 2 and [p.name.split("_")[0] for p in runs] == ["0", "1"]
    reports = [RunReport.load(p / "report.json") for p in runs]
    assert [r.summary.method for r in reports] == ["bias_unlearn", "no_kl"]
    assert [r.summary.loss["kl_weight"] for r in reports] == [0.2, 0.0]


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(tmp_path, tiny_model_dir, stereoset_jsonl):
    """The first job of a grid meets bad data (a file it reads only when it runs): it leaves its reason, the next job
    still runs, the report lists both. A bad setting in any job stops the grid before any job starts."""
    from bias_unlearn.reports.sweep import write_sweep_report

    out = tmp_path / "sweep"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    overrides = [
        o
        for o in tiny_run_overrides(tmp_path, tiny_model_dir, stereoset_jsonl)
        if not o.startswith(("paths.output_dir", "data.stereoset.path"))
    ]
    proc = run_entry_point(
        "train.py",
        "-m",
        *overrides,
        f"data.stereoset.path={bad},{stereoset_jsonl}",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not valid JSON" in proc.stderr
    statuses = {row["run"].split("_")[0]: row["status"] for row in write_sweep_report(out)["rows"]}
    assert statuses["0"].startswith("failed: ") and "not valid JSON" in statuses["0"] and statuses["1"] == "ok"

    refused = run_entry_point(
        "train.py", "-m", *overrides, "method.loss.beta=1e-9,0.1", f"hydra.sweep.dir={tmp_path / 'refused'}"
    )
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(
        "error: method.loss.beta must be at least"
    )
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_train_py_bad_setting_exits_with_one_line(tmp_path, tiny_model_dir, stereoset_jsonl):
    out = tmp_path / "run"
    proc = run_entry_point(
        "train.py",
        *tiny_run_overrides(out, tiny_model_dir, stereoset_jsonl),
        f"hydra.run.dir={out}",
        "eval.adapter=bset",
    )
    assert proc.returncode == 2 and "eval.adapter must be one of" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "split.json").exists()


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_experiments_compose(experiment):
    cfg = compose_config("train", f"experiment={experiment}")
    validate_config(cfg)
    assert cfg.trainer.max_steps > 0 and cfg.train.retain_batch > cfg.train.forget_batch
    if experiment in ("methods", "ablations"):  # versioned grids: the sweep's methods live in the config
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            hydra_cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        methods = hydra_cfg.hydra.sweeper.params.method.split(",")
        known = {p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")}
        assert set(methods) <= known and cfg.grid_version >= 2 and cfg.eval.crows_pairs and cfg.eval.general
        assert cfg.eval.bbq
        if experiment == "methods":  # the paper's full comparison (Tables 1-2): every baseline beside BiasUnlearn
            assert cfg.grid_version == 3
            assert {"bias_unlearn", "cda", "sft", "dpo", "self_debias", "cafie", "biasedit"} <= set(methods)
        assert hydra_cfg.hydra.sweeper.params.seed == "0,1,2"  # split seeds: every method on the same three splits
        assert cfg.trainer.max_steps == 400  # the preset's budget (one pass over the forget set), not a shortcut
    if experiment == "preset_sweep":  # chosen on dev: the test split is never scored
        assert not cfg.eval.before and not cfg.eval.after
    if experiment.startswith("paper_"):
        assert cfg.model.name == experiment[len("paper_") :] and cfg.train.retain_batch == 28


def test_side_effects_before_and_after(cfg_train, data_overrides):
    """eval.crows_pairs, eval.bbq and eval.general: CrowS-Pairs, BBQ and general ability scored before and after,
    in the report, the adapter's card and the sweep table."""
    report = run_training(
        cfg_train(
            *data_overrides,
            *ALL_BENCHMARKS,
            "eval.generation.prompts=[]",
        )
    )
    general = report.general
    assert general.before["wiki"]["n"] == 2 and general.after["piqa"]["n"] == 2
    assert report.crows_pairs.after["overall"]["n"] > 0
    low, high = report.crows_pairs.after["overall"]["pct_stereotype_mean_ci95"]
    assert low <= report.crows_pairs.after["overall"]["pct_stereotype_mean"] <= high
    # per-example outcomes, the same examples before and after (what paired comparisons need)
    rows_before, rows_after = report.outcomes.before, report.outcomes.after
    assert len(rows_after.stereoset["intrasentence"]) == report.stereoset.after["intrasentence"]["overall"]["n"]
    assert [r.id for r in rows_before.stereoset["intrasentence"]] == [
        r.id for r in rows_after.stereoset["intrasentence"]
    ]
    assert len(rows_after.crows_pairs) == report.crows_pairs.after["overall"]["n"]
    markdown = (Path(report.summary.adapter).parent / "report.md").read_text()
    assert "## General ability (before / after)" in markdown
    assert "Paired change on the same examples" in markdown and "| change in \\|SS - 50\\| |" in markdown
    assert "| bias type | N | % stereo before | 95% CI | % stereo after | 95% CI | change | 95% CI | resolved |" in (
        markdown
    )
    card = (Path(report.summary.adapter) / "README.md").read_text()  # the adapter carries its evidence
    assert card.startswith("---\n") and "library_name: peft" in card and "model-index:" in card
    assert "/tmp/" not in card  # no path of the machine that wrote it
    assert "held-out test split" in card and "## Side effects: General ability" in card
    # BBQ from the fixture with BBQ's metadata (religion): accuracies and bias scores, before and after
    for when in ("before", "after"):
        religion = getattr(report.bbq, when)["Religion"]
        assert religion["n"] == 4 and religion["n_with_metadata"] > 0
        assert 0 <= religion["acc_ambig"] <= 100 and "bias_disambig" in religion  # metadata: bias scored
    assert "## BBQ (before / after)" in markdown and "## Side effects: BBQ" in card
    crows_header = "| bias type | N | % stereo before | 95% CI | % stereo after | 95% CI | change | 95% CI | resolved |"
    assert "## Side effects: CrowS-Pairs" in card and crows_header in card  # the card has the paired change too
    assert RunReport.load(Path(report.summary.adapter).parent / "report.json").bbq == report.bbq
    row = comparison_rows([read_run(Path(report.summary.adapter).parent)])[1]
    assert row["bbq_acc_ambig"] == report.bbq.after["overall"]["acc_ambig"]


def test_each_launched_process_uses_its_own_gpu(monkeypatch):
    """Lightning re-runs train.py once per GPU with LOCAL_RANK set: each process loads and scores the base model
    on its own GPU, not all of them on GPU 0."""
    from omegaconf import OmegaConf

    from bias_unlearn.models.distributed import training_device

    gpu = OmegaConf.create({"accelerator": "gpu"})
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert training_device(gpu) == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # set_device is skipped without CUDA
    assert training_device(gpu) == "cuda:3"
    assert training_device(OmegaConf.create({"accelerator": "cpu"})) == "cpu"


def test_a_report_written_before_the_standard_error_was_recorded_still_renders():
    from bias_unlearn.reports.markdown import training_report
    from bias_unlearn.reports.run_report import Summary

    old = {"religion": {"examples": 25, "targets": 1, "resolution": 4.0}}
    new = {"religion": {**old["religion"], "se": 10.0}}
    common = dict(
        method="bias_unlearn",
        objective={},
        model="m",
        adapter="a",
        adapter_from="b",
        adapter_rule="r",
        lms_bar_met=True,
        steps=1,
        stopped_early_at=None,
        dev_history=[{"step": 0, "religion": 48.0}],
    )
    rendered = {
        name: training_report(RunReport(Summary(**common, dev_split=split)))
        for name, split in (("old", old), ("new", new))
    }
    assert "religion 25 examples / 1 target (SS resolution 4 points)" in rendered["old"]
    assert "(SS resolution 4 points, standard error 10)" in rendered["new"]


def test_a_launched_process_reads_the_base_scores_process_0_wrote(cfg_train, monkeypatch):
    """Lightning re-runs train.py once per extra GPU (LOCAL_RANK set) inside fit, after process 0 scored the base
    model: the others read its base_scores.json instead of scoring test, dev and the side benchmarks again, and
    write none of the run's files."""
    import bias_unlearn.jobs.train as job
    from bias_unlearn.jobs.train import BASE_SCORES, score_base

    report = run_training(cfg_train("eval.before=true", "trainer.max_steps=2"))
    out = Path(report.summary.adapter).parent
    written = (out / BASE_SCORES).read_text()
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(job, "evaluate_model", lambda *a, **k: pytest.fail("process 1 scored the base model"))
    module = SimpleNamespace(model=None, dev_examples=[], dev_before=None, score_dev=lambda: pytest.fail("scored dev"))
    settings = validate_config(cfg_train("eval.before=true"))
    assert score_base(cfg_train(), settings, module, [], {}, out, resuming=False) is None
    assert module.dev_before == json.loads(written)["dev_before"] and (out / BASE_SCORES).read_text() == written
    monkeypatch.setattr(job, "is_launched_rank_zero", lambda: False)
    with pytest.raises(ConfigError, match="found no base scores from process 0"):
        score_base(cfg_train(), settings, module, [], {}, out / "elsewhere", resuming=False)


def test_only_process_0_writes_the_run_files(cfg_train, monkeypatch, tmp_path):
    """Every launched process composes the same run directory: the others must not write split.json or
    config.yaml (three writers of one file at once collided, tests/test_io.py)."""
    monkeypatch.setenv("LOCAL_RANK", "2")
    cfg = cfg_train()
    out = Path(cfg.paths.output_dir)
    with pytest.raises(ConfigError, match="found no base scores"):  # it stops where it would read process 0's
        run_training(cfg)
    assert not (out / "split.json").exists() and not (out / "config.yaml").exists()


def test_a_bf16_run_on_the_cpu_trains_fp32_adapters_over_a_bf16_base_and_says_so(cfg_train):
    """What ``model.dtype=fastest`` picks on a CPU that computes bf16 (forced here): bf16 weights, bf16-mixed
    autocast, fp32 LoRA weights; the report names the precision it trained and scored in."""
    report = run_training(
        cfg_train(
            "model.dtype=bf16",
            "trainer.precision=auto",
            "trainer.max_steps=2",
            "compute.fused_lora=auto",
            "eval.generation.prompts=[]",
        )
    )
    assert report.summary.precision["weights"] == "bfloat16" and report.summary.precision["precision"] == "bf16-mixed"
    assert report.summary.precision["fused_lora"] in (True, False)
    saved = (Path(report.summary.adapter).parent / "config.yaml").read_text()
    assert "precision: bf16-mixed" in saved and "fused_lora: auto" not in saved  # what ran, not what was asked
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(Path(report.summary.adapter) / "adapter_model.safetensors").values()} == {
        torch.float32
    }
