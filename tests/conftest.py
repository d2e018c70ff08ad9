"""Fixtures shared by every test: tiny models and benchmark files built in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bias_unlearn.config.schema  # noqa: F401 - registers the config schemas for every compose in the tests
from tests.helpers import FIXTURES, make_model, make_stereoset_rows, make_tokenizer


@pytest.fixture(params=["gpt2", "llama"])
def tiny(request):
    """(model, tokenizer) of one architecture, randomly initialised."""
    tokenizer = make_tokenizer(request.param)
    return make_model(request.param, len(tokenizer)), tokenizer


@pytest.fixture(scope="session")
def stereoset_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "stereoset.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in make_stereoset_rows()) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama-shaped model and tokenizer saved like a local checkpoint."""
    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = make_tokenizer("llama")
    make_model("llama", len(tokenizer)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def data_overrides(stereoset_jsonl):
    """Command-line overrides that point every benchmark at the fixture files."""
    return [
        "data.stereoset.source=local",
        f"data.stereoset.path={stereoset_jsonl}",
        "data.crows_pairs.source=local",
        f"data.crows_pairs.path={FIXTURES / 'crows_pairs_anonymized.csv'}",
        "data.bbq.source=local",
        f"data.bbq.paths=[{FIXTURES / 'bbq_religion.jsonl'}]",
        "data.general.source=local",
        *[
            f"data.general.paths.{task}={FIXTURES / f'general_{task}.jsonl'}"
            for task in ("wiki", "piqa", "mmlu", "openbookqa")
        ],
    ]


@pytest.fixture
def cfg_train(tmp_path, tiny_model_dir, stereoset_jsonl):
    """compose(*overrides) -> the train config of a tiny in-process run writing to tmp_path/run."""
    from tests.helpers import compose_config, tiny_run_overrides

    def compose(*overrides: str):
        return compose_config(
            "train", *tiny_run_overrides(tmp_path / "run", tiny_model_dir, stereoset_jsonl), *overrides
        )

    return compose
