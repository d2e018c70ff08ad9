"""LoRA adapters in one place: wrap a model for training, load a saved adapter (checked to fit), reload weights.

An adapter "fits" a model when every module its config targets exists in the model, matched the way PEFT matches
(a list entry: the full module name, or a name ending in "." + entry; ``all-linear`` adapters save full paths; a
plain string is a regex over full names), when every module its weights belong to exists, and when the weights'
shapes are those the model's layers need. Anything else stops with a :class:`ModelLoadError` naming the adapter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from bias_unlearn.config.errors import ModelLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_SAVED_PREFIX = "base_model.model."  # every key PeftModel.save_pretrained writes starts with it
_SHOWN = 8  # modules named in an error message before "and N more"


def _field(cfg, key: str):
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


def lora_targets(targets):
    """``target_modules`` as PEFT should get it: ``all-linear`` stays a string, another string becomes a one-item
    list (PEFT reads a plain string as a regex over full module names), a sequence becomes a list."""
    if targets == "all-linear":
        return targets
    if isinstance(targets, str):
        return [targets]
    return [str(t) for t in targets]


def wrap_lora(model, lora_cfg):
    """``model`` wrapped in a fresh trainable LoRA adapter described by ``lora_cfg`` (r, alpha, dropout,
    target_modules): a Hydra ``model.lora`` node or a plain dict."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(_field(lora_cfg, "r")),
        lora_alpha=int(_field(lora_cfg, "alpha")),
        lora_dropout=float(_field(lora_cfg, "dropout")),
        target_modules=lora_targets(_field(lora_cfg, "target_modules")),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_adapter_weights(model, directory: Path) -> None:
    """Put a saved adapter's weights into the live PEFT model (e.g. the best dev checkpoint)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(Path(directory) / "adapter_model.safetensors")))


def _listing(names) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return f"[{shown}{f', ... and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''}]"


def _read_config(path: Path, adapter_path: str) -> dict:
    try:
        raw = json.loads((path / ADAPTER_CONFIG).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelLoadError(f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: {err}") from err
    if not isinstance(raw, dict):
        raise ModelLoadError(
            f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: "
            f"expected a JSON object, found {type(raw).__name__}"
        )
    peft_type = raw.get("peft_type")
    if peft_type is None:
        raise ModelLoadError(f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: no peft_type")
    if str(peft_type).upper() != "LORA":
        raise ModelLoadError(f"adapter {adapter_path!r} is a {peft_type} adapter; only LoRA adapters are supported")
    rank, alpha = raw.get("r", 8), raw.get("lora_alpha", 8)
    if not (isinstance(rank, int) and not isinstance(rank, bool) and rank > 0):
        raise ModelLoadError(
            f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: r must be a positive integer, found {rank!r}"
        )
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)):
        raise ModelLoadError(
            f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: lora_alpha must be a number, found {alpha!r}"
        )
    dropout = raw.get("lora_dropout", 0.0)
    if not (isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1):
        raise ModelLoadError(
            f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: lora_dropout must be a "
            f"number in [0, 1), found {dropout!r}"
        )
    targets = raw.get("target_modules")
    if not (
        targets is None
        or isinstance(targets, str)
        or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
    ):
        raise ModelLoadError(
            f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: target_modules must be a "
            f"string or a list of strings, found {targets!r}"
        )
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as err:
            raise ModelLoadError(
                f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: target_modules "
                f"{targets!r} is not a valid regex ({err})"
            ) from err
    from peft import PeftConfig

    try:
        PeftConfig.from_pretrained(str(path))
    except Exception as err:  # noqa: BLE001 - PEFT raises many kinds for a config it cannot build
        raise ModelLoadError(f"adapter {adapter_path!r} has a malformed {ADAPTER_CONFIG}: {err}") from err
    return raw


def _read_shapes(weights: Path, adapter_path: str) -> dict[str, tuple[int, ...]]:
    """{saved key: shape} of the adapter's tensors, read without loading them where the format allows."""
    try:
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        import torch

        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items()}
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ModelLoadError(f"adapter {adapter_path!r}: could not read its weights {weights.name}: {err}") from err


def _target_matches(target: str, names: list[str], as_regex: bool) -> bool:
    if as_regex:
        return any(re.fullmatch(target, n) for n in names)
    suffix = "." + target
    return any(n == target or n.endswith(suffix) for n in names)


