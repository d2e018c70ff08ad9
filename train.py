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
from bias_unlearn.jobs.cli import preflight, run_cli

CONF = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    if cfg.method.get("decoding") is not None:  # Self-Debias, CAFIE: nothing trains (bias_unlearn/jobs/decode.py)
        from bias_unlearn.jobs.decode import run_decoding

        run_cli(run_decoding, cfg)
        return
    if cfg.method.get("editing") is not None:  # BiasEdit: an editor network (bias_unlearn/jobs/edit.py)
        from bias_unlearn.jobs.edit import run_editing

        run_cli(run_editing, cfg)
        return
    from bias_unlearn.jobs.train import run_training

    run_cli(run_training, cfg)


if __name__ == "__main__":
    preflight("train", sys.argv[1:], CONF, check=train_settings)
    main()
