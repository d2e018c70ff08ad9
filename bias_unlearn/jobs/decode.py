"""A decoding-time method as a run of the grid (``python train.py method=self_debias|cafie``): nothing trains; the
base model is scored before and the base model under the method after, on the same split, side effects and prompts
as a trained method, and the run writes the same report (no adapter). The method's constants are its originals
(conf/method/): dev chooses nothing for it."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.config.schema import train_settings
from bias_unlearn.data.sources import build_stereoset_split, load_side_effect_data
from bias_unlearn.decoding.methods import wrap_decoding
from bias_unlearn.eval.generation import compare_generations
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.side_effect_cache import SideEffectCache
from bias_unlearn.eval.side_effects import check_side_effect_data, evaluate_model
from bias_unlearn.io import write_text
from bias_unlearn.models.policy import load_base, resolve_device
from bias_unlearn.reports.markdown import write_run_report
from bias_unlearn.reports.run_report import RunReport, Summary

log = logging.getLogger(__name__)
NO_ADAPTER = "none: a decoding-time method changes how the model scores and generates"


def run_decoding(cfg: DictConfig) -> RunReport:
    settings = train_settings(cfg)
    decoding = settings.method.decoding
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    started = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    split = build_stereoset_split(cfg.data)
    side = load_side_effect_data(cfg.data, settings.eval)
    check_side_effect_data(side)
    device = resolve_device("cuda" if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") else "auto")
    model, tokenizer = load_base(settings.model, device)
    model.eval()
    method = wrap_decoding(model, tokenizer, decoding)
    split.save(out_dir / "split.json")
    write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    test = [ex for ex in split.test if ex.kind in settings.eval.kinds]

    def score(scored, cache) -> tuple:
        """The evaluation, and the seconds its StereoSet test scoring took (the cost at inference: side effects may
        come from the cache, StereoSet never does)."""
        scorer = make_scorer(scored, tokenizer, settings.scoring, progress=True)
        evaluation = evaluate_model(scorer, settings.scoring, side, cache=cache)
        start = time.perf_counter()
        stereoset = evaluate_model(scorer, settings.scoring, {}, test)
        evaluation.stereoset, evaluation.outcomes.stereoset = stereoset.stereoset, stereoset.outcomes.stereoset
        return evaluation, time.perf_counter() - start

    # eval.cache_before: the side effects no split changes, plain and under the method, are scored once per sweep
    caches = {
        "plain": SideEffectCache(cfg, model) if settings.eval.cache_before else None,
        "method": SideEffectCache(cfg, model, dataclasses.asdict(decoding)) if settings.eval.cache_before else None,
    }
    with torch.no_grad():
        before, plain_seconds = score(model, caches["plain"]) if settings.eval.before else (None, None)
        after, method_seconds = score(method, caches["method"]) if settings.eval.after else (None, None)
    prompts = list(settings.eval.generation.prompts)
    generations = (
        compare_generations(method, tokenizer, prompts, settings.eval.generation.max_new_tokens, base_model=model)
        if prompts
        else []
    )
    summary = Summary(
        method=decoding.kind,
        objective={"decoding": decoding.kind},
        model=f"{settings.model.name} ({settings.model.source}: {settings.model.name_or_path})",
        adapter="",
        adapter_from=NO_ADAPTER,
        adapter_rule="decoding-time method",
        lms_bar_met=None,
        steps=0,
        stopped_early_at=None,
        wall_seconds=round(time.perf_counter() - started, 1),
        scoring=settings.scoring.describe(),
        generations=generations,
        declared_method=settings.method.name if settings.method.name != decoding.kind else None,
        precision={"weights": str(next(model.parameters()).dtype).removeprefix("torch."), "device": device},
        decoding={
            **dataclasses.asdict(decoding),
            "passes_per_token": method.passes,
            # StereoSet test scoring per example, plain and under the method (side effects may come from the cache)
            "seconds_per_example": {
                "plain": round(plain_seconds / len(test), 4) if plain_seconds else None,
                "method": round(method_seconds / len(test), 4) if method_seconds else None,
                "covers": ["stereoset"],
            },
            "side_effects_from_cache": {side: cache.hits for side, cache in caches.items() if cache and cache.hits},
            **({"texts": dict(method.texts)} if hasattr(method, "texts") else {}),
        },
    )
    report = RunReport.from_scores(summary, before, after)
    print(write_run_report(report, out_dir))
    log.info("report written to %s", out_dir / "report.md")
    return report
