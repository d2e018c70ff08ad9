"""export.py: a finished run's debiased model, merged into the base weights or as the adapter, with a hub model
card; loadable with transformers alone and scoring as base + adapter does; bad requests write nothing."""

from __future__ import annotations

import pytest
import yaml

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.eval.scorer import SentenceScorer
from bias_unlearn.eval.stereoset import stereoset_sentence_scores
from bias_unlearn.jobs.export import export
from bias_unlearn.jobs.train import run_training
from bias_unlearn.models.policy import load_policy
from tests.helpers import compose_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, stereoset_jsonl):
    from tests.helpers import tiny_run_overrides

    out = tmp_path_factory.mktemp("export") / "run"
    run_training(
        compose_config(
            "train",
            *tiny_run_overrides(out, tiny_model_dir, stereoset_jsonl),
            "trainer.max_steps=4",
            "model.lr=0.05",
            "eval.before=true",
            "eval.generation.prompts=[]",
        )
    )
    return out


def export_cfg(run, out, *extra):
    return compose_config("export", f"run={run}", f"out={out}", *extra)


def test_the_merged_model_loads_with_transformers_alone_and_scores_as_base_plus_adapter(
    finished_run, tmp_path, stereoset_jsonl
):
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(export_cfg(finished_run, tmp_path / "merged"))
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    run_cfg = OmegaConf.load(finished_run / "config.yaml")
    adapted, adapted_tokenizer = load_policy(run_cfg.model, "cpu", str(finished_run / "adapter"))
    examples = split_by_target(load_stereoset("local", str(stereoset_jsonl)), fractions=(0.5, 0.25, 0.25)).test
    ours = stereoset_sentence_scores(SentenceScorer(merged, tokenizer, 8), examples)
    theirs = stereoset_sentence_scores(SentenceScorer(adapted, adapted_tokenizer, 8), examples)
    assert all(abs(a - b) < 1e-4 for x, y in zip(ours, theirs) for a, b in zip(x, y))
    assert any(
        abs(a - b) > 1e-3
        for x, y in zip(
            ours,
            stereoset_sentence_scores(
                SentenceScorer(load_policy(run_cfg.model, "cpu")[0], adapted_tokenizer, 8), examples
            ),
        )
        for a, b in zip(x, y)
    )
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        "split.json",
    }
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "transformers" and "merged" in meta["tags"]
    metrics = {m["type"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert {"ss", "lms", "icat"} <= metrics
    assert str(finished_run) not in card and "/tmp/" not in card  # no path of the machine that wrote it


def test_the_adapter_exports_with_the_same_card(finished_run, tmp_path):
    out = export(export_cfg(finished_run, tmp_path / "adapter", "merged=false"))
    assert (out / "adapter_model.safetensors").is_file()
    meta = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert meta["library_name"] == "peft"


@pytest.mark.parametrize("case", ["no adapter", "not empty", "hub unreachable"])
def test_bad_exports_are_refused_and_write_nothing(finished_run, tmp_path, case, monkeypatch):
    import bias_unlearn.jobs.export as job

    run, out, extra = finished_run, tmp_path / "out", []
    if case == "no adapter":
        run = tmp_path / "bare"
        run.mkdir()
        (run / "config.yaml").write_text("seed: 0\n")
    elif case == "not empty":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    else:
        monkeypatch.setattr(job, "hub_reachable", lambda: False)
        extra = ["push_to_hub=someone/debiased"]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(
        ConfigError,
        match={"no adapter": "no delivered adapter", "not empty": "not empty", "hub unreachable": "hub is unreachable"}[
            case
        ],
    ):
        export(export_cfg(run, out, *extra))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert case == "not empty" or not out.exists()


def test_documented_export_commands_run_fast(finished_run, tmp_path, monkeypatch):
    """Each export.py command of the README and docs, on a tiny finished run (push_to_hub checked, not uploaded)."""
    import bias_unlearn.jobs.export as job
    from tests.helpers import readme_commands

    commands = readme_commands("export.py")
    assert commands
    monkeypatch.setattr(job, "hub_reachable", lambda: False)  # this machine has no hub: the upload is refused
    for i, args in enumerate(commands):
        kept = [a for a in args if not a.startswith(("run=", "out="))]
        cfg = export_cfg(finished_run, tmp_path / f"out{i}", *kept)
        if any(a.startswith("push_to_hub=") for a in args):
            with pytest.raises(ConfigError, match="hub is unreachable"):
                export(cfg)
        else:
            assert (export(cfg) / "README.md").is_file()
