"""The training job behind ``train.py``: build -> score the base -> fit -> deliver an adapter -> evaluate -> report."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.config.errors import ConfigError, TrainingDiverged
from bias_unlearn.config.methods import Objective, method_name
from bias_unlearn.config.schema import TrainSettings, train_settings
from bias_unlearn.data.datamodule import check_global_batches, check_split_kinds
from bias_unlearn.data.sources import build_stereoset_split, load_side_effect_data
from bias_unlearn.eval.base_cache import cache_path, load_base_scores, save_base_scores
from bias_unlearn.eval.generation import compare_generations
from bias_unlearn.eval.outcomes import Evaluation
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.side_effect_cache import SideEffectCache
from bias_unlearn.eval.side_effects import check_side_effect_data, evaluate_model
from bias_unlearn.io import copy_dir, write_text
from bias_unlearn.models.distributed import (
    is_launched_rank_zero,
    launched_rank,
    policy_state_dict,
    sharded_over_ranks,
    training_device,
)
from bias_unlearn.models.fused_lora import resolve_fused
from bias_unlearn.models.loading import resolve_dtype
from bias_unlearn.models.lora import load_adapter_weights, wrap_lora
from bias_unlearn.models.policy import load_base, load_policy
from bias_unlearn.models.precision import cpu_name, resolve_precision
from bias_unlearn.models.reference import reference_mode
from bias_unlearn.reports.markdown import write_run_report
from bias_unlearn.reports.model_card import model_card
from bias_unlearn.reports.plots import plot_dev_curves
from bias_unlearn.reports.run_report import RunReport, Summary
from bias_unlearn.unlearning.balance import dev_split_summary
from bias_unlearn.unlearning.callbacks.adapter_checkpoint import RULE_LAST
from bias_unlearn.unlearning.module import BiasUnlearnModule
from bias_unlearn.unlearning.resume import resume_checkpoint, saved_setting

log = logging.getLogger(__name__)
BASE_SCORES = Path("checkpoints") / "base_scores.json"


def score_base(
    cfg: DictConfig,
    settings: TrainSettings,
    module: BiasUnlearnModule,
    test_examples,
    side,
    out_dir: Path,
    resuming: bool,
) -> Evaluation | None:
    """The base model's test scores (or None without eval.before); its step-0 dev score goes to the module.
    The base is the reference: the policy with its adapter disabled. Kept in the run (a resumed run reads them
    back) and, with eval.cache_before, in the cache shared by runs. Only the launching process scores: Lightning
    starts the other processes of a multi-GPU run inside fit, after it wrote them, and they read its file."""
    in_run = out_dir / BASE_SCORES
    if not is_launched_rank_zero():
        cached = load_base_scores(in_run, need_test=False)
        if cached is None:
            raise ConfigError(
                f"{in_run}: process {launched_rank()} found no base scores from process 0 (it writes "
                "them before it starts the others)"
            )
        module.dev_before = cached[1]
        return None
    shared = cache_path(cfg, test_examples, module.dev_examples, module.model) if settings.eval.cache_before else None
    for path in ([in_run] if resuming else []) + ([shared] if shared is not None else []):
        cached = load_base_scores(path, settings.eval.before)
        if cached is not None:
            before, module.dev_before = cached
            break
    else:
        with reference_mode(module.model):
            scorer = make_scorer(module.model, module.tokenizer, settings.scoring, progress=True)
            cache = SideEffectCache(cfg, module.model) if settings.eval.cache_before else None
            before = (
                evaluate_model(scorer, settings.scoring, side, test_examples, cache) if settings.eval.before else None
            )
            module.dev_before = module.score_dev()
    for path in (in_run, shared):
        if path is not None:
            save_base_scores(path, before, module.dev_before)
    return before


def build_trainer(cfg: DictConfig, settings: TrainSettings):
    """Callbacks (kept by their config key; swapping switched by the method) and loggers from config, then the
    Trainer."""
    extra = {"swapping": {"enabled": settings.method.swapping}}
    callbacks = {
        key: instantiate(node, **extra.get(key, {})) for key, node in cfg.callbacks.items() if node is not None
    }
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()] or False
    trainer = instantiate(cfg.trainer, callbacks=list(callbacks.values()), logger=loggers)
    return trainer, callbacks


def keep_csv_logs(cfg: DictConfig, out_dir: Path) -> None:
    """A resumed run logs to a new CSV version (logs/resumed_<n>/): Lightning's CSV logger deletes the metrics file
    of the folder it opens, and the first part of the run's logs lives there."""
    for node in (cfg.get("logger") or {}).values():
        if str(node.get("_target_", "")).endswith("CSVLogger"):
            logs = out_dir / str(node.get("name") or "")
            node.version = f"resumed_{len(list(logs.glob('resumed_*'))) + 1}"


