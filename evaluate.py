"""Evaluate a causal LM (optionally with a LoRA debiasing adapter) on StereoSet, CrowS-Pairs, BBQ and general ability.

python evaluate.py                                  # offline model, offline StereoSet test split, all benchmarks
python evaluate.py model=gpt2_medium adapter=DIR    # a hub model with an adapter
python evaluate.py benchmarks=[stereoset] split=all scoring.start=legacy
python evaluate.py runs=multirun/methods/<time> benchmarks=[bbq,general]   # side effects added to finished runs
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_unlearn.config.schema import evaluate_settings
from bias_unlearn.jobs.cli import preflight, run_cli

CONF = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from bias_unlearn.jobs.complete_runs import complete_runs
    from bias_unlearn.jobs.evaluate import run_evaluation

    run_cli(complete_runs if cfg.get("runs") else run_evaluation, cfg)


if __name__ == "__main__":
    preflight("evaluate", sys.argv[1:], CONF, check=evaluate_settings)
    main()
