"""Compare every run of a sweep: one table (markdown, CSV, JSON) and the figures, written into the sweep directory.

    python train.py -m experiment=methods                    # the baseline grid
    python report.py sweep_dir=multirun/methods/<time>       # comparison.md / .csv / .json + sweep_*.png
"""
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.cli import check_config_choices, run_cli


def make_report(cfg: DictConfig) -> dict:
    from bias_unlearn.errors import ConfigError
    from bias_unlearn.sweep import write_sweep_report

    if OmegaConf.is_missing(cfg, "sweep_dir"):
        raise ConfigError("sweep_dir is required: python report.py sweep_dir=multirun/<task>/<time>")
    try:
        result = write_sweep_report(cfg.sweep_dir, cfg.get("out_dir"), cfg.get("reference") or "bias_unlearn")
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    print(result["markdown"])
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> None:
    run_cli(make_report, cfg)


if __name__ == "__main__":
    check_config_choices(sys.argv[1:], Path(__file__).parent / "conf")
    main()
