"""The training job behind ``train.py``: evaluate, unlearn, evaluate again, report."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.callbacks import AdapterCheckpoint, BalancedStereotypeStopping, DynamicSwapping
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.datamodule import UnlearningDataModule, check_chunk
from bias_unlearn.data.sources import build_stereoset_split
from bias_unlearn.errors import ConfigError
from bias_unlearn.eval.crows_pairs import evaluate_crows_pairs
from bias_unlearn.eval.generation import compare_generations
from bias_unlearn.eval.report import training_report, write_text
from bias_unlearn.eval.scoring import SentenceScorer
from bias_unlearn.eval.stereoset import evaluate_stereoset
from bias_unlearn.models.loading import load_model, resolve_dtype
from bias_unlearn.offline import cache_dir
from bias_unlearn.module import BiasUnlearnModule, LossConfig, OptimConfig
from bias_unlearn.plots import plot_dev_curves

log = logging.getLogger(__name__)


def validate_config(cfg: DictConfig) -> tuple[LossConfig, float]:
    """Check every knob that would otherwise fail late; raises ConfigError naming the key."""
    loss = LossConfig(**{k: cfg.loss[k] for k in ("forget", "forget_weight", "retain_weight", "kl_weight", "beta",
                                                   "logp_reduction", "npo_reduction")})
    threshold = float(cfg.callbacks.early_stopping.threshold)
    if not 0 < threshold < 50:
        raise ConfigError(f"callbacks.early_stopping.threshold must lie in (0, 50), got {threshold}")
    train = cfg.train
    paired = bool(train.get("paired", False))
    if loss.forget == "dpo" and not paired:
        raise ConfigError("loss.forget=dpo needs train.paired=true: DPO compares each stereotype with its own "
                          "anti-stereotype")
    check_chunk(int(train.forget_batch), int(train.retain_batch), int(train.kl_batch), paired,
                float(cfg.loss.adversarial_fraction))
    if cfg.trainer.max_steps is None or int(cfg.trainer.max_steps) <= 0:
        raise ConfigError(f"trainer.max_steps must be a positive number of steps, got {cfg.trainer.max_steps}")
    if not 0 <= float(cfg.loss.adversarial_fraction) < 1:
        raise ConfigError(f"loss.adversarial_fraction must lie in [0, 1), got {cfg.loss.adversarial_fraction}")
    return loss, threshold


def training_device(trainer_cfg: DictConfig) -> str:
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def lora_model(model, lora_cfg: DictConfig):
    from peft import LoraConfig, get_peft_model

    targets = lora_cfg.target_modules
    # PEFT reads a plain string as a regex over full module names; only its "all-linear" shorthand stays a string.
    targets = targets if targets == "all-linear" else [targets] if isinstance(targets, str) else list(targets)
    config = LoraConfig(r=int(lora_cfg.r), lora_alpha=int(lora_cfg.alpha), lora_dropout=float(lora_cfg.dropout),
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def score_split(scorer: SentenceScorer, examples, cfg: DictConfig, n_bootstrap: int | None = None) -> dict:
    boot = int(cfg.scoring.n_bootstrap) if n_bootstrap is None else n_bootstrap
    return evaluate_stereoset(scorer, examples, cfg.scoring.mode, boot, int(cfg.seed))


def evaluate_test(scorer: SentenceScorer, test_examples, crows, cfg: DictConfig) -> dict:
    """The report's evaluation: StereoSet on the test split (per kind) and, when configured, CrowS-Pairs."""
    return {"stereoset": score_split(scorer, test_examples, cfg),
            "crows_pairs": evaluate_crows_pairs(scorer, crows) if crows is not None else None}