def deliver_adapter(settings: TrainSettings, trainer, module, checkpoint, out_dir: Path) -> dict:
    """Put the delivered adapter's weights into the policy and write ``adapter/``; say which rule chose it."""
    if settings.eval.adapter == "last":
        chosen, rule, bar_met = checkpoint.dirpath / "last", RULE_LAST, None
    else:
        best = checkpoint.best or {}
        chosen, rule, bar_met = checkpoint.dirpath / "best", best.get("rule"), best.get("lms_bar_met")
    if not (chosen / "adapter_model.safetensors").exists():  # no dev evaluation ran: the final weights
        chosen, rule, bar_met = None, "no dev evaluation ran: the final weights", None
    # Rank 0's view decides (a collective follows); under FSDP the state dict is gathered on every rank.
    final_weights = trainer.strategy.broadcast(chosen is None, src=0)
    weights = policy_state_dict(trainer) if final_weights else None
    if trainer.is_global_zero:
        if chosen is not None:
            if not sharded_over_ranks(trainer):  # a sharded policy is not scored in place (evaluation_policy)
                load_adapter_weights(module.model, chosen)
            copy_dir(chosen, out_dir / "adapter")
        else:
            module.model.save_pretrained(out_dir / "adapter", state_dict=weights)
        # The adapter carries its split: evaluate.py refuses to score it on targets it trained on or chose by.
        shutil.copyfile(out_dir / "split.json", out_dir / "adapter" / "split.json")
    return {
        "adapter": str(out_dir / "adapter"),
        "adapter_from": str(chosen or "final weights"),
        "adapter_rule": rule,
        "lms_bar_met": bar_met,
    }


def evaluation_policy(cfg: DictConfig, trainer, policy, tokenizer, adapter: Path, device: str):
    """The model rank 0 scores the test split with after training: the trained policy itself, except under FSDP
    over several processes, where the policy is sharded and each of its forwards would wait for the other ranks:
    there the base model is loaded whole with the delivered adapter's files."""
    if not sharded_over_ranks(trainer):
        return policy.to(device), tokenizer
    return load_policy(cfg.model, device, str(adapter))


def trained_method(settings: TrainSettings) -> str:
    """The method's name from what trains (config/methods.py), said where the command line changed it."""
    name = method_name(Objective.from_method(settings.method))
    if name != settings.method.name:
        log.warning(
            "method=%s was changed on the command line: what trains is %s, and the report says so",
            settings.method.name,
            name,
        )
    return name


def resolve_machine(cfg: DictConfig, settings: TrainSettings, device: str) -> dict:
    """The choices ``auto`` leaves to the machine (models/precision.py, models/fused_lora.py), made once and written
    into the config (so config.yaml, a resume's comparison and the report hold what ran): the weights' dtype, the
    trainer's precision and the LoRA forward."""
    weights = resolve_dtype(settings.model.dtype, device)
    precision = resolve_precision(settings.trainer.precision, device, weights)
    fused_setting = settings.compute.fused_lora
    if fused_setting == "auto" and cfg.get("resume"):  # a timing's choice: the run's own, not measured again
        fused_setting = saved_setting(cfg.resume, "compute.fused_lora", "auto")
    fused = resolve_fused(fused_setting, weights)
    cfg.trainer.precision = settings.trainer.precision = precision
    cfg.compute.fused_lora = settings.compute.fused_lora = fused
    return {
        "weights": str(weights).removeprefix("torch."),
        "precision": precision,
        "fused_lora": fused,
        "device": device,
        **({"cpu": cpu_name()} if device == "cpu" else {}),
    }


