"""The model a job scores or trains: a model config's base model, optionally with a saved LoRA adapter, on the
device a job asks for."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.models.loading import load_model
from bias_unlearn.models.lora import load_adapter


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return device


def load_policy(model_cfg: DictConfig, device: str, adapter: str | None = None):
    """The model named by a model config, optionally wrapped with a saved LoRA adapter."""
    model, tokenizer = load_model(
        model_cfg.source, model_cfg.name_or_path, model_cfg.get("dtype", "auto"), device, model_cfg.get("revision")
    )
    if adapter:
        model = load_adapter(model, adapter)
        model.eval()
    return model, tokenizer
