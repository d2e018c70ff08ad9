"""Decoding-time methods as runs of the grid (jobs/decode.py): scored like a trained method, with side effects,
completions and the cost at inference in the report; and through evaluate.py method=."""

from __future__ import annotations

import json

import pytest

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.jobs.decode import run_decoding
from bias_unlearn.jobs.evaluate import run_evaluation
from bias_unlearn.jobs.train import run_training
from bias_unlearn.reports.run_report import RunReport
from tests.helpers import ALL_BENCHMARKS, compose_config, run_evaluate


@pytest.mark.parametrize("method", ["self_debias", "cafie"])
def test_a_decoding_method_runs_every_benchmark_like_a_trained_method(method, cfg_train, data_overrides, tmp_path):
    report = run_decoding(
        cfg_train(
            f"method={method}",
            *data_overrides,
            *ALL_BENCHMARKS,
            "eval.generation.max_new_tokens=3",
            "eval.generation.prompts=[The nurse]",
        )
    )
    summary = report.summary
    assert summary.method == method and summary.steps == 0 and summary.adapter == ""
    assert summary.decoding["passes_per_token"] == (5 if method == "self_debias" else 4)
    assert summary.decoding["seconds_per_example"]["method"] > 0
    assert report.stereoset.before and report.stereoset.after  # the same test split, plain and under the method
    before = report.outcomes.before.stereoset["intrasentence"]
    after = report.outcomes.after.stereoset["intrasentence"]
    assert [r.id for r in before] == [r.id for r in after]
    assert report.crows_pairs.after["overall"]["n"] > 0 and report.bbq.after
    assert report.general.after["wiki"]["n"] == 2 and report.general.after["piqa"]["n"] == 2
    assert summary.generations[0]["prompt"] == "The nurse"
    saved = RunReport.load(tmp_path / "run" / "report.json")
    assert saved.summary.decoding == summary.decoding
    assert method in (tmp_path / "run" / "report.md").read_text()


def test_the_training_job_refuses_a_decoding_method(cfg_train):
    with pytest.raises(ConfigError, match="not a LoRA method"):
        run_training(cfg_train("method=self_debias"))


def test_a_bad_decoding_setting_is_refused_by_key(cfg_train):
    with pytest.raises(ConfigError, match=r"method\.decoding\.epsilon"):
        run_decoding(cfg_train("method=self_debias", "method.decoding.epsilon=0"))


def test_evaluate_py_scores_under_a_decoding_method(tmp_path, tiny_model_dir, stereoset_jsonl):
    out = tmp_path / "eval"
    done = run_evaluate(
        out,
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        "data.stereoset.source=local",
        f"data.stereoset.path={stereoset_jsonl}",
        "benchmarks=[stereoset]",
        "method=cafie",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["method"]["kind"] == "cafie"
    refused = run_evaluate(tmp_path / "no", "model=local", f"model.name_or_path={tiny_model_dir}", "method=dpo")
    assert refused.returncode == 2 and "decoding-time" in refused.stderr
    assert not (tmp_path / "no").exists()


def test_a_sweep_scores_the_side_effects_of_a_decoding_method_once(cfg_train, data_overrides, tmp_path, monkeypatch):
    """CrowS-Pairs, BBQ and general ability are the same items on every split seed: under eval.cache_before the
    second seed reads them back, plain and under the method, and only StereoSet (its own split) is scored."""
    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path / "cache"))
    common = ("method=cafie", *data_overrides, *ALL_BENCHMARKS, "eval.cache_before=true", "eval.generation.prompts=[]")
    first = run_decoding(cfg_train(*common, "seed=0", f"paths.output_dir={tmp_path / 's0'}"))
    second = run_decoding(cfg_train(*common, "seed=1", f"paths.output_dir={tmp_path / 's1'}"))
    assert (
        "side_effects_from_cache" not in first.summary.decoding or not first.summary.decoding["side_effects_from_cache"]
    )
    side = ["crows_pairs", "bbq", "general"]
    assert second.summary.decoding["side_effects_from_cache"] == {"plain": side, "method": side}
    for name in side:
        assert getattr(second, name).before == getattr(first, name).before
        assert getattr(second, name).after == getattr(first, name).after
    assert second.outcomes.after.crows_pairs == first.outcomes.after.crows_pairs  # the paired changes read them
    assert first.crows_pairs.after != first.crows_pairs.before  # the method's entry is not the plain model's
    assert second.outcomes.after.stereoset != first.outcomes.after.stereoset  # each seed's own test split
    assert "read from the cache" in (tmp_path / "s1" / "report.md").read_text()
    other = run_decoding(
        cfg_train(*common, "seed=1", "method.decoding.alpha=0.5", f"paths.output_dir={tmp_path / 'o'}")
    )
    assert other.summary.decoding["side_effects_from_cache"] == {"plain": side}  # other constants: scored afresh


def test_evaluate_py_and_the_grid_share_a_decoding_methods_side_effects(
    cfg_train, data_overrides, tiny_model_dir, tmp_path, monkeypatch
):
    """evaluate.py cache=true keeps the plain model's and the method's side effects under the keys a grid run builds
    (and reads back what a grid run kept): a method's side effects are scored once, by whichever job comes first."""
    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path / "cache"))
    side = ["crows_pairs", "bbq", "general"]
    evaluated = {}
    for name, method in (("plain", ()), ("method", ("method=cafie",))):
        cfg = compose_config(
            "evaluate",
            f"paths.output_dir={tmp_path / name}",
            "model=local",
            f"model.name_or_path={tiny_model_dir}",
            *data_overrides,
            "data.general.max_items=2",
            "benchmarks=[crows_pairs,bbq,general]",
            "cache=true",
            *method,
        )
        evaluated[name] = run_evaluation(cfg)
        assert json.loads((tmp_path / name / "results.json").read_text())["meta"]["side_effects_from_cache"] == []
    common = ("method=cafie", *data_overrides, *ALL_BENCHMARKS, "eval.cache_before=true", "eval.generation.prompts=[]")
    run = run_decoding(cfg_train(*common, "seed=1", f"paths.output_dir={tmp_path / 's1'}"))
    assert run.summary.decoding["side_effects_from_cache"] == {"plain": side, "method": side}
    for name in side:
        assert getattr(run, name).before == evaluated["plain"][name]
        assert getattr(run, name).after == evaluated["method"][name]
    again = run_evaluation(cfg)  # the method's, read back by evaluate.py too
    assert json.loads((tmp_path / "method" / "results.json").read_text())["meta"]["side_effects_from_cache"] == side
    assert again == evaluated["method"]


def test_evaluate_py_refuses_the_cache_for_an_adapter(tmp_path, tiny_model_dir):
    model = ("model=local", f"model.name_or_path={tiny_model_dir}")
    refused = run_evaluate(tmp_path / "no", *model, "adapter=/some/run/adapter", "cache=true")
    assert refused.returncode == 2 and "not with adapter=" in refused.stderr
    assert not (tmp_path / "no").exists()
