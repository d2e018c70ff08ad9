"""No command of its own: the model every benchmark measures, a local model directory (``--model-dir``: the tests'
tiny model) or else the offline SmolLM2-135M-Instruct."""

from __future__ import annotations

import torch

from bias_unlearn.models.loading import load_model

OFFLINE_MODEL = "smollm2-135m-instruct"


def bench_model(model_dir: str | None, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """(model, tokenizer) in ``dtype`` on ``device``."""
    if model_dir:
        return load_model("local", model_dir, dtype, device)
    return load_model("offline", OFFLINE_MODEL, dtype, device)
