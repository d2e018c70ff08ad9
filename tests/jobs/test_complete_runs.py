"""evaluate.py runs=: side effects scored after training and written into finished runs' reports."""

import json
import shutil

import pytest
from omegaconf import OmegaConf

from bias_unlearn.jobs import complete_runs as run_completion
from bias_unlearn.jobs.cli import USER_ERRORS
from bias_unlearn.jobs.evaluate import run_evaluation
from bias_unlearn.jobs.train import run_training
from bias_unlearn.reports.run_report import BeforeAfter, RunReport, Summary
from tests.helpers import compose_config

SIDE = "benchmarks=[crows_pairs,bbq,general]"


@pytest.fixture
def sweep(tmp_path, cfg_train):
    """A sweep folder: one tiny finished run trained without side effects, a copy of it, and a failed run."""
    run = tmp_path / "run"
    run_training(cfg_train("eval.before=true", "eval.generation.prompts=[]"))
    root = tmp_path / "sweep"
    shutil.copytree(run, root / "0_a")
    shutil.copytree(run, root / "1_b")
    cfg = OmegaConf.load(root / "1_b" / "config.yaml")  # another split seed: the same base model to score
    cfg.seed, cfg.scoring.seed = 1, 1
    OmegaConf.save(cfg, root / "1_b" / "config.yaml")
    (root / "2_failed").mkdir()
    shutil.copy(run / "report.json", root / "2_failed" / "report.json")
    (root / "2_failed" / "error.txt").write_text("diverged\n")
    return root


def evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, *overrides):
    return compose_config(
        "evaluate",
        f"paths.output_dir={tmp_path / 'eval'}",
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        *data_overrides,
        "scoring.n_bootstrap=0",
        *overrides,
    )


def test_side_effects_are_added_to_every_finished_run(sweep, tmp_path, tiny_model_dir, data_overrides, monkeypatch):
    assert RunReport.load(sweep / "0_a" / "report.json").bbq == BeforeAfter(None, None)
    calls = []
    score = run_completion.evaluate_model
    monkeypatch.setattr(run_completion, "evaluate_model", lambda *a: calls.append(1) or score(*a))
    done = run_completion.complete_runs(evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={sweep}", SIDE))
    assert done == [sweep / "0_a", sweep / "1_b"]  # the failed run is skipped
    assert len(calls) == 3  # the base once for both runs, then each run's adapter

    # Before is the base model, after the run's adapter: as evaluate.py scores each of them on its own.
    base = run_evaluation(evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, SIDE))
    adapted = run_evaluation(
        evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, SIDE, f"adapter={sweep / '0_a' / 'adapter'}")
    )
    report = RunReport.load(sweep / "0_a" / "report.json")
    for name in ("crows_pairs", "bbq", "general"):
        assert getattr(report, name) == BeforeAfter(base[name], adapted[name]), name
    assert report.general.before["wiki"]["perplexity"] != report.general.after["wiki"]["perplexity"]
    assert len(report.outcomes.after.crows_pairs) == report.crows_pairs.after["overall"]["n"]
    assert report.outcomes.after.stereoset  # the run's own StereoSet outcomes are kept
    assert report.summary.added_later == ["bbq", "crows_pairs", "general"]
    markdown = (sweep / "0_a" / "report.md").read_text()
    assert "## BBQ" in markdown and "## General ability" in markdown and "scored after training" in markdown
    assert "BBQ" in (sweep / "0_a" / "adapter" / "README.md").read_text()
    assert json.loads((sweep / "2_failed" / "report.json").read_text())["bbq"] == {"before": None, "after": None}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["benchmarks=[stereoset,wiki]"], "benchmarks must be some of"),
        (["benchmarks=[bbq]", "adapter=/some/adapter"], "adapter= and runs= together"),
        (["runs=/no/such/dir", "benchmarks=[bbq]"], "/no/such/dir: the directory does not exist"),
    ],
)
def test_bad_completion_requests_are_refused(tmp_path, tiny_model_dir, data_overrides, overrides, message):
    cfg = evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={tmp_path}", *overrides)
    with pytest.raises(USER_ERRORS, match=message):
        run_completion.complete_runs(cfg)


