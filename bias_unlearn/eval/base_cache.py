"""The base model's scores, kept between runs (``eval.cache_before``): every run of a sweep starts from one base
model, so its test and dev scores are computed once. The key covers the model (and a local model's files), the
scoring config, the benchmarks' settings, every scored example, the device type and dtype the model ran in, and
the version of the scoring code, so any change scores afresh."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bias_unlearn.eval.outcomes import Evaluation
from bias_unlearn.io import write_json
from bias_unlearn.offline import cache_dir

log = logging.getLogger(__name__)

# Bump when a fix changes how a base score is computed, so no cached score from before the fix is reused.
# 2: BBQ's s_AMB over every ambiguous item; legacy first-token pass in eval mode.
# 3: lm-evaluation-harness prompts for multiple choice.
# 4: general ability scored by lm-evaluation-harness itself; continuations without a lone leading space piece.
SCORES_VERSION = 4


def cache_key(cfg: DictConfig, test_examples, dev_examples, device_type: str, dtype: str) -> str:
    model = cfg.model
    files = []
    if model.source == "local" and Path(str(model.name_or_path)).is_dir():
        files = sorted((f.name, f.stat().st_mtime_ns) for f in Path(str(model.name_or_path)).iterdir())
    key = {
        "model": [model.source, str(model.name_or_path), model.get("revision"), model.get("dtype", "auto"), files],
        "scoring": OmegaConf.to_container(cfg.scoring, resolve=True),
        "crows": OmegaConf.to_container(cfg.data.crows_pairs, resolve=True) if cfg.eval.crows_pairs else None,
        "general": (OmegaConf.to_container(cfg.data.general, resolve=True) if cfg.eval.get("general") else None),
        "test": [(ex.id, ex.stereotype, ex.anti_stereotype, ex.unrelated) for ex in test_examples],
        "dev": [(ex.id, ex.stereotype, ex.anti_stereotype, ex.unrelated) for ex in dev_examples],
    }
    if cfg.eval.get("bbq"):
        key["bbq"] = OmegaConf.to_container(cfg.data.bbq, resolve=True)
    key["ran"] = [device_type, dtype, SCORES_VERSION]  # an fp32 CPU score is not a bf16 GPU one
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cache_path(cfg: DictConfig, test_examples, dev_examples, model) -> Path:
    """Where ``model``'s (the base, as it sits on its device) scores for these settings are kept."""
    weight = next(model.parameters())
    key = cache_key(cfg, test_examples, dev_examples, weight.device.type, str(weight.dtype).removeprefix("torch."))
    return cache_dir() / "before" / f"{key}.json"


def load_base_scores(path: Path, need_test: bool) -> tuple[Evaluation | None, dict] | None:
    """(test results, dev result) from the cache, or None when absent or lacking what is needed."""
    if not path.exists():
        return None
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache entry is scored afresh and rewritten
    if need_test and cached.get("before") is None:
        return None
    log.info("base-model scores from the cache %s", path)
    return (Evaluation.from_dict(cached["before"]) if need_test else None), cached["dev_before"]


def save_base_scores(path: Path, before: Evaluation | None, dev_before: dict) -> None:
    write_json(path, {"before": asdict(before) if before is not None else None, "dev_before": dev_before})
