"""Sweep reports: a synthetic sweep (with a failed, a corrupt and an unevaluated run), and a real tiny sweep of
methods through train.py -m, report.py and the analysis notebook."""

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bias_unlearn.eval.outcomes import CrowsOutcome, Outcomes, StereoSetOutcome
from bias_unlearn.reports.columns import comparison_rows
from bias_unlearn.reports.run_report import BeforeAfter, RunReport, Summary
from bias_unlearn.reports.runs import find_runs as collect_runs
from bias_unlearn.reports.sweep import write_sweep_report
from bias_unlearn.unlearning.callbacks.adapter_checkpoint import RULE_BALANCE_CHI2
from tests.helpers import FIXTURES, ROOT, readme_commands


def _stereoset(ss: dict, lms: float) -> dict:
    domains = {
        d: {"ss": v, "lms": lms, "icat": lms * min(v, 100 - v) / 50, "n": 10, "n_targets": 2, "ss_ci95": [v - 3, v + 3]}
        for d, v in ss.items()
    }
    return {"intrasentence": domains}


def _write_run(
    path: Path,
    method: str,
    after_ss: dict | None,
    after_lms: float = 88.0,
    crows: float = 55.0,
    seed: int | None = None,
    before_overall: float = 62.0,
    before_lms: float = 90.0,
    dev_split: dict | None = None,
    crows_categories: dict | None = None,
):
    (path / ".hydra").mkdir(parents=True)
    if seed is not None:
        (path / "config.yaml").write_text(f"seed: {seed}\n")
    before = _stereoset(
        {"overall": before_overall, "gender": 60.0, "profession": 61.0, "race": 64.0, "religion": 58.0}, before_lms
    )
    summary = Summary(
        method=method,
        objective={},
        model="tiny",
        adapter=str(path / "adapter"),
        adapter_from="best",
        adapter_rule=RULE_BALANCE_CHI2,
        lms_bar_met=True,
        steps=10,
        stopped_early_at=None,
        dev_history=[
            {
                "step": 0,
                "overall": 62.0,
                "gender": 60.0,
                "profession": 61.0,
                "race": 64.0,
                "religion": 58.0,
                "lms": 90.0,
            },
            {"step": 10, **(after_ss or {}), "lms": after_lms},
        ],
        dev_split=dev_split or {},
    )
    crows_pairs = {
        "before": {"overall": {"n": 5, "pct_stereotype_mean": 60.0}},
        "after": {"overall": {"n": 5, "pct_stereotype_mean": crows}} if after_ss else None,
    }
    for category, value in (crows_categories or {}).items():
        crows_pairs["after"][category] = {"n": 5, "pct_stereotype_mean": value}
    RunReport(
        summary, BeforeAfter(before, _stereoset(after_ss, after_lms) if after_ss else None), BeforeAfter(**crows_pairs)
    ).save(path / "report.json")
    (path / "logs").mkdir()
    (path / "logs" / "metrics.csv").write_text(
        "epoch,step,train/forget,train/retain,train/total\n0,0,1.0,2.0,1.5\n0,1,1.2,1.8,1.5\n"
    )


@pytest.fixture
def synthetic_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    _write_run(
        sweep / "0_method=bias_unlearn",
        "bias_unlearn",
        {"overall": 51.0, "gender": 53.0, "profession": 49.5, "race": 50.5, "religion": 56.0},
        88.5,
        52.0,
    )
    _write_run(
        sweep / "1_method=cda",
        "cda",
        {"overall": 57.0, "gender": 50.2, "profession": 58.0, "race": 59.0, "religion": 57.0},
        89.5,
        57.0,
    )
    (sweep / "2_method=dpo" / ".hydra").mkdir(parents=True)  # crashed before writing anything
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):  # its saved config names the method
        OmegaConf.save(compose("train", overrides=["method=dpo"]), sweep / "2_method=dpo" / ".hydra" / "config.yaml")
    _write_run(sweep / "3_method=sft", "sft", None)  # trained, never evaluated after
    (sweep / "10_method=ga" / ".hydra").mkdir(parents=True)
    (sweep / "10_method=ga" / "report.json").write_text('{"summary": {"method": "ga"')  # cut off mid-write
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