def test_a_folder_without_runs_or_adapter_is_refused(tmp_path, tiny_model_dir, data_overrides):
    (tmp_path / "empty").mkdir()
    with pytest.raises(USER_ERRORS, match="holds no run directories"):
        run_completion.complete_runs(
            evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={tmp_path / 'empty'}", "benchmarks=[bbq]")
        )
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text("{}")
    (run / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(USER_ERRORS, match="no delivered adapter"):
        run_completion.complete_runs(
            evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={run}", "benchmarks=[bbq]")
        )
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    RunReport(
        Summary(
            method="bias_unlearn",
            objective={},
            model="tiny",
            adapter="adapter",
            adapter_from="best",
            adapter_rule="balance",
            lms_bar_met=True,
            steps=1,
            stopped_early_at=None,
        )
    ).save(run / "report.json")
    for text, message in (
        ("seed: [0\n", "not readable as a training run's config"),
        ("model: {source: local}\nscoring: {mode: mean}\n", "model.name_or_path is not set"),
        ("model: {source: local, name_or_path: x}\nscoring: {mode: median}\n", "scoring.mode"),
    ):
        (run / "config.yaml").write_text(text)
        with pytest.raises(USER_ERRORS, match=message) as err:
            run_completion.complete_runs(
                evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={run}", "benchmarks=[bbq]")
            )
        assert "config.yaml" in str(err.value)


def test_a_dev_only_run_gets_its_held_out_test_scored_once(tmp_path, cfg_train, tiny_model_dir, data_overrides):
    run = tmp_path / "run"
    run_training(cfg_train("eval.before=false", "eval.after=false", "eval.generation.prompts=[]"))
    assert RunReport.load(run / "report.json").stereoset == BeforeAfter(None, None)
    wanted = "benchmarks=[stereoset,crows_pairs]"
    run_completion.complete_runs(evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={run}", wanted))

    # Before is the base model, after the delivered adapter, each on the run's own held-out test split.
    run_cfg = OmegaConf.load(run / "config.yaml")
    seed = run_cfg.seed
    base = run_evaluation(evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, wanted, f"seed={seed}"))
    adapted = run_evaluation(
        evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, wanted, f"seed={seed}", f"adapter={run / 'adapter'}")
    )
    report = RunReport.load(run / "report.json")
    for side, expected in (("before", base), ("after", adapted)):
        scored = getattr(report.stereoset, side)
        assert set(scored) == set(run_cfg.eval.kinds)  # the kinds the run evaluates, not every kind
        for kind, domains in scored.items():
            assert domains["overall"]["n"] == expected["stereoset"][kind]["overall"]["n"] > 0
            for domain in ("overall", "gender", "race"):
                want = expected["stereoset"][kind][domain]
                assert domains[domain]["ss"] == pytest.approx(want["ss"]), (side, kind, domain)
                assert domains[domain]["lms"] == pytest.approx(want["lms"]), (side, kind, domain)
        outcomes = getattr(report.outcomes, side).stereoset
        assert {kind: len(rows) for kind, rows in outcomes.items()} == {k: d["overall"]["n"] for k, d in scored.items()}
        assert getattr(report.outcomes, side).crows_pairs
    assert report.summary.added_later == ["crows_pairs", "stereoset"]
    assert "## StereoSet" in (run / "report.md").read_text()

    # Never re-scored; and a run whose config no longer rebuilds its held-out split is refused.
    with pytest.raises(USER_ERRORS, match="never re-scored"):
        run_completion.complete_runs(evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={run}", wanted))
    report.stereoset = BeforeAfter(None, None)
    report.save(run / "report.json")
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.data.split.seed = int(cfg.data.split.seed) + 1
    OmegaConf.save(cfg, run / "config.yaml")
    with pytest.raises(USER_ERRORS, match="trained or chosen on"):
        run_completion.complete_runs(evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={run}", wanted))


def test_the_base_side_effects_are_kept_where_training_runs_read_them(
    sweep, tmp_path, tiny_model_dir, data_overrides, monkeypatch
):
    import torch

    from bias_unlearn.eval import side_effects
    from bias_unlearn.eval.side_effect_cache import SideEffectCache

    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path / "cache"))
    for name in ("0_a", "1_b"):  # both runs trained with eval.cache_before
        cfg = OmegaConf.load(sweep / name / "config.yaml")
        cfg.eval.cache_before = True
        OmegaConf.save(cfg, sweep / name / "config.yaml")
    scored = []
    score = side_effects.score_side_effect
    monkeypatch.setattr(side_effects, "score_side_effect", lambda name, *a: scored.append(name) or score(name, *a))
    job = evaluate_cfg(tmp_path, tiny_model_dir, data_overrides, f"runs={sweep}", SIDE)
    run_completion.complete_runs(job)
    assert len(scored) == 9  # the base once, each run's adapter once: three benchmarks each
    before = RunReport.load(sweep / "0_a" / "report.json")

    # A training run of the same model on the same data reads the base's side effects back instead of scoring them.
    train_cfg = compose_config(
        "train", "model=local", f"model.name_or_path={tiny_model_dir}", *data_overrides, "eval.cache_before=true"
    )
    cache = SideEffectCache(train_cfg, torch.nn.Linear(2, 2))
    for name in ("crows_pairs", "bbq", "general"):
        assert getattr(cache.load(name), name) == getattr(before, name).before, name

    # So does the next completion: only the adapters are scored again, and the base's scores are the same.
    scored.clear()
    run_completion.complete_runs(job)
    assert len(scored) == 6
    again = RunReport.load(sweep / "0_a" / "report.json")
    assert (again.bbq, again.general, again.crows_pairs) == (before.bbq, before.general, before.crows_pairs)

    # A run trained without eval.cache_before keeps the cache out of it: its base is scored afresh.
    for name in ("0_a", "1_b"):
        cfg = OmegaConf.load(sweep / name / "config.yaml")
        cfg.eval.cache_before = False
        OmegaConf.save(cfg, sweep / name / "config.yaml")
    scored.clear()
    run_completion.complete_runs(job)
    assert len(scored) == 9
