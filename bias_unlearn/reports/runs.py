"""Run directories, read one way for everyone: the sweep report, ``evaluate.py runs=`` and the notebooks.

A run directory is what ``train.py`` writes (docs/usage.md): ``config.yaml``, ``report.json``, ``adapter/`` and,
when a job failed with a known error, ``error.txt`` with its one-line reason. A run without a readable report (it
crashed, was interrupted or is still running) is still a run: its ``status`` says why it has no results. Configs
saved by earlier versions are read in today's layout (config/upgrade.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from omegaconf import OmegaConf

from bias_unlearn.config.errors import ReportError
from bias_unlearn.config.methods import Objective, method_name
from bias_unlearn.config.upgrade import flatten, upgrade
from bias_unlearn.reports.run_report import KIND, RunReport

REPORT, CONFIG, ADAPTER = "report.json", "config.yaml", "adapter"
ERROR_FILE = "error.txt"  # a failed job's one-line reason (jobs/cli.py writes it; reports list it)
DEV_ONLY = "dev only (eval.after=false)"
# What a run trained with, apart from its seed: runs of one method that differ here are variants of it.
TRAINING_KEYS = ("model", "train", "method", "optim")
NOT_TRAINING = ("train.seed", "train.dev_batch", "optim.lr", "method.name")  # the seed, dev batching, lr's copy


@dataclass
class Run:
    path: Path
    status: str  # ok | failed: <why> | no after-evaluation | DEV_ONLY
    report: RunReport | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")

    @cached_property
    def config(self) -> dict:
        """The run's saved (resolved) config in today's layout; empty when missing or unreadable."""
        for path in (self.path / CONFIG, self.path / ".hydra" / "config.yaml"):
            try:
                return upgrade(OmegaConf.to_container(OmegaConf.load(path)) or {})
            except Exception:  # noqa: BLE001 - no readable config: nothing is known of the run's settings
                continue
        return {}

    @property
    def method(self) -> str:
        """From the report, else derived from the saved config (a crashed run still names its method)."""
        if self.report is not None:
            return self.report.summary.method
        try:
            return method_name(Objective.from_config(self.config))
        except (KeyError, TypeError, ValueError):
            return "?"

    @property
    def training_config(self) -> dict:
        """What the run trained with apart from its seed, flattened (``train.forget_batch`` -> 4)."""
        cfg = self.config
        if not cfg:
            return {}
        trained = {key: cfg.get(key) for key in TRAINING_KEYS if cfg.get(key) is not None}
        trained["trainer.max_steps"] = (cfg.get("trainer") or {}).get("max_steps")
        flat = flatten(trained)
        return {key: value for key, value in flat.items() if key not in NOT_TRAINING}

    @property
    def seed(self) -> int | None:
        """The split seed (tables, figures and the seeds summary group by it); None without a config."""
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int) else None

    @property
    def dev_only(self) -> bool:
        """The run was told not to score test (a preset sweep's candidate): its dev columns are its result."""
        return (self.config.get("eval") or {}).get("after") is False

    @property
    def has_adapter(self) -> bool:
        return (self.path / ADAPTER / "adapter_config.json").is_file()


def is_run_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and not path.name.startswith(".")
        and any((path / name).exists() for name in (".hydra", CONFIG, REPORT))
    )


def read_run(path: Path) -> Run:
    path = Path(path)
    if not (path / REPORT).exists():
        if (path / ERROR_FILE).exists():
            return Run(path, f"failed: {(path / ERROR_FILE).read_text(encoding='utf-8').strip()}")
        return Run(path, "failed: no report.json (crashed, interrupted or still running)")
    try:
        report = RunReport.load(path / REPORT)
    except ReportError as exc:
        return Run(path, f"failed: {exc}")
    if report.summary.diverged:
        where = report.summary.diverged
        return Run(path, f"failed: diverged at step {where['step']} ({where['term']})", report)
    overall = (report.stereoset.after or {}).get(KIND, {}).get("overall") or {}
    if overall and overall.get("ss") is None:  # NaN scores are written as null: a model with undefined scores
        return Run(path, "failed: undefined scores after training (NaN)", report)
    if not (report.stereoset.after or {}).get(KIND):
        run = Run(path, "no after-evaluation", report)
        run.status = DEV_ONLY if run.dev_only else run.status
        return run
    return Run(path, "ok", report)


def _order(path: Path):
    head = path.name.split("_", 1)[0]
    return (int(head), path.name) if head.isdigit() else (math.inf, path.name)


def find_runs(root: str | Path) -> list[Run]:
    """``root`` itself when it is a run directory, else every run directory in it (a sweep), in job order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the directory does not exist")
    if (root / REPORT).is_file() or (root / CONFIG).is_file():
        return [read_run(root)]
    runs = [read_run(p) for p in sorted(root.iterdir(), key=_order) if is_run_dir(p)]
    if not runs:
        raise FileNotFoundError(
            f"{root} holds no run directories (expected train.py outputs: a run directory or a multirun sweep of them)"
        )
    return runs