def test_report_keeps_failed_runs_and_marks_the_best(synthetic_sweep):
    runs = collect_runs(synthetic_sweep)
    assert [r.name for r in runs] == [
        "0_method=bias_unlearn",
        "1_method=cda",
        "2_method=dpo",
        "3_method=sft",
        "10_method=ga",
    ]
    status = {r.name: r.status for r in runs}
    assert status["0_method=bias_unlearn"] == "ok" and status["1_method=cda"] == "ok"
    assert status["2_method=dpo"].startswith("failed: no report.json")
    assert status["3_method=sft"] == "no after-evaluation"
    assert status["10_method=ga"].startswith("failed: unreadable report.json")

    assert [r.method for r in runs] == ["bias_unlearn", "cda", "dpo", "sft", "?"]
    rows = {r["run"]: r for r in comparison_rows(runs)}
    assert rows["base model"]["ss_overall"] == 62.0 and rows["base model"]["best"] == []
    bu, cda = rows["0_method=bias_unlearn"], rows["1_method=cda"]
    assert bu["delta_lms"] == pytest.approx(-1.5) and cda["delta_lms"] == pytest.approx(-0.5)
    assert set(bu["best"]) == {"ss_overall", "ss_profession", "ss_race", "ss_religion", "ss_imbalance", "icat", "crows"}
    assert set(cda["best"]) == {"ss_gender", "lms", "delta_lms"}


def test_one_base_row_per_split_seed(tmp_path):
    """Each split seed has its own test split, so the base model gets a row per seed and every run's delta LMS is
    taken from its own seed's base model."""
    sweep = tmp_path / "sweep"
    after = {"overall": 52.0, "gender": 53.0, "profession": 49.5, "race": 50.5, "religion": 56.0}
    _write_run(sweep / "0_method=bias_unlearn,seed=0", "bias_unlearn", after, 88.0, seed=0)
    _write_run(
        sweep / "1_method=bias_unlearn,seed=1",
        "bias_unlearn",
        after,
        88.0,
        seed=1,
        before_overall=60.0,
        before_lms=89.0,
    )
    _write_run(sweep / "2_method=cda,seed=1", "cda", after, 88.5, seed=1, before_overall=60.0, before_lms=89.0)
    rows = comparison_rows(collect_runs(sweep))
    assert [r["run"] for r in rows[:2]] == ["base model (seed 0)", "base model (seed 1)"]
    assert [r["ss_overall"] for r in rows[:2]] == [62.0, 60.0] and all(r["best"] == [] for r in rows[:2])
    by_run = {r["run"]: r for r in rows}
    assert by_run["0_method=bias_unlearn,seed=0"]["delta_lms"] == pytest.approx(-2.0)
    assert by_run["1_method=bias_unlearn,seed=1"]["delta_lms"] == pytest.approx(-1.0)
    assert {"lms", "delta_lms"} <= set(by_run["2_method=cda,seed=1"]["best"])


def test_report_files_and_figures(synthetic_sweep):
    result = write_sweep_report(synthetic_sweep)
    markdown = (synthetic_sweep / "comparison.md").read_text()
    assert "| 0_method=bias_unlearn | bias_unlearn | ok | **51.00** |" in markdown
    assert "2_method=dpo: failed: no report.json" in markdown and "10_method=ga: failed" in markdown
    rows = list(csv.DictReader(io.StringIO((synthetic_sweep / "comparison.csv").read_text())))
    assert [r["run"] for r in rows] == [
        "base model",
        "0_method=bias_unlearn",
        "1_method=cda",
        "2_method=dpo",
        "3_method=sft",
        "10_method=ga",
    ]
    assert rows[1]["ss_overall"] == "51.0" and "ss_overall" in rows[1]["best_in"] and rows[3]["ss_overall"] == ""
    for name in ("sweep_dev_ss.png", "sweep_loss_terms.png", "sweep_before_after.png"):
        assert (synthetic_sweep / name).stat().st_size > 5000
    assert json.loads((synthetic_sweep / "comparison.json").read_text())["rows"][0]["run"] == "base model"
    assert len(result["runs"]) == 5


