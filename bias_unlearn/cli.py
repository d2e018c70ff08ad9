"""Shared behaviour of the entry points: known input errors end with one clear line, not a traceback."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from bias_unlearn.data.records import DataError
from bias_unlearn.errors import ConfigError, TrainingDiverged
from bias_unlearn.io import write_text
from bias_unlearn.models.loading import ModelLoadError
from bias_unlearn.offline import OfflineAssetError

log = logging.getLogger("bias_unlearn")
USER_ERRORS = (ConfigError, DataError, ModelLoadError, OfflineAssetError)


ERROR_FILE = "error.txt"  # a failed job's one-line reason, in its run directory (the sweep report shows it)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_cli(job, cfg):
    """Run ``job(cfg)``; a known failure ends with one line and its exit status: 2 bad input, 3 a diverged run,
    143 SIGTERM. Inside a multirun a failed job (bad input, divergence) leaves its reason in ``error.txt`` and
    the sweep goes on to the next job; the sweep report lists it as failed."""
    try:
        return job(cfg)
    except SIGTERMException:  # a scheduler's stop: like Ctrl-C, the last checkpoint stays (the log says how to resume)
        print("error: stopped by SIGTERM; the run directory keeps its last checkpoint", file=sys.stderr)
        sys.exit(143)
    except (*USER_ERRORS, TrainingDiverged) as err:  # a diverged run has written its report; it still failed
        log.debug("traceback", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        run_dir = OmegaConf.select(cfg, "paths.output_dir")
        if in_multirun() and run_dir:
            log.error("this job failed (%s); the sweep goes on", err)
            write_text(Path(run_dir) / ERROR_FILE, f"{err}\n")
            return None
        sys.exit(3 if isinstance(err, TrainingDiverged) else 2)


def check_config_choices(argv: list[str], conf_dir: str | Path) -> None:
    """Refuse a ``group=choice`` override that names no file in ``conf/<group>/`` with one line and exit status 2,
    before Hydra composes (Hydra prints its own error but exits 1, like a crash)."""
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = Path(conf_dir) / key
        if "." in key or "(" in value or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):
            if choice not in options and choice != "null":
                print(f"error: {key}={choice}: no such config in conf/{key}/; choose from {', '.join(options)}",
                      file=sys.stderr)
                sys.exit(2)
