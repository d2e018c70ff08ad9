"""Side-effect scores kept between runs (``eval.cache_before``). CrowS-Pairs, BBQ and general ability score the same
items whatever a run's split seed, so in a sweep over split seeds the base model needs them once, and so does a
decoding-time method, which trains nothing (a trained model's side effects are never cached: they are its own).

One entry per benchmark. The key covers what the scores depend on: the model (and a local model's files), the
decoding-time method's settings or none, the scoring settings side effects read (not the bootstrap's), that
benchmark's data settings, the device type and dtype the model ran in, and the version of the scoring code
(eval/base_cache.py), so any change scores afresh."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bias_unlearn.eval.base_cache import SCORES_VERSION
from bias_unlearn.eval.outcomes import Evaluation, Outcomes
from bias_unlearn.io import write_json
from bias_unlearn.offline import cache_dir

log = logging.getLogger(__name__)
# what side-effect scores depend on (no bootstrap)
SCORING_KEYS = ("mode", "start", "batch_size", "harness_batch_size", "share_prefix")


class SideEffectCache:
    """Where one model's (``method``: a decoding-time method's settings, or None for the model itself) side-effect
    scores are kept; ``hits`` names the benchmarks read back rather than scored."""

    def __init__(self, cfg: DictConfig, model, method: dict | None = None):
        weight = next(model.parameters())
        local = Path(str(cfg.model.name_or_path))
        files = []
        if cfg.model.source == "local" and local.is_dir():
            files = sorted((f.name, f.stat().st_mtime_ns) for f in local.iterdir())
        self.common = {
            "model": [cfg.model.source, str(cfg.model.name_or_path), cfg.model.get("revision"), files],
            "method": method,
            "scoring": {key: OmegaConf.select(cfg.scoring, key) for key in SCORING_KEYS},
            "ran": [weight.device.type, str(weight.dtype).removeprefix("torch."), SCORES_VERSION],
        }
        self.data = cfg.data
        self.hits: list[str] = []

    def path(self, name: str) -> Path:
        key = {**self.common, "benchmark": name, "data": OmegaConf.to_container(self.data[name], resolve=True)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
        return cache_dir() / "side_effects" / f"{name}-{digest}.json"

    def load(self, name: str) -> Evaluation | None:
        """The benchmark's scores (and CrowS-Pairs' per-pair outcomes) from the cache, or None."""
        path = self.path(name)
        try:
            cached = Evaluation.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None  # absent, or damaged: scored afresh and rewritten
        if cached is None or getattr(cached, name) is None:
            return None
        log.info("%s scores from the cache %s", name, path)
        self.hits.append(name)
        return cached

    def save(self, name: str, scored: Evaluation) -> None:
        outcomes = Outcomes(crows_pairs=scored.outcomes.crows_pairs) if name == "crows_pairs" else None
        write_json(self.path(name), asdict(Evaluation(**{name: getattr(scored, name)}, outcomes=outcomes)))
