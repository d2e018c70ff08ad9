"""Side effects added to finished training runs: ``python evaluate.py runs=DIR benchmarks=[bbq,general]``.

A grid may train with some side effects off (they cost time) or score them with an older item format. This scores
them afterwards for every run under DIR (a run directory, or a sweep of them; reports/runs.py reads them): the base
model and the run's delivered adapter on the same items, with the run's own model and scoring settings and this
job's ``data`` config, and writes both into the run's report.json (replacing what it held for those benchmarks),
report.md and the adapter's model card. The base model is scored once per model and scoring setting, not once per
run, and where the runs trained with ``eval.cache_before`` its side effects are read from and kept in the cache that
training runs share (eval/side_effect_cache.py), so a later sweep or training run of the same model does not score
them again; nothing is written to a run until both of its sides are scored.

StereoSet is scored only for a run that trained without it (``eval.before=false eval.after=false``: a dev-only
study, whose adopted candidate is test-scored once, afterwards): its held-out test split is rebuilt from the run's
config and checked against the run's split.json (no target it trained or chose on), and the base model is scored on
it once per split. A run holding StereoSet scores is refused: they belong to its training and are never replaced.
``dtype: auto`` resolves on this job's device: a run trained in bf16 on a GPU and completed on a CPU gets fp32
scores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import ScoringConfig
from bias_unlearn.data.sources import build_stereoset_split, load_eval_benchmarks
from bias_unlearn.data.splits import check_held_out
from bias_unlearn.eval.outcomes import Evaluation, Outcomes
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.side_effect_cache import SCORING_KEYS, SideEffectCache
from bias_unlearn.eval.side_effects import SIDE_EFFECTS, check_side_effect_data, evaluate_model
from bias_unlearn.io import write_text
from bias_unlearn.models.policy import load_policy, resolve_device
from bias_unlearn.reports.markdown import write_run_report
from bias_unlearn.reports.model_card import model_card
from bias_unlearn.reports.runs import ADAPTER, CONFIG, ERROR_FILE, Run, find_runs

log = logging.getLogger(__name__)
MODEL_KEYS = ("source", "name_or_path", "dtype", "revision")  # what makes two runs' base models the same


@dataclass(frozen=True)
class FinishedRun:
    run: Run
    cfg: DictConfig  # the run's own config, in today's layout
    scoring: ScoringConfig

    @property
    def base_key(self) -> tuple:
        """Runs with equal keys share one scoring of the base model."""
        scoring = self.scoring.as_dict()
        return tuple(str(self.cfg.model.get(key)) for key in MODEL_KEYS) + tuple(scoring[k] for k in SCORING_KEYS)


def finished(run: Run) -> FinishedRun:
    """A finished run's config and scoring settings; refused with the file at fault when one is missing."""
    if not run.has_adapter:
        raise ConfigError(f"{run.path / ADAPTER}: no delivered adapter (adapter_config.json) in this run")
    if run.report is None:
        raise ConfigError(f"{run.path / 'report.json'}: {run.status.removeprefix('failed: ')}")
    if not run.config:
        raise ConfigError(
            f"{run.path / CONFIG}: not readable as a training run's config (the run's settings: model and scoring)"
        )
    try:
        cfg = OmegaConf.create(run.config)
        scoring = ScoringConfig.from_config(cfg.scoring)
        missing = [key for key in ("source", "name_or_path") if cfg.model.get(key) is None]
    except Exception as err:  # noqa: BLE001 - a missing node or a bad scoring setting: the file is at fault
        raise ConfigError(f"{run.path / CONFIG}: not readable as a training run's config ({err})") from err
    if missing:
        raise ConfigError(f"{run.path / CONFIG}: model.{missing[0]} is not set (the base model to score)")
    return FinishedRun(run, cfg, scoring)


def add_side_effects(report, before: Evaluation, after: Evaluation, names: list[str]) -> None:
    """Put the scored benchmarks into ``report`` (a RunReport), with their per-example outcomes."""
    for name in names:
        getattr(report, name).before, getattr(report, name).after = getattr(before, name), getattr(after, name)
    for name in {"stereoset", "crows_pairs"} & set(names):  # the per-example outcomes the paired changes read
        for side, scored in (("before", before), ("after", after)):
            outcomes = getattr(report.outcomes, side) or Outcomes()
            setattr(outcomes, name, getattr(scored.outcomes, name))
            setattr(report.outcomes, side, outcomes)
    report.summary.added_later = sorted(set(report.summary.added_later) | set(names))


