"""The training job behind ``train.py``: build -> score the base -> fit -> deliver an adapter -> evaluate -> report."""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.callbacks.adapter_checkpoint import RULE_LAST, check_balance, policy_state_dict, sharded_over_ranks
from bias_unlearn.callbacks.balance_stopping import check_threshold
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.datamodule import check_chunk, check_split_kinds, rank_batch_sizes
from bias_unlearn.data.records import BIAS_TYPES, STEREOSET_KINDS
from bias_unlearn.data.sources import build_stereoset_split, load_bbq_data, load_general_data
from bias_unlearn.errors import ConfigError, TrainingDiverged, from_node
from bias_unlearn.eval.base_cache import cache_path, load_base_scores, save_base_scores
from bias_unlearn.eval.generation import compare_generations
from bias_unlearn.eval.report import training_report
from bias_unlearn.eval.scorer import ScoringConfig, make_scorer
from bias_unlearn.eval.side_effects import score_side_effects
from bias_unlearn.eval.stereoset import score_stereoset
from bias_unlearn.evaluation import load_policy
from bias_unlearn.io import copy_dir, write_text
from bias_unlearn.methods import Objective, method_name
from bias_unlearn.model_card import model_card
from bias_unlearn.models.loading import load_model, resolve_dtype
from bias_unlearn.models.lora import load_adapter_weights, wrap_lora
from bias_unlearn.models.reference import reference_mode
from bias_unlearn.module import BiasUnlearnModule
from bias_unlearn.module_config import ComputeConfig, LossConfig, OptimConfig
from bias_unlearn.plots import plot_dev_curves
from bias_unlearn.resume import resume_checkpoint
from bias_unlearn.run_report import RunReport, Summary

log = logging.getLogger(__name__)
ADAPTER_CHOICES = ("best", "last")
BASE_SCORES = Path("checkpoints") / "base_scores.json"
LOSS_KEYS = ("forget", "forget_weight", "retain_weight", "kl_weight", "beta", "logp_reduction", "npo_reduction",
             "retain_reduction")


@dataclass(frozen=True)
class Settings:
    """The validated knobs that would otherwise fail late (after the model loaded, or mid-training)."""

    loss: LossConfig
    scoring: ScoringConfig
    objective: Objective
    compute: ComputeConfig


def validate_config(cfg: DictConfig) -> Settings:
    """Check every knob before any data or model loads; raises ConfigError naming the key."""
    loss = LossConfig(**{k: cfg.loss[k] for k in LOSS_KEYS})
    scoring = ScoringConfig.from_config(cfg.scoring)
    missing = [key for key in ("swapping", "early_stopping", "adapter_checkpoint") if key not in cfg.callbacks]
    if missing:
        raise ConfigError(f"callbacks.{missing[0]} is missing: the training job needs callbacks "
                          "swapping, early_stopping and adapter_checkpoint (conf/callbacks/default.yaml)")
    check_threshold(cfg.callbacks.early_stopping.threshold)
    check_balance(cfg.callbacks.adapter_checkpoint.get("balance", "chi2"))
    if cfg.eval.adapter not in ADAPTER_CHOICES:
        raise ConfigError(f"eval.adapter must be one of {ADAPTER_CHOICES}, got {cfg.eval.adapter!r}")
    if not 0 <= float(cfg.loss.adversarial_fraction) < 1:
        raise ConfigError(f"loss.adversarial_fraction must lie in [0, 1), got {cfg.loss.adversarial_fraction}")
    train = cfg.train
    paired = bool(train.get("paired", False))
    if loss.forget == "dpo" and not paired:
        raise ConfigError("loss.forget=dpo needs train.paired=true: DPO compares each stereotype with its own "
                          "anti-stereotype")
    check_chunk(int(train.forget_batch), int(train.retain_batch), int(train.kl_batch), paired,
                float(cfg.loss.adversarial_fraction))
    if float(train.get("adversarial_fraction", cfg.loss.adversarial_fraction)) != float(cfg.loss.adversarial_fraction):
        # the data and the method's name must agree: one key decides
        raise ConfigError(f"train.adversarial_fraction ({train.adversarial_fraction}) follows "
                          f"loss.adversarial_fraction ({cfg.loss.adversarial_fraction}): set loss.adversarial_fraction "
                          "(or loss=no_adv) instead")
    if int(train.kl_batch) == 0 and float(cfg.loss.kl_weight) > 0:
        raise ConfigError(f"train.kl_batch=0 leaves the KL term (loss.kl_weight={cfg.loss.kl_weight}) without "
                          "sequences: set loss.kl_weight=0 (or loss=no_kl) too")
    if cfg.trainer.max_steps is None or int(cfg.trainer.max_steps) <= 0:
        raise ConfigError(f"trainer.max_steps must be a positive number of steps, got {cfg.trainer.max_steps}")
    strategy = cfg.trainer.get("strategy")
    if isinstance(strategy, str) and strategy.startswith("fsdp"):
        raise ConfigError(f"trainer.strategy={strategy} is Lightning's plain FSDP (no LoRA-aware wrap policy): "
                          "use strategy=fsdp (conf/strategy/fsdp.yaml)")
    for key in ("train.kinds", "eval.kinds"):
        kinds = list(OmegaConf.select(cfg, key) or [])
        unknown = [k for k in kinds if k not in STEREOSET_KINDS]
        if unknown or not kinds:
            raise ConfigError(f"{key} must list StereoSet kinds from {list(STEREOSET_KINDS)}, got {kinds}")
    if not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    if float(cfg.optim.lr) <= 0:
        raise ConfigError(f"optim.lr (model.lr) must be positive, got {cfg.optim.lr}")
    compute = from_node(ComputeConfig, cfg.get("compute"), "compute")
    return Settings(loss, scoring, Objective.from_config(cfg), compute)


