"""BiasEdit as a run of the grid (``python train.py method=biasedit``): score the base, meta-train the editor on the
train split (editing/training.py), let dev choose the editor's epoch by the LoRA methods' delivery rule, apply that
epoch's one edit and score the edited model like any other (test split, side effects, completions). The run writes
the same report; the delivered object is the weight shift of each edited module (``edit/shifts.safetensors``)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file
from tqdm.auto import tqdm

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.schema import train_settings
from bias_unlearn.data.datamodule import check_split_kinds
from bias_unlearn.data.sources import build_stereoset_split, load_side_effect_data
from bias_unlearn.editing.hooks import apply_shifts, edited_modules, shifted
from bias_unlearn.editing.training import build_batches, global_shifts, make_editor, meta_step
from bias_unlearn.eval.generation import greedy_completion
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.side_effect_cache import SideEffectCache
from bias_unlearn.eval.side_effects import check_side_effect_data, evaluate_model
from bias_unlearn.eval.stereoset import StereoSetMetric, stereoset_sentence_scores
from bias_unlearn.io import write_text
from bias_unlearn.models.policy import load_base, resolve_device
from bias_unlearn.reports.markdown import write_run_report
from bias_unlearn.reports.run_report import RunReport, Summary
from bias_unlearn.unlearning.balance import balance_chi2, ss_standard_error
from bias_unlearn.unlearning.callbacks.adapter_checkpoint import RULE_BALANCE_CHI2, RULE_LEAST_LMS_DROP, selection_key

log = logging.getLogger(__name__)
DOMAINS = ("overall", "gender", "profession", "race", "religion")


def dev_entry(scorer, dev, mode: str, step: int) -> dict:
    targets = sorted({(ex.bias_type, ex.target) for ex in dev})
    position = {t: i for i, t in enumerate(targets)}
    metric = StereoSetMetric(targets, n_bootstrap=0, sync_on_compute=False)
    metric.update(
        [position[(ex.bias_type, ex.target)] for ex in dev], *zip(*stereoset_sentence_scores(scorer, dev, mode))
    )
    result = metric.compute()
    return {"step": step, **{d: result[d]["ss"] for d in DOMAINS if d in result}, "lms": result["overall"]["lms"]}


def run_editing(cfg: DictConfig) -> RunReport:
    settings = train_settings(cfg)
    editing = settings.method.editing
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    started = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    split = build_stereoset_split(cfg.data)
    train, dev = check_split_kinds(split, tuple(editing.kinds), tuple(settings.train.dev_kinds))
    side = load_side_effect_data(cfg.data, settings.eval)
    check_side_effect_data(side)
    device = resolve_device("cuda" if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") else "auto")
    model, tokenizer = load_base(settings.model, device)
    model.eval().requires_grad_(False)  # only the editor trains
    split.save(out_dir / "split.json")
    write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    test = [ex for ex in split.test if ex.kind in settings.eval.kinds]
    scorer = make_scorer(model, tokenizer, settings.scoring, progress=True)
    prompts, max_new = list(settings.eval.generation.prompts), settings.eval.generation.max_new_tokens
    with torch.no_grad():
        cache = SideEffectCache(cfg, model) if settings.eval.cache_before else None  # the base's: no split changes them
        before = evaluate_model(scorer, settings.scoring, side, test, cache) if settings.eval.before else None
        base_texts = [greedy_completion(model, tokenizer, p, max_new) for p in prompts]
        history = [dev_entry(scorer, dev, settings.scoring.mode, 0)]

    # Meta-train; after each epoch, the one edit from every train batch, scored on dev.
    train_started = time.perf_counter()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    names, modules = zip(*edited_modules(model, editing.layers))
    batches = build_batches(model, modules, tokenizer, train, editing.n_edits, int(cfg.seed), pad)
    if not batches:
        raise ConfigError(f"the train split has fewer than method.editing.n_edits={editing.n_edits} examples")
    editor = make_editor(modules, batches, editing.rank, editing.n_blocks, editing.lr).to(device)
    optimiser = torch.optim.Adam(editor.parameters(), lr=editing.meta_lr)
    se, base_lms, bar = ss_standard_error(dev), history[0]["lms"], settings.callbacks.adapter_checkpoint.max_lms_drop
    candidates, losses = [], []
    for epoch in range(1, editing.epochs + 1):
        for batch in tqdm(batches, desc=f"BiasEdit epoch {epoch}", leave=False):
            optimiser.zero_grad(set_to_none=True)
            losses.append(meta_step(model, modules, editor, batch, editing.loc_coef))
            torch.nn.utils.clip_grad_norm_(editor.parameters(), editing.max_grad_norm)
            optimiser.step()
        candidates.append((epoch * len(batches), global_shifts(editor, batches)))
    for step, shifts in candidates:
        with torch.no_grad(), shifted(modules, shifts):
            history.append(dev_entry(scorer, dev, settings.scoring.mode, step))
    train_seconds = time.perf_counter() - train_started
    scored = history[1:]  # the epochs' edits (history[0]: the unedited model)
    keys = [selection_key(e, base_lms, bar, balance_chi2(e, se)) for e in scored]
    best = scored[min(range(len(scored)), key=keys.__getitem__)]
    shifts = dict(candidates)[best["step"]]
    (out_dir / "edit").mkdir(parents=True, exist_ok=True)
    save_file({n: s.contiguous() for n, s in zip(names, shifts)}, str(out_dir / "edit" / "shifts.safetensors"))

    # The edited model: the chosen shifts in the weights, scored like any other.
    apply_shifts(modules, shifts)
    with torch.no_grad():
        after = evaluate_model(scorer, settings.scoring, side, test) if settings.eval.after else None
        edited_texts = [greedy_completion(model, tokenizer, p, max_new) for p in prompts]
    meets = selection_key(best, base_lms, bar, 0.0)[0] == 0
    summary = Summary(
        method="biasedit",
        objective={"editing": "biasedit"},
        model=f"{settings.model.name} ({settings.model.source}: {settings.model.name_or_path})",
        adapter=str(out_dir / "edit"),
        adapter_from=f"editor after {best['step']} meta-steps (epoch {best['step'] // len(batches)})",
        adapter_rule=RULE_BALANCE_CHI2 if meets else RULE_LEAST_LMS_DROP,
        lms_bar_met=meets,
        steps=len(losses),
        stopped_early_at=None,
        dev_history=history,
        train_seconds=round(train_seconds, 1),
        wall_seconds=round(time.perf_counter() - started, 1),
        scoring=settings.scoring.describe(),
        generations=[{"prompt": p, "base": b, "debiased": e} for p, b, e in zip(prompts, base_texts, edited_texts)],
        declared_method=settings.method.name if settings.method.name != "biasedit" else None,
        precision={"weights": str(next(model.parameters()).dtype).removeprefix("torch."), "device": device},
        editing={
            **dataclasses.asdict(editing),
            "modules": list(names),
            "batches": len(batches),
            "editor_parameters": sum(p.numel() for p in editor.parameters()),
            "losses": losses[-len(batches) :],
        },
    )
    report = RunReport.from_scores(summary, before, after)
    print(write_run_report(report, out_dir))
    log.info("report written to %s", out_dir / "report.md")
    return report