def before_cache_path(cfg: DictConfig, test_examples, dev_examples) -> Path:
    """Where the base model's scores for this model, data and scoring are kept (eval.cache_before): every run of a
    sweep shares one base model, so it is scored once. A local model directory is keyed by its files' mtimes too."""
    model = cfg.model
    files = []
    if model.source == "local" and Path(str(model.name_or_path)).is_dir():
        files = sorted((f.name, f.stat().st_mtime_ns) for f in Path(str(model.name_or_path)).iterdir())
    key = {"model": [model.source, str(model.name_or_path), model.get("revision"), model.get("dtype", "auto"), files],
           "scoring": OmegaConf.to_container(cfg.scoring, resolve=True), "crows": OmegaConf.to_container(
               cfg.data.crows_pairs, resolve=True) if cfg.eval.crows_pairs else None,
           "test": [(ex.id, ex.stereotype, ex.anti_stereotype, ex.unrelated) for ex in test_examples],
           "dev": [(ex.id, ex.stereotype, ex.anti_stereotype, ex.unrelated) for ex in dev_examples]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_dir() / "before" / f"{digest}.json"


def evaluate_base(scorer, test_examples, dev_examples, crows, cfg: DictConfig) -> tuple[dict | None, dict]:
    """(test results or None, dev intrasentence scores) of the base model, from the cache when allowed."""
    path = before_cache_path(cfg, test_examples, dev_examples) if cfg.eval.cache_before else None
    if path is not None and path.exists():
        cached = json.loads(path.read_text())
        if cached.get("before") is not None or not cfg.eval.before:
            log.info("base-model scores from the cache %s", path)
            return (cached["before"] if cfg.eval.before else None), cached["dev_before"]
    before = evaluate_test(scorer, test_examples, crows, cfg) if cfg.eval.before else None
    dev_before = score_split(scorer, dev_examples, cfg, n_bootstrap=0)["intrasentence"]
    if path is not None:
        write_text(path, json.dumps({"before": before, "dev_before": dev_before}))
    return before, dev_before


def load_adapter_weights(model, directory: Path) -> None:
    """Put a saved adapter's weights into the live PEFT model (e.g. the best dev checkpoint)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))


def run_training(cfg: DictConfig) -> dict:
    loss_cfg, _ = validate_config(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(int(cfg.seed), workers=True)
    out_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()

    split = build_stereoset_split(cfg.data)
    device = training_device(cfg.trainer)
    model, tokenizer = load_model(cfg.model.source, cfg.model.name_or_path, cfg.model.get("dtype", "auto"), "cpu",
                                  cfg.model.get("revision"))
    if resolve_dtype(cfg.model.get("dtype", "auto"), device) != model.dtype:
        model.to(resolve_dtype(cfg.model.get("dtype", "auto"), device))
    datamodule = UnlearningDataModule(
        split, tokenizer, int(cfg.train.forget_batch), int(cfg.train.retain_batch), int(cfg.train.kl_batch),
        float(cfg.loss.adversarial_fraction), list(cfg.train.kinds), ["intrasentence"], int(cfg.scoring.batch_size),
        int(cfg.seed), bool(cfg.train.get("paired", False)))
    crows = (load_crows_pairs(cfg.data.crows_pairs.source, cfg.data.crows_pairs.path)
             if cfg.eval.crows_pairs else None)
    split.save(out_dir / "split.json")
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    test_examples = [ex for ex in split.test if ex.kind in cfg.eval.kinds]

    model.to(device)
    scorer = SentenceScorer(model, tokenizer, int(cfg.scoring.batch_size), cfg.scoring.start,
                            bool(cfg.scoring.share_prefix), progress=True)
    before, dev_before = evaluate_base(scorer, test_examples, datamodule.dev_examples, crows, cfg)
    model.to("cpu")

    policy = lora_model(model, cfg.model.lora)
    module = BiasUnlearnModule(policy, tokenizer, loss_cfg,
                               OptimConfig(float(cfg.optim.lr), float(cfg.optim.weight_decay),
                                           int(cfg.optim.warmup_steps), int(cfg.trainer.max_steps)),
                               datamodule.dev_targets, int(cfg.scoring.batch_size))
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    swapping = next(c for c in callbacks if isinstance(c, DynamicSwapping))
    stopping = next(c for c in callbacks if isinstance(c, BalancedStereotypeStopping))
    checkpoint = next(c for c in callbacks if isinstance(c, AdapterCheckpoint))
    swapping.apply(None, datamodule, module.record_dev(dev_before), 0)  # step 0 decides the starting roles
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()] or False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    policy.train()  # load_model left the base in eval mode; training uses the models' own dropout
    train_started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - train_started

    # The adapter that is evaluated and delivered: the best (or last) dev checkpoint, else the final weights.
    chosen = checkpoint.dirpath / cfg.eval.adapter
    if not (chosen / "adapter_model.safetensors").exists():
        chosen = checkpoint.dirpath / "last"  # no dev checkpoint met the bar for best
    if trainer.is_global_zero:
        shutil.rmtree(out_dir / "adapter", ignore_errors=True)
        if (chosen / "adapter_model.safetensors").exists():
            load_adapter_weights(policy, chosen)
            shutil.copytree(chosen, out_dir / "adapter")
        else:
            chosen = None
            policy.save_pretrained(out_dir / "adapter")
    policy.to(device)
    after = None
    if cfg.eval.after and trainer.is_global_zero:
        scorer = SentenceScorer(policy, tokenizer, int(cfg.scoring.batch_size), cfg.scoring.start,
                                bool(cfg.scoring.share_prefix), progress=True)
        after = evaluate_test(scorer, test_examples, crows, cfg)
    prompts = list(cfg.eval.generation.prompts or [])
    generations = (compare_generations(policy, tokenizer, prompts, int(cfg.eval.generation.max_new_tokens))
                   if prompts and trainer.is_global_zero else [])
    summary = {"method": cfg.get("method", {}).get("name", "custom"),
        "model": f"{cfg.model.name} ({cfg.model.source}: {cfg.model.name_or_path})",
        "adapter": str(out_dir / "adapter"), "adapter_from": str(chosen or "final weights"), "steps": int(trainer.global_step),
        "stopped_early_at": stopping.stopped_at, "swap_events": swapping.events, "dev_history": module.dev_history,
        "train_seconds": round(train_seconds, 1), "wall_seconds": round(time.perf_counter() - started, 1),
        "scoring": f"mode={cfg.scoring.mode}, start={cfg.scoring.start}", "loss": OmegaConf.to_container(cfg.loss),
        "generations": generations,
    }
    before, after = before or {}, after or {}
    report = {"summary": summary, "before": before.get("stereoset"), "after": after.get("stereoset"),
              "crows_pairs": {"before": before.get("crows_pairs"), "after": after.get("crows_pairs")}}
    if trainer.is_global_zero:
        write_text(out_dir / "report.json", json.dumps(report, indent=2, default=str))
        markdown = training_report(report["before"], report["after"], summary, report["crows_pairs"])
        write_text(out_dir / "report.md", markdown)
        plot_dev_curves(module.dev_history, swapping.events, float(cfg.callbacks.early_stopping.threshold),
                        out_dir / "dev_ss.png")
        print(markdown)
        log.info("report written to %s", out_dir / "report.md")
    return report
