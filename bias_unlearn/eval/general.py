"""General ability by lm-evaluation-harness, run in-process on the live model: the same object the other benchmarks
score (the base model with its adapter disabled, or the debiased one), wrapped in the harness's HF model class.

Offline (or from local files) the harness runs its own PIQA, MMLU and OpenBookQA task definitions (their prompts,
choices and metrics, included from the installed harness) on the project's items, written in each task's native
layout beside a task file that points the harness at them (``dataset_path: json``, ``data_files``); held-out text
becomes a ``loglikelihood_rolling`` task (word / byte perplexity, bits per byte). With the hub the harness's stock
tasks run by name and read their own datasets. Results are the harness's: ``acc`` and ``acc_norm`` with their
standard errors (in %, as the other tables), the task's version and the harness's version.

Two things differ from a ``lm_eval`` command line, both said in every result: the offline MMLU rows name no subject,
so their prompt has no "about <subject>" line, and MMLU's ``acc_norm`` equals ``acc`` (one-letter choices).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.data.general import TEXT_TASK, GeneralData
from bias_unlearn.io import write_text
from bias_unlearn.offline import cache_dir

log = logging.getLogger(__name__)
STOCK = {
    "piqa": "piqa/piqa.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "mmlu": "mmlu/default/_default_template_yaml",
}
PREFIX = "bias_unlearn_"  # local task names: never a stock task's


def harness_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def native_row(task: str, item) -> dict:
    """One item in the layout of the harness's own task for it."""
    if task == TEXT_TASK:
        return {"text": item}
    if task == "piqa":
        if len(item.options) != 2:
            raise ConfigError(f"data.general: a PIQA item has {len(item.options)} options, the harness's task two")
        return {"goal": item.question, "sol1": item.options[0], "sol2": item.options[1], "label": item.answer}
    if task == "mmlu":
        if len(item.options) != 4:
            raise ConfigError(f"data.general: an MMLU item has {len(item.options)} options, the harness's task four")
        return {"question": item.question, "choices": list(item.options), "answer": item.answer}
    letters = [chr(ord("A") + k) for k in range(len(item.options))]
    return {
        "question_stem": item.question,
        "choices": {"text": list(item.options), "label": letters},
        "answerKey": letters[item.answer],
    }


def task_config(task: str, data_file: Path) -> str:
    """The YAML of one local task: the harness's own definition, reading ``data_file``."""
    import lm_eval.tasks

    source = {
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "validation_split": None,
        "training_split": None,
        "fewshot_split": None,
    }
    if task == TEXT_TASK:
        config = {
            "task": PREFIX + task,
            **source,
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{text}}",
            "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
            "metadata": {"version": 1.0},
        }
    else:
        config = {"include": str(Path(lm_eval.tasks.__file__).parent / STOCK[task]), "task": PREFIX + task, **source}
        if task == "mmlu":  # one task over every row (no subject): the template's prompt without its description
            config.update(
                description="",
                metric_list=[
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                ],
            )
    return json.dumps(config, indent=1)  # JSON is YAML


def local_tasks(items: dict) -> dict[str, Path]:
    """{task: YAML path} for the project's items, written once per content under the cache."""
    rows = {task: [native_row(task, item) for item in task_items] for task, task_items in items.items()}
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "harness" / digest
    paths = {}
    for task, task_rows in rows.items():
        data, config = folder / f"{task}.jsonl", folder / f"{task}.yaml"
        if not config.exists():
            write_text(data, "".join(json.dumps(row) + "\n" for row in task_rows))
            write_text(config, task_config(task, data))
        paths[task] = config
    return paths


def check_harness_tasks(names: list[str]) -> list[str]:
    """The harness's own task names, refused where it knows none (one line, before any model loads)."""
    from lm_eval.tasks import TaskManager

    known = set(TaskManager().all_tasks)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"data.general.tasks: lm-evaluation-harness {harness_version()} has no task {unknown[0]!r} "
            "(python -m lm_eval ls tasks lists them)"
        )
    return names


