"""Export a finished run's debiased model: merged into the base model's weights (or the adapter), with a model card.

python export.py run=outputs/train/<time> out=debiased-model                 # merged, loadable with transformers
python export.py run=outputs/train/<time> out=adapter merged=false           # the LoRA adapter
python export.py run=outputs/train/<time> out=debiased push_to_hub=user/repo # and uploaded
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_unlearn.jobs.cli import preflight, run_cli

CONF = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from bias_unlearn.jobs.export import export

    run_cli(export, cfg)


if __name__ == "__main__":
    preflight("export", sys.argv[1:], CONF)
    main()