def write_run(done: FinishedRun) -> None:
    report, path = done.run.report, done.run.path
    write_run_report(report, path)
    write_text(path / ADAPTER / "README.md", model_card(report, done.cfg))


def held_out_test(done: FinishedRun) -> list:
    """The run's StereoSet test examples (its eval.kinds), rebuilt from its config and checked against its split.json;
    refused where the run already holds StereoSet scores."""
    report, path = done.run.report, done.run.path
    if report.stereoset.before is not None or report.stereoset.after is not None:
        raise ConfigError(
            f"{path / 'report.json'}: holds StereoSet scores from its training; they are never re-scored (StereoSet is "
            "added only to runs trained with eval.before=false eval.after=false)"
        )
    kinds = tuple(done.cfg.eval.get("kinds", ("intrasentence", "intersentence")))
    examples = [ex for ex in build_stereoset_split(done.cfg.data).test if ex.kind in kinds]
    check_held_out(str(path / ADAPTER), examples, "test")
    return examples


def score_model(
    done: FinishedRun,
    device: str,
    data: dict,
    adapter: str | None = None,
    stereoset: list | None = None,
    data_cfg: DictConfig | None = None,
) -> Evaluation:
    """The side effects of the run's base model (or with ``adapter``), and StereoSet on ``stereoset`` when given;
    the model is freed before the next loads. The base model's side effects go through the shared cache when the run
    trained with ``eval.cache_before`` (``data_cfg``: this job's data settings, part of the cache key); an adapted
    model's are its own and never cached."""
    model, tokenizer = load_policy(done.cfg.model, device, adapter)
    try:
        scorer = make_scorer(model, tokenizer, done.scoring, progress=True)
        cache = None
        if adapter is None and data_cfg is not None and done.cfg.get("eval", {}).get("cache_before"):
            scoring = done.scoring.as_dict()  # its defaults filled in, as a training run's config has them
            keyed = OmegaConf.create({"model": done.cfg.model, "scoring": scoring, "data": data_cfg})
            cache = SideEffectCache(keyed, model)
        return evaluate_model(scorer, done.scoring, data, stereoset, cache)
    finally:
        del model, tokenizer
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def complete_runs(cfg: DictConfig) -> list:
    """Score ``cfg.benchmarks`` (side effects only) before and after for every run under ``cfg.runs``; returns the
    paths of the runs it completed. Runs that failed (error.txt) are skipped with a warning."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    names = list(cfg.benchmarks)
    wrong = [name for name in names if name not in ("stereoset", *SIDE_EFFECTS)]
    if wrong or not names:
        raise ConfigError(
            f"runs= adds benchmarks to finished runs: benchmarks must be some of {('stereoset', *SIDE_EFFECTS)}, got "
            f"{names}"
        )
    if cfg.get("adapter"):
        raise ConfigError("adapter= and runs= together: runs= scores each run's own adapter (its adapter/ folder)")
    try:
        found = find_runs(cfg.runs)
    except FileNotFoundError as err:
        raise ConfigError(f"runs={cfg.runs}: {err}") from None
    skipped = [run for run in found if (run.path / ERROR_FILE).exists() or not (run.path / "report.json").exists()]
    for run in skipped:
        log.warning("skipping %s: %s", run.path, run.status)
    runs = [finished(run) for run in found if run not in skipped]  # every run checked before any scoring
    if not runs:
        raise ConfigError(
            f"runs={cfg.runs}: no finished run in it (failed: {ERROR_FILE}, or no report.json); nothing to score"
        )
    tests = {done.run.path: held_out_test(done) for done in runs} if "stereoset" in names else {}
    data = load_eval_benchmarks(cfg.data, [name for name in names if name != "stereoset"])
    check_side_effect_data(data)
    device = resolve_device(cfg.device)
    base: dict[tuple, Evaluation] = {}
    for done in tqdm(runs, desc="runs", unit="run"):
        started = time.perf_counter()
        test = tests.get(done.run.path)
        key = done.base_key + (tuple(sorted(f"{ex.bias_type}:{ex.target}:{ex.kind}" for ex in test or ())),)
        if key not in base:  # one base scoring per model, scoring setting and test split
            base[key] = score_model(done, device, data, stereoset=test, data_cfg=cfg.data)
        after = score_model(done, device, data, str(done.run.path / ADAPTER), stereoset=test)
        add_side_effects(done.run.report, base[key], after, names)
        write_run(done)
        log.info("%s: %s added (%.0f s)", done.run.path, ", ".join(names), time.perf_counter() - started)
    return [done.run.path for done in runs]
