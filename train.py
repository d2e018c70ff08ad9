"""Train a BiasUnlearn LoRA debiasing adapter.

    python train.py                                   # offline model, CPU preset: evaluate, unlearn, evaluate
    python train.py model=llama3_8b loss=no_kl trainer=gpu
    python train.py -m loss=full,no_kl,no_retain,no_adv seed=0,1
    python train.py model=mistral_7b trainer=gpu strategy=fsdp
"""
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_unlearn.cli import check_config_choices, run_cli


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from bias_unlearn.training import run_training

    run_cli(run_training, cfg)


if __name__ == "__main__":
    check_config_choices(sys.argv[1:], Path(__file__).parent / "conf")
    main()
