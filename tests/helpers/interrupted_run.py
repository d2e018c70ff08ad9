"""A tiny training run that interrupts itself, for the resume tests (a subprocess: SIGKILL takes the process).

    python -m tests.helpers.interrupted_run --at step:N|save:N|term:N [overrides ...]

- ``step:N``: SIGKILL as training step N (global step) begins: between two dev evaluations;
- ``save:N``: SIGKILL halfway through writing the N-th resume checkpoint (half its bytes on disk);
- ``term:N``: SIGTERM as step N begins (what a cluster scheduler sends), handled by the training job;
- ``none``: run to the end.
Exits as train.py does (through bias_unlearn.jobs.cli.run_cli).
"""

from __future__ import annotations

import argparse
import io
import os
import signal

import torch


def kill_at_step(step: int, sig: int) -> None:
    from bias_unlearn.unlearning.module import BiasUnlearnModule

    original = BiasUnlearnModule.training_step

    def training_step(self, chunk, batch_idx):
        if self.global_step == step:
            os.kill(os.getpid(), sig)
        return original(self, chunk, batch_idx)

    BiasUnlearnModule.training_step = training_step


def kill_during_save(nth: int) -> None:
    from lightning.fabric.plugins.io import torch_io

    original, calls = torch_io._atomic_save, []

    def atomic_save(checkpoint, path):
        calls.append(path)
        if len(calls) < nth:
            return original(checkpoint, path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with open(path, "wb") as f:
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    torch_io._atomic_save = atomic_save


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--at", default="none")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    kind, _, n = args.at.partition(":")
    if kind == "step":
        kill_at_step(int(n), signal.SIGKILL)
    elif kind == "term":
        kill_at_step(int(n), signal.SIGTERM)
    elif kind == "save":
        kill_during_save(int(n))
    from bias_unlearn.jobs.cli import run_cli
    from bias_unlearn.jobs.train import run_training
    from tests.helpers import compose_config

    run_cli(run_training, compose_config("train", *args.overrides))


if __name__ == "__main__":
    main()