def training_device(trainer_cfg: DictConfig) -> str:
    """``cpu`` or this process's GPU: under a multi-GPU launch (Lightning re-runs train.py once per GPU, setting
    LOCAL_RANK) every process loads and scores on its own GPU, not all on GPU 0."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"


def dev_split_summary(dev_examples, resolution: dict[str, float], standard_error: dict[str, float]) -> dict:
    """Per bias type: the dev examples and targets that swaps, stopping and delivery read, the resolution of the
    type's dev SS (balance.py: one target of 25 sentences can only measure SS in steps of 4) and its standard error
    (how precisely dev measures it: the delivery rule's unit)."""
    return {bt: {"examples": sum(ex.bias_type == bt for ex in dev_examples),
                 "targets": len({ex.target for ex in dev_examples if ex.bias_type == bt}),
                 "resolution": round(resolution[bt], 2), "se": round(standard_error[bt], 2)}
            for bt in BIAS_TYPES if bt in resolution}


def evaluate_test(scorer, test_examples, side: dict, scoring: ScoringConfig) -> dict:
    """The report's evaluation: StereoSet on the test split (per kind) and, when configured, the side effects:
    CrowS-Pairs, BBQ and general ability (``side``: the loaded data, or None where not configured)."""
    stereoset, stereoset_rows = score_stereoset(scorer, test_examples, scoring.mode, scoring.n_bootstrap, scoring.seed)
    results, rows = score_side_effects(scorer, side, scoring.mode)
    return {"stereoset": stereoset, **results,  # per example: paired.py
            "outcomes": {"stereoset": stereoset_rows, "crows_pairs": rows.get("crows_pairs")}}


def score_base(cfg: DictConfig, module: BiasUnlearnModule, test_examples, side, scoring, out_dir: Path,
               resuming: bool) -> dict | None:
    """The base model's test scores (or None without eval.before); its step-0 dev score goes to the module.
    The base is the reference: the policy with its adapter disabled. Kept in the run (a resumed run reads them
    back) and, with eval.cache_before, in the cache shared by runs."""
    in_run = out_dir / BASE_SCORES
    shared = cache_path(cfg, test_examples, module.dev_examples, module.model) if cfg.eval.cache_before else None
    for path in ([in_run] if resuming else []) + ([shared] if shared is not None else []):
        cached = load_base_scores(path, bool(cfg.eval.before))
        if cached is not None:
            before, module.dev_before = cached
            break
    else:
        with reference_mode(module.model):
            before = (evaluate_test(make_scorer(module.model, module.tokenizer, scoring, progress=True),
                                    test_examples, side, scoring) if cfg.eval.before else None)
            module.dev_before = module.score_dev()
    for path in (in_run, shared):
        if path is not None:
            save_base_scores(path, before, module.dev_before)
    return before


def build_trainer(cfg: DictConfig):
    """Callbacks (kept by their config key) and loggers from config, then the Trainer."""
    callbacks = {key: instantiate(node) for key, node in cfg.callbacks.items()}
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


def deliver_adapter(cfg: DictConfig, trainer, module, checkpoint, out_dir: Path) -> dict:
    """Put the delivered adapter's weights into the policy and write ``adapter/``; say which rule chose it."""
    if cfg.eval.adapter == "last":
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
    return {"adapter": str(out_dir / "adapter"), "adapter_from": str(chosen or "final weights"),
            "adapter_rule": rule, "lms_bar_met": bar_met}


def evaluation_policy(cfg: DictConfig, trainer, policy, tokenizer, adapter: Path, device: str):
    """The model rank 0 scores the test split with after training: the trained policy itself, except under FSDP
    over several processes, where the policy is sharded and each of its forwards would wait for the other ranks:
    there the base model is loaded whole with the delivered adapter's files."""
    if not sharded_over_ranks(trainer):
        return policy.to(device), tokenizer
    return load_policy(cfg.model, device, str(adapter))


def run_training(cfg: DictConfig) -> RunReport:
    settings = validate_config(cfg)
    checkpoint = resume_checkpoint(cfg) if cfg.get("resume") else None  # points paths.output_dir at the run
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(int(cfg.seed), workers=True)
    out_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()

    # Build: data, the LoRA policy over the base model, the module, the trainer.
    split = build_stereoset_split(cfg.data)
    check_split_kinds(split, tuple(cfg.train.kinds))  # before the model loads
    device = training_device(cfg.trainer)
    model, tokenizer = load_model(cfg.model.source, cfg.model.name_or_path, cfg.model.get("dtype", "auto"), "cpu",
                                  cfg.model.get("revision"))
    if resolve_dtype(cfg.model.get("dtype", "auto"), device) != model.dtype:
        model.to(resolve_dtype(cfg.model.get("dtype", "auto"), device))
    datamodule = instantiate(cfg.train, _partial_=True, _convert_="all")(split=split, tokenizer=tokenizer)
    side = {"crows_pairs": (load_crows_pairs(cfg.data.crows_pairs.source, cfg.data.crows_pairs.path)
                            if cfg.eval.crows_pairs else None),
            "bbq": load_bbq_data(cfg.data.bbq) if cfg.eval.get("bbq") else None,
            "general": load_general_data(cfg.data.general) if cfg.eval.get("general") else None}
    split.save(out_dir / "split.json")
    write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    test_examples = [ex for ex in split.test if ex.kind in cfg.eval.kinds]
    policy = wrap_lora(model, cfg.model.lora)
    optim = OptimConfig(float(cfg.optim.lr), float(cfg.optim.weight_decay), int(cfg.optim.warmup_steps),
                        int(cfg.trainer.max_steps))
    module = BiasUnlearnModule(policy, tokenizer, settings.loss, optim, datamodule.dev_examples, settings.scoring,
                               compute=settings.compute)

    policy.to(device)
    before = score_base(cfg, module, test_examples, side, settings.scoring, out_dir, bool(cfg.get("resume")))
    policy.to("cpu")

    # Fit: swapping, stopping and checkpoints act after each dev evaluation (callbacks, found by config key).
    if checkpoint is not None:
        keep_csv_logs(cfg, out_dir)
    trainer, callbacks = build_trainer(cfg)
    rank_batch_sizes(datamodule.batch_sizes, trainer.world_size, datamodule.batch_scope)  # refused before fit
    policy.train()  # load_model left the base in eval mode; training uses the models' own dropout
    train_started = time.perf_counter()
    if checkpoint is not None:
        log.info("resuming %s from %s", out_dir, checkpoint)
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    train_seconds = time.perf_counter() - train_started

    # Deliver and evaluate: the adapter chosen by the delivery rule, scored on the held-out test split.
    guard = callbacks.get("non_finite")
    delivered = deliver_adapter(cfg, trainer, module, callbacks["adapter_checkpoint"], out_dir)
    after, generations = None, []
    prompts = list(cfg.eval.generation.prompts or [])
    if trainer.is_global_zero and (cfg.eval.after or prompts):
        scored, scored_tokenizer = evaluation_policy(cfg, trainer, policy, tokenizer, Path(delivered["adapter"]),
                                                     device)
        scorer = make_scorer(scored, scored_tokenizer, settings.scoring, progress=True)
        after = evaluate_test(scorer, test_examples, side, settings.scoring) if cfg.eval.after else None
        if prompts:
            generations = compare_generations(scored, scored_tokenizer, prompts,
                                              int(cfg.eval.generation.max_new_tokens))

    # Report: one typed object, written as JSON and markdown, with the dev curves.
    summary = Summary(
        method=method_name(settings.objective), objective=settings.objective.as_dict(),
        model=f"{cfg.model.name} ({cfg.model.source}: {cfg.model.name_or_path})", **delivered,
        steps=int(trainer.global_step), stopped_early_at=callbacks["early_stopping"].stopped_at,
        swap_events=callbacks["swapping"].events, dev_history=module.dev_history,
        train_seconds=round(train_seconds, 1), wall_seconds=round(time.perf_counter() - started, 1),
        scoring=settings.scoring.describe(), loss=OmegaConf.to_container(cfg.loss, resolve=True),
        generations=generations, diverged=guard.diverged if guard is not None else None,
        dev_split=dev_split_summary(module.dev_examples, module.dev_resolution, module.dev_se))
    before, after = before or {}, after or {}
    report = RunReport(summary, before.get("stereoset"), after.get("stereoset"),
                       {"before": before.get("crows_pairs"), "after": after.get("crows_pairs")},
                       {"before": before.get("general"), "after": after.get("general")},
                       {"before": before.get("outcomes"), "after": after.get("outcomes")},
                       {"before": before.get("bbq"), "after": after.get("bbq")})
    if trainer.is_global_zero:
        report.save(out_dir / "report.json")
        markdown = training_report(report)
        write_text(out_dir / "report.md", markdown)
        write_text(out_dir / "adapter" / "README.md", model_card(report, cfg))  # replaces PEFT's blank card
        plot_dev_curves(module.dev_history, summary.swap_events, float(cfg.callbacks.early_stopping.threshold),
                        out_dir / "dev_ss.png")
        print(markdown)
        log.info("report written to %s", out_dir / "report.md")
    if summary.diverged and trainer.is_global_zero:  # another rank exiting non-zero would kill rank 0's reporting
        raise TrainingDiverged(f"training diverged at step {summary.diverged['step']} (non-finite "
                               f"{summary.diverged['term']}); the report and the adapter from the last finite dev "
                               f"checkpoint are in {out_dir}")
    return report
