"""Compare every run of a sweep: one table (markdown, CSV, JSON) and the figures, written into the sweep directory.

python train.py -m experiment=methods                    # the baseline grid
python report.py sweep_dir=multirun/methods/<time>       # comparison.md / .csv / .json + sweep_*.png
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_unlearn.jobs.cli import preflight, run_cli

CONF = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> None:
    from bias_unlearn.jobs.report import make_report

    run_cli(make_report, cfg)


if __name__ == "__main__":
    preflight("report", sys.argv[1:], CONF)
    main()
