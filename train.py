"""Train a BiasUnlearn LoRA debiasing adapter.

python train.py                                   # offline model, CPU preset: evaluate, unlearn, evaluate
python train.py model=llama3_8b loss=no_kl trainer=gpu
python train.py -m method=bias_unlearn,no_kl,no_retain,no_adv seed=0,1
python train.py model=mistral_7b trainer=gpu strategy=fsdp
python train.py method=self_debias                # a decoding-time baseline: scored like a trained method
python train.py method=biasedit                   # the model-editing baseline
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_unlearn.config.schema import train_settings
from bias_unlearn.jobs.cli import preflight, run_cli, training_job

CONF = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_cli(training_job(cfg), cfg)  # LoRA training, a decoding-time method or BiasEdit, as the method says


if __name__ == "__main__":
    preflight("train", sys.argv[1:], CONF, check=train_settings)
    main()