@pytest.mark.slow
def test_report_py_on_a_missing_directory(tmp_path):
    """report.py's subprocess smoke test: a user error ends with one line and exit code 2."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "report.py"), f"sweep_dir={tmp_path / 'nope'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.slow
def test_methods_sweep_report_and_notebook(tmp_path, tiny_model_dir, stereoset_jsonl):
    """train.py -m over four trained and two decoding-time methods on a tiny model (CrowS-Pairs, cached base
    scores, generations), then report.py and the sweep notebook on its outputs."""
    import nbformat
    from nbclient import NotebookClient

    sweep = tmp_path / "sweep"
    env = {**os.environ, "BIAS_UNLEARN_CACHE": str(tmp_path / "cache")}
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        "data.stereoset.source=local",
        f"data.stereoset.path={stereoset_jsonl}",
        "data.crows_pairs.source=local",
        f"data.crows_pairs.path={FIXTURES / 'crows_pairs_anonymized.csv'}",
        "debug=fast",
        "trainer.accelerator=cpu",
        "eval.before=true",
        "eval.crows_pairs=true",
        "eval.cache_before=true",
        "eval.generation.max_new_tokens=3",
        "method=bias_unlearn,cda,sft,dpo,self_debias,cafie",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "cache" / "before").glob("*.json"))) == 1  # the base model was scored once
    reports = [RunReport.load(p) for p in sorted(sweep.glob("*/report.json"))]
    assert [r.summary.method for r in reports] == ["bias_unlearn", "cda", "sft", "dpo", "self_debias", "cafie"]
    assert all(r.stereoset.before == reports[0].stereoset.before for r in reports)
    assert all(r.crows_pairs.after["overall"]["n"] > 0 for r in reports)
    assert all(r.summary.swap_events == [] for r in reports[1:])  # baselines never swap
    first = next(sweep.glob("0_*method=bias_unlearn*")).joinpath("report.md").read_text()
    assert "## Greedy completions" in first and "The nurse walked into the room and" in first
    assert "## CrowS-Pairs" in first

    proc = subprocess.run(
        [sys.executable, str(ROOT / "report.py"), f"sweep_dir={sweep}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 of 6 runs scored on test" in proc.stdout
    rows = list(csv.DictReader(io.StringIO((sweep / "comparison.csv").read_text())))
    assert [r["method"] for r in rows] == ["none", "bias_unlearn", "cda", "sft", "dpo", "self_debias", "cafie"]
    assert [r["steps"] for r in rows[-2:]] == ["0", "0"]  # nothing trained
    assert all(r["crows"] != "" for r in rows)

    notebook = nbformat.read(ROOT / "notebooks" / "sweep_report.ipynb", as_version=4)
    os.environ["BIAS_UNLEARN_SWEEP"] = str(sweep)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    finally:
        del os.environ["BIAS_UNLEARN_SWEEP"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert any("method=cda" in str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_report_without_sweep_dir_names_the_key():
    from bias_unlearn.config.errors import ConfigError
    from bias_unlearn.jobs.report import make_report
    from tests.helpers import compose_config

    with pytest.raises(ConfigError, match="sweep_dir is required"):
        make_report(compose_config("report"))


def test_general_ability_columns():
    from bias_unlearn.reports.columns import general_columns

    general = {"wiki": {"n": 3, "perplexity": 21.5}, "piqa": {"n": 2, "acc": 50.0}, "mmlu": {"n": 4, "acc": 25.0}}
    assert general_columns(general) == {"perplexity": 21.5, "mc_acc": 37.5} and general_columns(None) == {}


def _seed_run(path: Path, method: str, seed: int, p_pro: float, config: str = ""):
    """A finished run of ``method`` on split ``seed`` with per-example outcomes: 4 targets x 25 examples."""
    import random

    rng = random.Random(seed)  # the same draws for every method of a seed: only p_pro differs
    rows = [
        StereoSetOutcome(f"{t}-{k}", bt, t, int(rng.random() < p_pro), 2)
        for bt, t in (
            ("gender", f"g{seed}"),
            ("profession", f"p{seed}"),
            ("race", f"r{seed}"),
            ("religion", f"x{seed}"),
        )
        for k in range(25)
    ]
    base = [replace(r, pro=1 if k % 10 < 6 else 0) for k, r in enumerate(rows)]  # the base model: SS 60
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"seed: {seed}\n{config}")
    summary = Summary(
        method=method,
        objective={},
        model="tiny",
        adapter="a",
        adapter_from="best",
        adapter_rule=RULE_BALANCE_CHI2,
        lms_bar_met=True,
        steps=10,
        stopped_early_at=None,
    )
    stereo = _stereoset({"overall": 100 * sum(r.pro for r in rows) / len(rows)}, 100.0)
    RunReport(
        summary,
        BeforeAfter(stereo, stereo),
        outcomes=BeforeAfter(Outcomes({"intrasentence": base}), Outcomes({"intrasentence": rows})),
    ).save(path / "report.json")


def test_across_seeds_mean_sd_pooled_and_paired(tmp_path):
    sweep = tmp_path / "grid"
    for seed in (0, 1, 2):
        _seed_run(sweep / f"{seed}0_method=bias_unlearn,seed={seed}", "bias_unlearn", seed, 0.5)
        _seed_run(sweep / f"{seed}1_method=cda,seed={seed}", "cda", seed, 0.75)
    result = write_sweep_report(sweep)
    seeds = result["across_seeds"]
    assert seeds["bias_unlearn"]["seeds"] == [0, 1, 2] and seeds["base model"]["seeds"] == [0, 1, 2]
    assert seeds["cda"]["ss_overall"]["n_runs"] == 3 and seeds["cda"]["ss_overall"]["sd"] > 0
    pooled = seeds["cda"]["pooled"]["overall"]
    assert pooled["n"] == 300 and pooled["n_targets"] == 12  # three seeds' targets kept apart
    assert pooled["ss"] == pytest.approx(seeds["cda"]["ss_overall"]["mean"])  # equal-sized targets: the same
    vs = seeds["cda"]["vs_reference"]
    assert vs["reference"] == "bias_unlearn" and vs["seeds"] == [0, 1, 2]
    assert vs["abs_ss"]["diff"] > 10 and vs["abs_ss"]["resolved"]  # CDA stays biased, on the same examples
    assert vs["lms"]["diff"] == 0 and not vs["lms"]["resolved"]
    base = seeds["base model"]["vs_reference"]  # base - BiasUnlearn: what debiasing changed, paired
    assert seeds["base model"]["pooled"]["overall"]["ss"] == pytest.approx(60)
    assert base["abs_ss"]["diff"] == pytest.approx(10 - abs(seeds["bias_unlearn"]["pooled"]["overall"]["ss"] - 50))
    assert "vs_reference" not in seeds["bias_unlearn"]
    markdown = (sweep / "comparison.md").read_text()
    assert "## Across split seeds" in markdown and "| cda | 3 |" in markdown and "Paired differences" in markdown
    assert json.loads((sweep / "comparison.json").read_text())["across_seeds"]["cda"]["seeds"] == [0, 1, 2]
    assert (sweep / "sweep_paired.png").stat().st_size > 5000 and "![paired](sweep_paired.png)" in markdown
    base_rows = [r["run"] for r in result["rows"] if r.get("base")]
    assert base_rows == ["base model (seed 0)", "base model (seed 1)", "base model (seed 2)"]


def test_runs_of_one_method_with_other_settings_are_variants_not_seeds(tmp_path, caplog):
    """A grid over settings (a preset sweep scored on test) must not fold its candidates into one method's seeds:
    each setting is its own row; a repeated run of one setting and seed is left out, with a warning."""
    sweep = tmp_path / "grid"
    for k, lr in enumerate(("2e-4", "5e-4")):
        for seed in (0, 1):
            _seed_run(
                sweep / f"{k}{seed}_lr={lr},seed={seed}",
                "bias_unlearn",
                seed,
                0.5 + 0.1 * k,
                f"model: {{lr: {lr}}}\ntrain: {{seed: {seed}, forget_batch: 4}}\n",
            )
    _seed_run(sweep / "99_again", "bias_unlearn", 0, 0.9, "model: {lr: 5e-4}\ntrain: {seed: 0, forget_batch: 4}\n")
    seeds = write_sweep_report(sweep)["across_seeds"]
    assert sorted(seeds) == ["base model", "bias_unlearn (lr=0.0002)", "bias_unlearn (lr=0.0005)"]
    assert seeds["bias_unlearn (lr=0.0005)"]["seeds"] == [0, 1]
    assert seeds["bias_unlearn (lr=0.0005)"]["ss_overall"]["mean"] < 70  # the repeat (SS 90) is not in it
    assert "99_again repeats bias_unlearn (lr=0.0005) with seed 0" in caplog.text
    assert not any("vs_reference" in entry for entry in seeds.values())  # which variant is the reference?
    assert "name one: report.py reference=" in caplog.text
    # Named, one variant is the reference: the other's paired difference is taken against it, on the same seeds.
    seeds = write_sweep_report(sweep, reference="bias_unlearn (lr=0.0002)")["across_seeds"]
    vs = seeds["bias_unlearn (lr=0.0005)"]["vs_reference"]
    assert vs["reference"] == "bias_unlearn (lr=0.0002)" and vs["seeds"] == [0, 1]
    assert "vs_reference" not in seeds["bias_unlearn (lr=0.0002)"]


def test_a_setting_older_runs_lack_reads_as_the_behaviour_they_ran(tmp_path):
    """A run saved before train.dev_kinds existed ran the intrasentence dev signal: it is the same variant as a run
    that says so, and another variant than a run with both kinds (not folded into one method's seeds)."""
    sweep = tmp_path / "grid"
    configs = {
        "0_old": "train: {seed: 0, forget_batch: 4}\n",
        "1_said": "train: {seed: 1, forget_batch: 4, dev_kinds: [intrasentence]}\n",
        "2_both": "train: {seed: 0, forget_batch: 4, dev_kinds: [intrasentence, intersentence]}\n",
        "3_both": "train: {seed: 1, forget_batch: 4, dev_kinds: [intrasentence, intersentence]}\n",
    }
    for k, (name, text) in enumerate(configs.items()):
        _seed_run(sweep / name, "bias_unlearn", int(name[0]) % 2, 0.5 + 0.1 * k, "model: {lr: 5e-4}\n" + text)
    seeds = write_sweep_report(sweep)["across_seeds"]
    one, both = "bias_unlearn (dev_kinds=[intrasentence])", "bias_unlearn (dev_kinds=[intrasentence,intersentence])"
    assert sorted(seeds) == sorted(["base model", one, both])
    assert seeds[one]["seeds"] == [0, 1] and seeds[both]["seeds"] == [0, 1]


def test_dev_objective_chooses_without_test_scores(tmp_path):
    """The preset sweep's rule: smallest largest-per-type |dev SS - 50| among runs whose dev LMS fell at most 1;
    a run never scored on test can be chosen, a more balanced run that lost 3 LMS points cannot."""
    sweep = tmp_path / "sweep"
    dev = {
        "0_lr=a": ({"gender": 54.0, "profession": 47.0, "race": 50.0, "religion": 52.0, "lms": 89.5}, None),
        "1_lr=b": ({"gender": 51.0, "profession": 49.0, "race": 50.5, "religion": 50.0, "lms": 87.0}, None),
        "2_lr=c": ({"gender": 52.5, "profession": 48.0, "race": 51.0, "religion": 49.0, "lms": 89.2}, "untested"),
    }
    se = {"gender": 7.0, "profession": 5.0, "race": 4.0, "religion": 10.0}  # run a recorded its dev standard errors
    for name, (entry, tested) in dev.items():
        _write_run(
            sweep / name,
            "bias_unlearn",
            None if tested else {"overall": 50.0, **{k: v for k, v in entry.items() if k != "lms"}},
            dev_split={bt: {"examples": 25, "targets": 1, "resolution": 4.0, "se": v} for bt, v in se.items()}
            if name == "0_lr=a"
            else None,
        )
        (sweep / name / "adapter").mkdir()
        (sweep / name / "adapter" / "state.json").write_text(json.dumps({"dev": {"step": 10, **entry}}))
    rows = {r["run"]: r for r in comparison_rows(collect_runs(sweep))}
    assert rows["0_lr=a"]["dev_objective"] == 4.0 and rows["1_lr=b"]["dev_delta_lms"] == pytest.approx(-3.0)
    assert rows["0_lr=a"]["dev_chi2"] == pytest.approx((4 / 7) ** 2 + (3 / 5) ** 2 + 0 + (2 / 10) ** 2)
    assert "dev_chi2" not in rows["1_lr=b"]  # a run that did not record them
    assert [name for name, r in rows.items() if "dev_objective" in r["best"]] == ["2_lr=c"]
    assert rows["2_lr=c"]["status"] == "no after-evaluation"
    assert "Chosen on dev: 2_lr=c" in write_sweep_report(sweep)["markdown"]
    (sweep / "2_lr=c" / "config.yaml").write_text("seed: 0\neval: {after: false}\n")  # told not to score test
    markdown = write_sweep_report(sweep)["markdown"]
    assert "2 of 3 runs scored on test; 1 trained and scored on dev only" in markdown
    assert "- 2_lr=c" not in markdown  # not listed as a run without results


def test_dev_objective_chooses_within_each_split_seed(tmp_path):
    """Another split seed is another dev split: a run on seed 1 whose dev set happens to sit nearer 50 must not
    outrank seed 0's runs; the dev objective chooses one run per seed."""
    sweep = tmp_path / "sweep"
    dev = {
        "0_method=a,seed=0": (0, 55.0),
        "1_method=b,seed=0": (0, 53.0),
        "2_method=a,seed=1": (1, 51.0),
        "3_method=b,seed=1": (1, 50.5),
    }
    for name, (seed, gender) in dev.items():
        entry = {"gender": gender, "profession": 50.0, "race": 50.0, "religion": 50.0, "lms": 89.8}
        _write_run(
            sweep / name, "bias_unlearn", {"overall": 50.0, **{k: v for k, v in entry.items() if k != "lms"}}, seed=seed
        )
        (sweep / name / "adapter").mkdir()
        (sweep / name / "adapter" / "state.json").write_text(json.dumps({"dev": {"step": 10, **entry}}))
    rows = comparison_rows(collect_runs(sweep))
    assert [r["run"] for r in rows if "dev_objective" in r["best"]] == ["1_method=b,seed=0", "3_method=b,seed=1"]
    markdown = write_sweep_report(sweep)["markdown"]
    assert (
        "Chosen on dev, among the runs of each split seed (each seed has its own dev split): "
        "seed 0: 1_method=b,seed=0; seed 1: 3_method=b,seed=1"
    ) in markdown


def test_side_effects_across_seeds(tmp_path):
    """Changes after - before per run, mean / sd over seeds, and the untargeted CrowS categories made worse by a
    resolved margin (age: 50% -> 90% of 40 pairs; nationality moves within noise)."""
    sweep = tmp_path / "grid"
    crows_rows = {
        "before": [CrowsOutcome(f"a{k}", "age", int(k % 2 == 0)) for k in range(40)]
        + [CrowsOutcome(f"n{k}", "nationality", int(k % 2 == 0)) for k in range(40)],
        "after": [CrowsOutcome(f"a{k}", "age", int(k % 10 != 0)) for k in range(40)]
        + [CrowsOutcome(f"n{k}", "nationality", int(k % 2 == 0 or k == 1)) for k in range(40)],
    }
    for seed, (ppl, acc) in enumerate([(110.0, 40.0), (130.0, 44.0)]):
        _seed_run(sweep / f"{seed}0_method=bias_unlearn,seed={seed}", "bias_unlearn", seed, 0.5)
        path = sweep / f"{seed}0_method=bias_unlearn,seed={seed}" / "report.json"
        report = RunReport.load(path)
        report.crows_pairs = BeforeAfter(
            {"overall": {"pct_stereotype_mean": 50.0}}, {"overall": {"pct_stereotype_mean": 56.0 + seed}}
        )
        report.outcomes.before.crows_pairs = crows_rows["before"]
        report.outcomes.after.crows_pairs = crows_rows["after"]
        report.bbq = BeforeAfter(
            {"overall": {"acc_ambig": 30.0, "acc_disambig": 60.0}},
            {"overall": {"acc_ambig": 32.0, "acc_disambig": 58.0 - seed}},
        )
        report.general = BeforeAfter(
            {"wiki": {"perplexity": 100.0}, "piqa": {"acc": 60.0}, "mmlu": {"acc": 30.0}},
            {"wiki": {"perplexity": ppl}, "piqa": {"acc": 60.0 - seed}, "mmlu": {"acc": acc - 10}},
        )
        report.save(path)
        _seed_run(sweep / f"{seed}1_method=cda,seed={seed}", "cda", seed, 0.75)  # no side effects scored
    result = write_sweep_report(sweep)
    side = result["side_effects"]
    assert set(side) == {"bias_unlearn"}
    e = side["bias_unlearn"]
    assert e["seeds"] == [0, 1]
    assert e["crows"]["mean"] == pytest.approx(6.5) and e["bbq_ambig"]["mean"] == pytest.approx(2.0)
    assert e["bbq_disambig"]["mean"] == pytest.approx(-2.5) and e["bbq_disambig"]["sd"] > 0
    assert e["perplexity_pct"]["mean"] == pytest.approx(20.0)
    assert e["mc_acc"]["mean"] == pytest.approx(((0 + 0) / 2 + (-1 + 4) / 2) / 2)
    assert e["crows_worse"] == {0: ["age"], 1: ["age"]}
    markdown = (sweep / "comparison.md").read_text()
    assert "## Side effects across split seeds" in markdown and "| bias_unlearn | 2 | 6.50 ± 0.71 |" in markdown
    assert "0: age; 1: age" in markdown


def test_a_side_effect_cell_names_the_runs_behind_it(tmp_path):
    """BBQ scored by one of two seeds says so; general ability read back identically by both shows its sd of 0."""
    sweep = tmp_path / "grid"
    for seed in (0, 1):
        run = sweep / f"{seed}_method=cafie,seed={seed}"
        _seed_run(run, "cafie", seed, 0.5)
        report = RunReport.load(run / "report.json")
        report.crows_pairs = BeforeAfter(
            {"overall": {"pct_stereotype_mean": 50.0}}, {"overall": {"pct_stereotype_mean": 53.0 + seed}}
        )
        if seed == 0:
            report.bbq = BeforeAfter(
                {"overall": {"acc_ambig": 30.0, "acc_disambig": 60.0}},
                {"overall": {"acc_ambig": 34.0, "acc_disambig": 59.0}},
            )
        report.general = BeforeAfter({"wiki": {"perplexity": 100.0}}, {"wiki": {"perplexity": 110.0}})
        report.save(run / "report.json")
    write_sweep_report(sweep)
    markdown = (sweep / "comparison.md").read_text()
    assert "| cafie | 2 | 3.50 ± 0.71 | 4.00 (1 of 2 runs) | -1.00 (1 of 2 runs) | 10.00 ± 0.00 |" in markdown


def test_report_over_a_sweep_saved_before_the_move(tmp_path):
    """report.py over runs of the code of 2026-12-04 (schema-3 reports with positional outcome rows, old configs:
    tests/fixtures/legacy/sweep_v3) gives the table, the paired statistics and the figures."""
    import shutil

    from tests.helpers import LEGACY

    sweep = tmp_path / "sweep"
    shutil.copytree(LEGACY / "sweep_v3", sweep)
    result = write_sweep_report(sweep)
    rows = {r["run"]: r for r in result["rows"]}
    assert rows["0_method=bias_unlearn"]["method"] == "bias_unlearn" and rows["1_method=cda"]["method"] == "cda"
    assert all(rows[name]["status"] == "ok" for name in ("0_method=bias_unlearn", "1_method=cda"))
    assert rows["1_method=cda"]["crows"] is not None and "dev_objective" in rows["0_method=bias_unlearn"]
    report = RunReport.load(sweep / "0_method=bias_unlearn" / "report.json")
    assert (
        report.schema_version == 4
        and report.stereoset.before
        == json.loads((sweep / "0_method=bias_unlearn" / "report.json").read_text())["before"]
    )
    assert all(isinstance(r, StereoSetOutcome) for r in report.outcomes.after.stereoset["intrasentence"])
    assert all(isinstance(r, CrowsOutcome) for r in report.outcomes.after.crows_pairs)
    assert result["across_seeds"]["cda"]["vs_reference"]["reference"] == "bias_unlearn"
    assert (sweep / "comparison.md").exists() and (sweep / "sweep_dev_ss.png").exists()


def test_a_schema_2_report_still_loads():
    """Reports written before per-example outcomes existed (schema 2) load, without outcomes."""
    data = json.loads(
        (ROOT / "tests" / "fixtures" / "legacy" / "sweep_v3" / "1_method=cda" / "report.json").read_text()
    )
    data["schema_version"] = 2
    data.pop("outcomes")
    report = RunReport.from_dict(data)
    assert report.outcomes.before is None and report.stereoset.after == data["after"]


@pytest.mark.parametrize("args", readme_commands("report.py"), ids=" ".join)
def test_documented_report_commands_run_fast(args, tmp_path):
    """Each report.py command of the README and docs, its sweep directory a real (tiny, saved) sweep."""
    import shutil

    from bias_unlearn.jobs.report import make_report
    from tests.helpers import LEGACY, compose_config

    sweep = tmp_path / "sweep"
    shutil.copytree(LEGACY / "sweep_v3", sweep)
    kept = [a for a in args if not a.startswith("sweep_dir=")]
    result = make_report(compose_config("report", f"sweep_dir={sweep}", *kept))
    assert (sweep / "comparison.md").exists() and result["rows"]


def test_the_paper_layouts_average_each_method_over_its_seeds(tmp_path):
    """Table 1 (per-type SS, SS, ΔLMS, ICAT) and Table 2 (CrowS gender / race / religion): means over seeds."""
    sweep = tmp_path / "grid"
    types = ("overall", "gender", "profession", "race", "religion")
    for seed, (ss, lms, race) in enumerate([(50.0, 88.0, 40.0), (54.0, 86.0, 60.0)]):
        after = dict(zip(types, (ss, ss + 2, ss - 2, ss, ss + 4)))
        _write_run(sweep / f"{seed}0_method=bias_unlearn,seed={seed}", "bias_unlearn", after, lms, seed=seed)
        _write_run(
            sweep / f"{seed}1_method=cafie,seed={seed}",
            "cafie",
            dict(zip(types, (60.0,) * 5)),
            90.0,
            seed=seed,
            crows_categories={"gender": 55.0, "race-color": race},
        )
    result = write_sweep_report(sweep)
    table1 = {row["method"]: row for row in result["paper_tables"]["table1"]}
    assert table1["base model"]["seeds"] == [0, 1] and table1["base model"]["delta_lms"] is None
    assert table1["base model"]["ss"] == pytest.approx(62.0) and table1["base model"]["gender"] == pytest.approx(60.0)
    ours = table1["bias_unlearn"]
    assert ours["ss"] == pytest.approx(52.0) and ours["gender"] == pytest.approx(54.0)
    assert ours["religion"] == pytest.approx(56.0) and ours["delta_lms"] == pytest.approx(87.0 - 90.0)
    assert ours["icat"] == pytest.approx((88.0 * 50 / 50 + 86.0 * 46 / 50) / 2)
    table2 = {row["method"]: row for row in result["paper_tables"]["table2"]}
    assert table2["cafie"]["gender"] == pytest.approx(55.0) and table2["cafie"]["race"] == pytest.approx(50.0)
    assert table2["cafie"]["religion"] is None  # not scored: shown as n/a, never as 0
    markdown = (sweep / "comparison.md").read_text()
    assert "## In the paper's layouts" in markdown and "| cafie | 0, 1 | 55.00 | 50.00 | n/a |" in markdown
