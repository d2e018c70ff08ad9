"""The model a job scores or trains: a model config's base model, optionally with a saved LoRA adapter, on the
device a job asks for."""

from __future__ import annotations

import torch

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.models.loading import load_model, resolve_dtype
from bias_unlearn.models.lora import load_adapter


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return device


def load_base(model_cfg, device: str, place: str | None = None):  # a model config node or ModelConfig
    """(model, tokenizer) of a model config, loaded in the dtype of the ``device`` it will run on (``auto``: bf16 on
    CUDA, fp32 on CPU) and placed on ``place`` (default: that device). Every job loads through here, so a base model
    and the same base under an adapter are one model, numerically: casting a loaded model instead would also round
    buffers transformers keeps in fp32 (the rotary ``inv_freq``)."""
    return load_model(
        model_cfg.source,
        model_cfg.name_or_path,
        resolve_dtype(getattr(model_cfg, "dtype", "auto"), device),
        place or device,
        getattr(model_cfg, "revision", None),
    )


def load_policy(model_cfg, device: str, adapter: str | None = None):
    """The model named by a model config, optionally wrapped with a saved LoRA adapter."""
    model, tokenizer = load_base(model_cfg, device)
    if adapter:
        model = load_adapter(model, adapter)
        model.eval()
    return model, tokenizer
