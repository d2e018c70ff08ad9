"""The evaluation job behind ``evaluate.py``: load everything first, score, then write JSON + markdown."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.config.schema import evaluate_settings, typed
from bias_unlearn.config.settings import ScoringConfig
from bias_unlearn.data.sources import load_eval_benchmarks
from bias_unlearn.data.splits import check_held_out
from bias_unlearn.decoding.methods import wrap_decoding
from bias_unlearn.eval.scorer import SentenceScorer, make_scorer
from bias_unlearn.eval.side_effect_cache import SideEffectCache
from bias_unlearn.eval.side_effects import check_side_effect_data, evaluate_model
from bias_unlearn.io import write_text
from bias_unlearn.models.policy import load_policy, resolve_device
from bias_unlearn.reports.markdown import markdown_report, write_report

log = logging.getLogger(__name__)


def score_benchmarks(
    scorer: SentenceScorer, benchmarks: dict, split: str, scoring: ScoringConfig, cache: SideEffectCache | None = None
) -> dict:
    """{benchmark: results} for every loaded benchmark (StereoSet on ``split`` of its split, or all of it); side
    effects through ``cache`` where given."""
    examples = None
    if "stereoset" in benchmarks:
        data = benchmarks["stereoset"]
        examples = data.train + data.dev + data.test if split == "all" else data[split]
    result = evaluate_model(scorer, scoring, benchmarks, examples, cache)
    return {
        name: getattr(result, name) for name in ("stereoset", "crows_pairs", "bbq", "general") if name in benchmarks
    }


def run_evaluation(cfg: DictConfig) -> dict:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    out_dir = Path(cfg.paths.output_dir)
    _, scoring = evaluate_settings(cfg)  # bad settings are refused before any data or model loads
    device = resolve_device(cfg.device)
    benchmarks = load_eval_benchmarks(cfg.data, list(cfg.benchmarks))
    check_side_effect_data(benchmarks)
    if cfg.get("adapter") and "stereoset" in benchmarks:
        data = benchmarks["stereoset"]
        check_held_out(
            cfg.adapter, data.train + data.dev + data.test if cfg.split == "all" else data[cfg.split], cfg.split
        )
    model, tokenizer = load_policy(cfg.model, device, cfg.get("adapter"))
    decoding = cfg.method.decoding if cfg.get("method") is not None else None
    # cache=true: the keys a training run of this model and method builds (jobs/decode.py): either reads the other's
    cache = None
    if cfg.get("cache"):
        cache = SideEffectCache(cfg, model, dataclasses.asdict(typed(cfg, "method").decoding) if decoding else None)
    if decoding is not None:  # the (adapted) model under a decoding-time method
        model = wrap_decoding(model, tokenizer, decoding)
    scorer = make_scorer(model, tokenizer, scoring, progress=True)
    start = time.perf_counter()
    results = score_benchmarks(scorer, benchmarks, cfg.split, scoring, cache)
    meta = {
        "model": f"{cfg.model.name} ({cfg.model.source}: {cfg.model.name_or_path})",
        "adapter": cfg.get("adapter"),
        "stereoset_split": cfg.split if "stereoset" in benchmarks else None,
        "scoring": scoring.describe(),
        "method": OmegaConf.to_container(decoding) if decoding is not None else None,
        "device": device,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if cache is not None:
        meta["side_effects_from_cache"] = cache.hits
    # Nothing is written until every benchmark has been scored.
    if "stereoset" in benchmarks:
        benchmarks["stereoset"].save(out_dir / "split.json")
    write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    json_path, _ = write_report(out_dir, results, meta)
    print(markdown_report(results, meta))
    log.info("results written to %s", json_path)
    return results
