"""evaluate.py: one subprocess smoke test of the entry point, then in-process runs through the composed config."""

import json

import pytest

from bias_unlearn.jobs.cli import USER_ERRORS
from bias_unlearn.jobs.evaluate import run_evaluation
from tests.helpers import compose_config, readme_commands, run_evaluate


@pytest.mark.slow
def test_evaluate_py_end_to_end(tmp_path, tiny_model_dir, data_overrides):
    out = tmp_path / "run"
    proc = run_evaluate(
        out, "model=local", f"model.name_or_path={tiny_model_dir}", "scoring.n_bootstrap=50", *data_overrides
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    stereo = results["results"]["stereoset"]
    assert stereo["intrasentence"]["overall"]["n"] > 0 and "intersentence" in stereo
    assert set(results["results"]["crows_pairs"]) == {"overall", "gender", "religion", "socioeconomic"}
    assert results["results"]["bbq"]["Religion"]["n_with_metadata"] == 4
    assert "bias_disambig" in results["results"]["bbq"]["Religion"]
    assert results["meta"]["scoring"] == "mode=mean, start=prepend"
    split = json.loads((out / "split.json").read_text())
    assert (
        split["test"]["n_examples"] == stereo["intrasentence"]["overall"]["n"] + stereo["intersentence"]["overall"]["n"]
    )
    table = (out / "results.md").read_text()
    assert "| intrasentence | overall |" in table and "## CrowS-Pairs" in table and "## BBQ" in table
    assert "| intrasentence | overall |" in proc.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.stereoset.path=/no/such/file.jsonl", "/no/such/file.jsonl: file not found"),
        ("benchmarks=[stereoset,glue]", "benchmarks must be some of"),
        ("split=validation", "split must be one of ['train', 'dev', 'test', 'all'], got 'validation'"),
        ("scoring.mode=median", "scoring.mode"),
    ],
)
def test_bad_input_stops_with_message_and_writes_nothing(tmp_path, tiny_model_dir, data_overrides, override, message):
    out = tmp_path / "run"
    cfg = compose_config(
        "evaluate",
        f"paths.output_dir={out}",
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        *data_overrides,
        override,
    )
    with pytest.raises(USER_ERRORS) as err:
        run_evaluation(cfg)
    assert message in str(err.value)
    assert not (out / "results.json").exists() and not (out / "results.md").exists()


def test_bad_adapter_stops_before_scoring(tmp_path, tiny_model_dir, data_overrides):
    out = tmp_path / "run"
    cfg = compose_config(
        "evaluate",
        f"paths.output_dir={out}",
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        *data_overrides,
        f"adapter={tmp_path}",
    )
    with pytest.raises(USER_ERRORS, match="no adapter_config.json"):
        run_evaluation(cfg)
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("args", readme_commands("evaluate.py"), ids=" ".join)
def test_readme_evaluate_commands_compose_and_run_fast(args, tmp_path, tiny_model_dir, data_overrides, monkeypatch):
    """Each README command composes as written; then runs on the tiny model and the fixture files (its model,
    adapter and file choices name things that exist only on the user's machine)."""
    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path / "cache"))  # cache=true keeps nothing of a test's
    compose_config("evaluate", *args)
    kept = [
        a for a in args if a.split("=")[0] not in ("model", "model.name_or_path", "adapter", "data.bbq.paths", "runs")
    ]  # runs=: tests/test_run_completion.py
    cfg = compose_config(
        "evaluate",
        f"paths.output_dir={tmp_path}",
        *kept,
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        *data_overrides,
        "scoring.n_bootstrap=0",
    )
    results = run_evaluation(cfg)
    assert set(results) == set(cfg.benchmarks) and (tmp_path / "results.md").exists()


def test_general_ability_benchmark(tmp_path, tiny_model_dir, data_overrides):
    cfg = compose_config(
        "evaluate",
        f"paths.output_dir={tmp_path}",
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        *data_overrides,
        "benchmarks=[general]",
    )
    results = run_evaluation(cfg)["general"]
    assert set(results) == {"wiki", "piqa", "mmlu", "openbookqa"}
    assert results["wiki"]["n"] == 3 and results["wiki"]["perplexity"] > 1
    assert results["mmlu"]["n"] == 3 and 0 <= results["mmlu"]["acc"] <= 100
    assert "## General ability" in (tmp_path / "results.md").read_text()


def test_an_adapter_is_not_scored_on_targets_its_run_trained_on(tmp_path, stereoset_jsonl, caplog):
    from bias_unlearn.config.errors import ConfigError
    from bias_unlearn.data.splits import check_held_out, split_by_target
    from bias_unlearn.data.stereoset import load_stereoset

    examples = load_stereoset("local", str(stereoset_jsonl))
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    split_by_target(examples, seed=1).save(tmp_path / "run" / "split.json")  # beside the adapter, in its run
    own, other = split_by_target(examples, seed=1), split_by_target(examples, seed=0)
    check_held_out(str(adapter), own.test, "test")  # its own held-out targets: fine
    assert {ex.target for ex in other.test} - {ex.target for ex in own.test}  # seed 0 tests targets seed 1 trained on
    with pytest.raises(ConfigError, match="seed=1"):
        check_held_out(str(adapter), other.test, "test")
    best = tmp_path / "run" / "checkpoints" / "best"  # a dev checkpoint: its run's split is two levels up
    best.mkdir(parents=True)
    with pytest.raises(ConfigError, match="split=test with seed=1"):
        check_held_out(str(best), other.test, "test")
    check_held_out(str(adapter), examples, "all")  # asked for everything: a warning, not an error
    assert "split=all includes" in caplog.text
    (adapter / "split.json").write_text("{")  # the adapter's own copy wins over the run's
    with pytest.raises(ConfigError, match="malformed split file"):
        check_held_out(str(adapter), own.test, "test")