def _layer_dims(module):
    """(in, out) features of a layer LoRA adapts as a matrix (Linear, GPT-2's Conv1D), or None."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        return tuple(module.weight.shape)  # Conv1D stores its weight as (in, out)
    return None


def _expected_shape(module, part: str, param: str, shape: tuple[int, ...]):
    """The shape the model needs for a saved LoRA tensor, or None when it cannot tell (PEFT checks those)."""
    import torch

    dims = _layer_dims(module)
    if dims is not None and len(shape) >= 1:
        fan_in, fan_out = dims
        if part == "lora_A" and param == "weight" and len(shape) == 2:
            return shape[0], fan_in
        if part == "lora_B" and param == "weight" and len(shape) == 2:
            return fan_out, shape[1]
        if part == "lora_B" and param == "bias":
            return (fan_out,)
        if part == "lora_magnitude_vector":
            return (fan_out,)
    if isinstance(module, torch.nn.Embedding) and len(shape) == 2:
        if part == "lora_embedding_A":
            return shape[0], module.num_embeddings
        if part == "lora_embedding_B":
            return module.embedding_dim, shape[1]
    return None


def check_adapter_fits(model, adapter_path: str) -> dict:
    """The adapter's config as a dict when the adapter at ``adapter_path`` fits ``model``; else ModelLoadError."""
    path = Path(adapter_path)
    if not path.is_dir():
        raise ModelLoadError(f"adapter directory {adapter_path!r} does not exist")
    if not (path / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(f"adapter directory {adapter_path!r} has no {ADAPTER_CONFIG} (not a PEFT adapter)")
    weights = next((path / name for name in ADAPTER_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise ModelLoadError(
            f"adapter directory {adapter_path!r} has no adapter weights ({ADAPTER_WEIGHTS[0]}): not a PEFT adapter"
        )
    config = _read_config(path, adapter_path)
    kind = type(model).__name__
    modules = dict(model.named_modules())
    names = [n for n in modules if n]

    targets = config.get("target_modules")
    if targets == "all-linear":  # PEFT saves the full paths it resolved; a config still holding it fits anything
        missing = []
    elif isinstance(targets, str):
        missing = [] if _target_matches(targets, names, as_regex=True) else [targets]
    else:
        missing = [t for t in (targets or []) if not _target_matches(t, names, as_regex=False)]
    if missing:
        raise ModelLoadError(
            f"adapter {adapter_path!r} targets modules {missing[:_SHOWN]}"
            f"{f' (and {len(missing) - _SHOWN} more)' if len(missing) > _SHOWN else ''} that model "
            f"{kind} does not have: it was trained for another architecture"
        )

    shapes = _read_shapes(weights, adapter_path)
    ranks = {shape[0] for key, shape in shapes.items() if ".lora_A." in key and len(shape) == 2}
    if not config.get("rank_pattern") and ranks and ranks != {config.get("r", 8)}:
        raise ModelLoadError(
            f"adapter {adapter_path!r}: its weights have rank {sorted(ranks)} but its "
            f"{ADAPTER_CONFIG} says r={config.get('r', 8)}: the files do not belong together"
        )
    params = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    absent, wrong = [], []
    for key, shape in shapes.items():
        rel = key[len(_SAVED_PREFIX) :] if key.startswith(_SAVED_PREFIX) else key
        parts = rel.split(".")
        lora_at = next((i for i, p in enumerate(parts) if p.startswith("lora_")), None)
        if lora_at is None:  # a fully saved layer (modules_to_save): the same parameter must exist, same shape
            if rel not in params:
                absent.append(rel.rsplit(".", 1)[0])
            elif params[rel] != shape:
                wrong.append(f"{rel}: adapter {list(shape)}, model {list(params[rel])}")
            continue
        module_name = ".".join(parts[:lora_at])
        if module_name not in modules:
            absent.append(module_name)
            continue
        expected = _expected_shape(modules[module_name], parts[lora_at], parts[-1], shape)
        if expected is not None and tuple(expected) != shape:
            wrong.append(f"{rel}: adapter {list(shape)}, model needs {list(expected)}")
    if absent:
        absent = list(dict.fromkeys(absent))
        raise ModelLoadError(
            f"adapter {adapter_path!r} has weights for modules {_listing(absent)} that model "
            f"{kind} does not have: it was trained for another architecture"
        )
    if wrong:
        raise ModelLoadError(
            f"adapter {adapter_path!r} does not fit model {kind}: its tensor shapes differ "
            f"({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''}): it was trained for a "
            "model of another size"
        )
    return config


def load_adapter(model, adapter_path: str, trainable: bool = False):
    """Wrap ``model`` with the saved PEFT LoRA adapter at ``adapter_path``; fail clearly (ModelLoadError) when the
    directory is not an adapter, or the adapter was trained for another architecture or model size."""
    from peft import PeftModel

    check_adapter_fits(model, adapter_path)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelLoadError(
            f"adapter {adapter_path!r} does not fit model {type(model).__name__} (or its "
            f"{ADAPTER_CONFIG} holds an invalid setting): {first}"
        ) from err
    if not trainable:
        peft_model.eval()
    return peft_model
