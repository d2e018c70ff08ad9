"""Side effects added to finished training runs: ``python evaluate.py runs=DIR benchmarks=[bbq,general]``.

A grid may train with some side effects off (they cost time) or score them with an older item format. This scores
them afterwards for every run under DIR (a run directory, or a sweep of them): the base model and the run's
delivered adapter on the same items, with the run's own model and scoring settings and this job's ``data`` config,
and writes both into the run's report.json (replacing what it held for those benchmarks), report.md and the
adapter's model card. StereoSet is not re-scored: its before / after belong to the run's split and its training.
The base model is scored once per model and scoring setting, not once per run; nothing is written to a run until
both of its sides are scored. The report is rewritten through ``RunReport`` (summary keys this version does not know
are dropped). ``dtype: auto`` resolves on this job's device: a run trained in bf16 on a GPU and completed on a CPU
gets fp32 side effects.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bias_unlearn.cli import ERROR_FILE
from bias_unlearn.data.sources import load_eval_benchmarks
from bias_unlearn.errors import ConfigError
from bias_unlearn.eval.report import training_report
from bias_unlearn.eval.scorer import ScoringConfig, make_scorer
from bias_unlearn.eval.side_effects import SIDE_EFFECTS, score_side_effects
from bias_unlearn.evaluation import load_policy, resolve_device
from bias_unlearn.io import write_text
from bias_unlearn.model_card import model_card
from bias_unlearn.run_report import ReportError, RunReport

log = logging.getLogger(__name__)
MODEL_KEYS = ("source", "name_or_path", "dtype", "revision")  # what makes two runs' base models the same
SCORING_KEYS = ("mode", "start", "batch_size", "share_prefix")  # what side-effect scores depend on (no bootstrap)


@dataclass(frozen=True)
class FinishedRun:
    path: Path
    cfg: DictConfig  # the run's own config.yaml
    report: RunReport
    scoring: ScoringConfig

    @property
    def base_key(self) -> tuple:
        """Runs with equal keys share one scoring of the base model."""
        scoring = self.scoring.as_dict()
        return tuple(str(self.cfg.model.get(key)) for key in MODEL_KEYS) + tuple(scoring[k] for k in SCORING_KEYS)


def find_runs(root: str | Path) -> list[Path]:
    """``root`` itself when it is a training run (it has report.json), else its subdirectories that are."""
    root = Path(root)
    if (root / "report.json").is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(f"runs={root}: no such directory")
    runs = sorted(path for path in root.iterdir() if (path / "report.json").is_file())
    if not runs:
        raise ConfigError(f"runs={root}: no report.json in it or in its subdirectories (expected a training run "
                          "directory or a sweep of them)")
    return runs


def read_run(path: Path) -> FinishedRun:
    """A finished run's config, report and scoring settings; refused with the file at fault when one is missing."""
    config = path / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{config}: not found (the run's settings: model and scoring)")
    if not (path / "adapter" / "adapter_config.json").is_file():
        raise ConfigError(f"{path / 'adapter'}: no delivered adapter (adapter_config.json) in this run")
    try:
        report = RunReport.load(path / "report.json")
    except ReportError as err:
        raise ConfigError(str(err)) from None
    try:
        cfg = OmegaConf.load(config)
        model, scoring = cfg.model, ScoringConfig.from_config(cfg.scoring)
        missing = [key for key in ("source", "name_or_path") if model.get(key) is None]
    except Exception as err:  # noqa: BLE001 - YAML, missing node or bad scoring setting: the file is at fault
        raise ConfigError(f"{config}: not readable as a training run's config ({err})") from err
    if missing:
        raise ConfigError(f"{config}: model.{missing[0]} is not set (the base model to score)")
    return FinishedRun(path, cfg, report, scoring)


def add_side_effects(report: RunReport, before: tuple[dict, dict], after: tuple[dict, dict],
                     names: list[str]) -> None:
    """Put the scored benchmarks (``before`` / ``after``: score_side_effects' results and rows) into ``report``."""
    for name in names:
        setattr(report, name, {"before": before[0][name], "after": after[0][name]})
    if "crows_pairs" in names:  # the per-pair outcomes that the paired change reads
        for side, (_, rows) in (("before", before), ("after", after)):
            report.outcomes[side] = {**(report.outcomes.get(side) or {}), "crows_pairs": rows["crows_pairs"]}
    report.summary.added_later = sorted(set(report.summary.added_later) | set(names))


def write_run(run: FinishedRun) -> None:
    run.report.save(run.path / "report.json")
    write_text(run.path / "report.md", training_report(run.report))
    write_text(run.path / "adapter" / "README.md", model_card(run.report, run.cfg))


def score_model(run: FinishedRun, device: str, data: dict, adapter: str | None = None) -> tuple[dict, dict]:
    """The side effects of the run's base model (or with ``adapter``); the model is freed before the next loads."""
    model, tokenizer = load_policy(run.cfg.model, device, adapter)
    try:
        return score_side_effects(make_scorer(model, tokenizer, run.scoring, progress=True), data, run.scoring.mode)
    finally:
        del model, tokenizer
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def complete_runs(cfg: DictConfig) -> list[Path]:
    """Score ``cfg.benchmarks`` (side effects only) before and after for every run under ``cfg.runs``; returns the
    runs it completed. Runs that failed (error.txt) are skipped with a warning."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    names = list(cfg.benchmarks)
    wrong = [name for name in names if name not in SIDE_EFFECTS]
    if wrong or not names:
        raise ConfigError(f"runs= adds side effects to finished runs: benchmarks must be some of {SIDE_EFFECTS}, got "
                          f"{names} (StereoSet's before / after are the run's own, scored when it trained)")
    if cfg.get("adapter"):
        raise ConfigError("adapter= and runs= together: runs= scores each run's own adapter (its adapter/ folder)")
    paths = find_runs(cfg.runs)
    for path in paths:
        if (path / ERROR_FILE).exists():
            log.warning("skipping %s: the run failed (%s)", path, ERROR_FILE)
    runs = [read_run(path) for path in paths if not (path / ERROR_FILE).exists()]  # every run checked first
    if not runs:
        raise ConfigError(f"runs={cfg.runs}: every run in it failed ({ERROR_FILE}); nothing to score")
    data = load_eval_benchmarks(cfg.data, names)
    device = resolve_device(cfg.device)
    base: dict[tuple, tuple[dict, dict]] = {}
    for run in tqdm(runs, desc="runs", unit="run"):
        started = time.perf_counter()
        if run.base_key not in base:
            base[run.base_key] = score_model(run, device, data)
        after = score_model(run, device, data, str(run.path / "adapter"))
        add_side_effects(run.report, base[run.base_key], after, names)
        write_run(run)
        log.info("%s: %s added (%.0f s)", run.path, ", ".join(names), time.perf_counter() - started)
    return [run.path for run in runs]