def task_result(raw: dict, version, n: int) -> dict:
    """One task's numbers: accuracies and standard errors in %, perplexities as they are."""
    out = {"n": n, "version": version}
    for key, value in raw.items():
        metric, _, _ = key.partition(",")
        if metric in ("alias", "name", "sample_len"):
            continue
        number = value if isinstance(value, (int, float)) else None  # "N/A" where the harness gives no error
        scale = 100 if metric.startswith("acc") else 1
        out[metric] = None if number is None else number * scale
    if "word_perplexity" in out:
        out["perplexity"] = out["word_perplexity"]
    return out


def run_harness(
    scorer, tasks: list[str], limit: int | None = None, defaults: bool = False, batch_size: int | None = None
) -> dict:
    """lm-evaluation-harness's ``simple_evaluate`` on the scorer's model and tokenizer (0-shot), ``batch_size``
    requests a forward (default: the scorer's), the model's training mode restored afterwards (the harness leaves it
    in eval)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tokenizer = scorer.model, scorer.tokenizer
    was_training = model.training
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size or scorer.batch_size)
        return lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=0,
            limit=limit,
            task_manager=TaskManager(include_defaults=defaults),
            bootstrap_iters=1000,
            log_samples=False,
            verbosity="WARNING",
        )
    finally:
        model.train(was_training)


def harness_crows_pairs(scorer, pairs) -> dict:
    """The harness's own ``crows_pairs_english`` task (its prompts and process_results) on ``pairs``: % of pairs whose
    more stereotypical sentence has the higher summed log-probability, and the mean |difference| (nats). The
    cross-check of this project's CrowS-Pairs scorer in ``sum`` mode (docs/scoring.md)."""
    import lm_eval.tasks

    rows = [{"sent_more": p.sent_more, "sent_less": p.sent_less, "bias_type": p.bias_type} for p in pairs]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    folder = cache_dir() / "harness" / f"crows-{digest}"
    data, config = folder / "crows_pairs.jsonl", folder / "crows_pairs.yaml"
    if not config.exists():
        write_text(data, "".join(json.dumps(row) + "\n" for row in rows))
        stock = Path(lm_eval.tasks.__file__).parent / "crows_pairs" / "crows_pairs_english.yaml"
        write_text(
            config,
            json.dumps(
                {
                    "include": str(stock),
                    "task": PREFIX + "crows_pairs",
                    "tag": [],
                    "dataset_path": "json",
                    "dataset_name": None,
                    "dataset_kwargs": {"data_files": {"test": str(data)}},
                },
                indent=1,
            ),
        )
    result = run_harness(scorer, [str(config)])["results"][PREFIX + "crows_pairs"]
    return {
        "n": len(pairs),
        "pct_stereotype": 100 * result["pct_stereotype,none"],
        "likelihood_diff": result["likelihood_diff,none"],
        "lm_eval": harness_version(),
    }


def evaluate_general(scorer, data: GeneralData, batch_size: int | None = None) -> dict:
    """{task: the harness's results, with its version} for every task of ``data``, on the scorer's model and
    tokenizer (``batch_size``: requests a harness forward, default the scorer's); the model's training mode is
    restored afterwards (the harness leaves it in eval)."""
    paths = local_tasks(data.items) if data.items else {}
    tasks = [str(path) for path in paths.values()] + list(data.hub_tasks)
    result = run_harness(scorer, tasks, data.limit, defaults=bool(data.hub_tasks), batch_size=batch_size)
    names = {PREFIX + task: task for task in paths} | {name: name for name in data.hub_tasks}
    version = result.get("lm_eval_version") or harness_version()
    return {
        task: task_result(result["results"][name], result["versions"].get(name), result["n-samples"][name]["effective"])
        | {"lm_eval": version}
        for name, task in names.items()
        if name in result["results"]
    }
