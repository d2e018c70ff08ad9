"""Evaluate a causal LM (optionally with a LoRA debiasing adapter) on StereoSet, CrowS-Pairs and BBQ.

    python evaluate.py                                  # offline model, offline StereoSet test split, all benchmarks
    python evaluate.py model=gpt2_medium adapter=DIR    # a hub model with an adapter
    python evaluate.py benchmarks=[stereoset] split=all scoring.start=legacy
    python evaluate.py runs=multirun/methods/<time> benchmarks=[bbq,general]   # side effects added to finished runs
"""
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_unlearn.cli import check_config_choices, run_cli


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from bias_unlearn.evaluation import run_evaluation
    from bias_unlearn.run_completion import complete_runs

    run_cli(complete_runs if cfg.get("runs") else run_evaluation, cfg)


if __name__ == "__main__":
    check_config_choices(sys.argv[1:], Path(__file__).parent / "conf")
    main()
