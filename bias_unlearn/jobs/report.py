"""The sweep report job behind ``report.py``: every run of a multirun compared (reports/sweep.py)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.reports.sweep import write_sweep_report


def make_report(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg, "sweep_dir"):
        raise ConfigError("sweep_dir is required: python report.py sweep_dir=multirun/<task>/<time>")
    try:
        result = write_sweep_report(cfg.sweep_dir, cfg.get("out_dir"), cfg.get("reference") or "bias_unlearn")
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    print(result["markdown"])
    return result