def run_training(cfg: DictConfig) -> RunReport:
    settings = train_settings(cfg)  # every setting checked before any data or model loads
    if settings.method.decoding is not None or settings.method.editing is not None:
        raise ConfigError(
            f"method={settings.method.name} is not a LoRA method: run it with train.py (jobs/decode.py, jobs/edit.py)"
        )
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))  # before the machine's measurements
    device = training_device(cfg.trainer)
    machine = resolve_machine(cfg, settings, device)
    checkpoint = resume_checkpoint(cfg) if cfg.get("resume") else None  # points paths.output_dir at the run
    L.seed_everything(int(cfg.seed), workers=True)
    out_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    method = trained_method(settings)

    # Build: data, the LoRA policy over the base model, the module, the trainer.
    split = build_stereoset_split(cfg.data)
    check_split_kinds(split, tuple(settings.train.kinds), tuple(settings.train.dev_kinds))  # before the model loads
    model_cfg = settings.model
    model, tokenizer = load_base(model_cfg, device, place="cpu")  # moved to the device once wrapped in LoRA
    datamodule = instantiate(cfg.train, _partial_=True, _convert_="all")(
        split=split,
        tokenizer=tokenizer,
        adversarial_fraction=settings.method.adversarial_fraction,
        paired=settings.method.paired,
    )
    side = load_side_effect_data(cfg.data, settings.eval)
    check_side_effect_data(side)
    if is_launched_rank_zero():  # the other processes of a multi-GPU run write nothing of their own
        split.save(out_dir / "split.json")
        write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    test_examples = [ex for ex in split.test if ex.kind in settings.eval.kinds]
    policy = wrap_lora(model, model_cfg.lora)
    module = BiasUnlearnModule(
        policy,
        tokenizer,
        settings.method.loss,
        settings.optim,
        datamodule.dev_examples,
        settings.scoring,
        compute=settings.compute,
    )

    policy.to(device)
    before = score_base(cfg, settings, module, test_examples, side, out_dir, bool(cfg.get("resume")))
    policy.to("cpu")

    # Fit: swapping, stopping and checkpoints act after each dev evaluation (callbacks, found by config key).
    if checkpoint is not None:
        keep_csv_logs(cfg, out_dir)
    trainer, callbacks = build_trainer(cfg, settings)
    check_global_batches(datamodule.batch_sizes, trainer.world_size, datamodule.batch_scope)  # before fit
    policy.train()  # load_model left the base in eval mode; training uses the models' own dropout
    train_started = time.perf_counter()
    if checkpoint is not None:
        log.info("resuming %s from %s", out_dir, checkpoint)
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    train_seconds = time.perf_counter() - train_started

    # Deliver and evaluate: the adapter chosen by the delivery rule, scored on the held-out test split.
    guard = callbacks.get("non_finite")
    delivered = deliver_adapter(settings, trainer, module, callbacks["adapter_checkpoint"], out_dir)
    after, generations = None, []
    prompts = list(settings.eval.generation.prompts)
    if trainer.is_global_zero and (settings.eval.after or prompts):
        scored, scored_tokenizer = evaluation_policy(
            cfg, trainer, policy, tokenizer, Path(delivered["adapter"]), device
        )
        scorer = make_scorer(scored, scored_tokenizer, settings.scoring, progress=True)
        after = evaluate_model(scorer, settings.scoring, side, test_examples) if settings.eval.after else None
        if prompts:
            generations = compare_generations(
                scored, scored_tokenizer, prompts, settings.eval.generation.max_new_tokens
            )

    # Report: one typed object, written as JSON and markdown, with the dev curves.
    summary = Summary(
        method=method,
        objective=Objective.from_method(settings.method).as_dict(),
        model=f"{model_cfg.name} ({model_cfg.source}: {model_cfg.name_or_path})",
        **delivered,
        steps=int(trainer.global_step),
        stopped_early_at=callbacks["early_stopping"].stopped_at,
        swap_events=callbacks["swapping"].events,
        type_weight_events=callbacks["type_weighting"].events if callbacks.get("type_weighting") else [],
        counterfactual_copies={bt: dict(counts) for bt, counts in datamodule.counterfactual_counts.items()},
        dev_history=module.dev_history,
        train_seconds=round(train_seconds, 1),
        wall_seconds=round(time.perf_counter() - started, 1),
        scoring=settings.scoring.describe(),
        loss=dataclasses.asdict(settings.method.loss),
        generations=generations,
        diverged=guard.diverged if guard is not None else None,
        dev_split=dev_split_summary(module.dev_examples, module.dev_resolution, module.dev_se),
        declared_method=settings.method.name if settings.method.name != method else None,
        precision=machine,
    )
    report = RunReport.from_scores(summary, before, after)
    if trainer.is_global_zero:
        markdown = write_run_report(report, out_dir)
        write_text(out_dir / "adapter" / "README.md", model_card(report, cfg))  # replaces PEFT's blank card
        plot_dev_curves(
            module.dev_history, summary.swap_events, settings.callbacks.early_stopping.threshold, out_dir / "dev_ss.png"
        )
        print(markdown)
        log.info("report written to %s", out_dir / "report.md")
    if summary.diverged and trainer.is_global_zero:  # another rank exiting non-zero would kill rank 0's reporting
        raise TrainingDiverged(
            f"training diverged at step {summary.diverged['step']} (non-finite "
            f"{summary.diverged['term']}); the report and the adapter from the last finite dev "
            f"checkpoint are in {out_dir}"
        )
    return report
