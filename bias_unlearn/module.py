"""The LightningModule: a LoRA policy over a frozen base model whose adapter-disabled self is the reference."""
from __future__ import annotations

from dataclasses import dataclass, replace

import lightning as L
import torch

from bias_unlearn import losses
from bias_unlearn.balance import ss_resolution
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.errors import ConfigError
from bias_unlearn.models.reference import reference_mode
from bias_unlearn.eval.metrics import StereoSetMetric
from bias_unlearn.eval.scorer import ScoringConfig, make_scorer
from bias_unlearn.logprobs import token_logprobs_from_logits
from bias_unlearn.eval.stereoset import stereoset_sentence_scores

# The loss on the forget stream: BiasUnlearn's NPO, gradient ascent, plain cross-entropy (the SFT baseline learns
# the stereotype stream too) or DPO (rejected = forget batch, chosen = its paired retain batch).
FORGET_LOSSES = ("npo", "ga", "ce", "dpo")


@dataclass
class LossConfig:
    """The objective a1 * forget + a2 * retain + a3 * KL (METHOD.md)."""

    forget: str = "npo"  # npo | ga | ce | dpo
    forget_weight: float = 0.4
    retain_weight: float = 0.4
    kl_weight: float = 0.2
    beta: float = 0.1  # NPO / DPO temperature
    logp_reduction: str = "mean"  # sequence log-prob: mean or sum of token log-probs
    npo_reduction: str = "example"  # example (paper) | batch (authors' code)
    retain_reduction: str = "example"  # cross-entropy: example (paper eq. 2, authors' code) | token (pooled)

    def __post_init__(self):
        weights = (self.forget_weight, self.retain_weight, self.kl_weight)
        if any(w < 0 for w in weights):
            raise ConfigError(f"loss weights must be >= 0, got forget/retain/kl = {weights}")
        if not any(w > 0 for w in weights):
            raise ConfigError("loss weights are all zero: nothing to train")
        if self.forget not in FORGET_LOSSES:
            raise ConfigError(f"unknown forget loss {self.forget!r}; expected one of {FORGET_LOSSES}")
        if self.logp_reduction not in losses.LOGP_REDUCTIONS:
            raise ConfigError(f"unknown logp_reduction {self.logp_reduction!r}")
        if self.npo_reduction not in losses.NPO_REDUCTIONS:
            raise ConfigError(f"unknown npo_reduction {self.npo_reduction!r}")
        if self.retain_reduction not in losses.CE_REDUCTIONS:
            raise ConfigError(f"loss.retain_reduction must be one of {losses.CE_REDUCTIONS}, got "
                              f"{self.retain_reduction!r}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")


@dataclass
class OptimConfig:
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 10
    total_steps: int = 1000  # the linear schedule decays to zero here


class BiasUnlearnModule(L.LightningModule):
    """Holds the PEFT-wrapped policy. The reference is the same weights with the adapter disabled (no copy).

    Reference log-probs of forget sequences are computed once per sequence, on first use, and cached (the
    reference never changes); the KL term needs full reference distributions and runs the reference per step.
    """

    def __init__(self, model, tokenizer, loss: LossConfig, optim: OptimConfig, dev_examples,
                 scoring: ScoringConfig | None = None, dev_before: dict | None = None):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.loss_cfg, self.optim_cfg = loss, optim
        self.scoring = scoring or ScoringConfig(n_bootstrap=0)  # the run's one scoring config (eval/scorer.py)
        self.ref_cache: dict[str, float] = {}
        self.dev_examples = list(dev_examples)
        self.dev_targets = sorted({(ex.bias_type, ex.target) for ex in self.dev_examples})
        self.dev_resolution = ss_resolution(self.dev_examples)  # balance.py: how finely dev SS can move per type
        self.dev_metric = StereoSetMetric(self.dev_targets, n_bootstrap=0)
        self.dev_position = {t: i for i, t in enumerate(self.dev_targets)}
        self.dev_before = dev_before  # the step-0 dev result when the caller already has it (e.g. cached)
        self.dev_history: list[dict] = []  # one entry per dev evaluation: step and per-type SS

    def reference(self):
        """The frozen reference (models/reference.py): adapter disabled, eval mode, no gradients."""
        return reference_mode(self.model)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if isinstance(batch, list):  # dev examples: plain records; the scorer tokenises them on the model's device
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _forward(self, model, batch: dict) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def reference_logp(self, batch: dict) -> torch.Tensor:
        from bias_unlearn.distributed import any_rank

        missing = [i for i, key in enumerate(batch["keys"]) if key not in self.ref_cache]
        # Under FSDP a forward is a collective: when any rank misses, every rank runs the reference (on its missing
        # rows, or on all its rows when it has none missing, so no rank runs a zero-row batch).
        if any_rank(bool(missing), batch["input_ids"].device):
            rows = missing or list(range(len(batch["keys"])))
            sub = {k: batch[k][rows] for k in ("input_ids", "attention_mask", "loss_mask")}
            with self.reference() as ref:
                logp = token_logprobs_from_logits(self._forward(ref, sub), sub["input_ids"])
                values = losses.sequence_logp(logp, sub["loss_mask"], self.loss_cfg.logp_reduction)
            for i, value in zip(missing, values.tolist()):  # rows == missing whenever missing is non-empty
                self.ref_cache[batch["keys"][i]] = value
        return torch.tensor([self.ref_cache[k] for k in batch["keys"]], device=batch["input_ids"].device)

    def policy_logits(self, batches: list[dict]) -> list[torch.Tensor]:
        """Policy logits of several batches from one forward pass (bigger matmuls, one backward graph)."""
        width = max(b["input_ids"].shape[1] for b in batches)
        pad_id = self.tokenizer.pad_token_id or 0

        def widen(t, value):
            return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

        merged = {"input_ids": torch.cat([widen(b["input_ids"], pad_id) for b in batches]),
                  "attention_mask": torch.cat([widen(b["attention_mask"], 0) for b in batches])}
        logits = self._forward(self.model, merged)
        out, start = [], 0
        for b in batches:
            rows, cols = b["input_ids"].shape
            out.append(logits[start: start + rows, :cols])
            start += rows
        return out

    def compute_losses(self, chunk: dict) -> dict[str, torch.Tensor]:
        """Each term and the weighted total for one chunk (forget, retain and KL batches)."""
        cfg = self.loss_cfg
        weights = {"forget": cfg.forget_weight, "retain": cfg.retain_weight, "kl": cfg.kl_weight}
        needed = {"forget": cfg.forget_weight > 0, "retain": cfg.retain_weight > 0 or cfg.forget == "dpo",
                  "kl": cfg.kl_weight > 0}
        roles = [role for role in ("forget", "retain", "kl") if needed[role]]
        logits = dict(zip(roles, self.policy_logits([chunk[role] for role in roles])))
        token_logp = {role: token_logprobs_from_logits(logits[role], chunk[role]["input_ids"])
                      for role in ("forget", "retain") if role in logits}
        terms: dict[str, torch.Tensor] = {}
        if cfg.forget_weight > 0:
            batch = chunk["forget"]
            if cfg.forget == "ce":
                terms["forget"] = losses.cross_entropy_loss(token_logp["forget"], batch["loss_mask"],
                                                           cfg.retain_reduction)
            else:
                seq_logp = losses.sequence_logp(token_logp["forget"], batch["loss_mask"], cfg.logp_reduction)
                if cfg.forget == "npo":
                    terms["forget"] = losses.npo_loss(seq_logp, self.reference_logp(batch), cfg.beta,
                                                      cfg.npo_reduction)
                elif cfg.forget == "ga":
                    terms["forget"] = losses.gradient_ascent_loss(seq_logp)
                else:  # dpo: the retain batch holds each forget sentence's partner (paired chunks)
                    chosen = chunk["retain"]
                    chosen_logp = losses.sequence_logp(token_logp["retain"], chosen["loss_mask"], cfg.logp_reduction)
                    terms["forget"] = losses.dpo_loss(chosen_logp, seq_logp, self.reference_logp(chosen),
                                                      self.reference_logp(batch), cfg.beta)
        if cfg.retain_weight > 0:
            terms["retain"] = losses.cross_entropy_loss(token_logp["retain"], chunk["retain"]["loss_mask"],
                                                        cfg.retain_reduction)
        if cfg.kl_weight > 0:
            batch = chunk["kl"]
            with self.reference() as ref:
                ref_logits = self._forward(ref, batch)
            terms["kl"] = losses.forward_kl_loss(ref_logits[:, :-1], logits["kl"][:, :-1], batch["loss_mask"])
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    def training_step(self, chunk: dict, batch_idx: int) -> torch.Tensor:
        terms = self.compute_losses(chunk)
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "total", batch_size=1)
        return terms["total"]

    # Dev evaluation: SS per bias type, scored exactly as evaluate.py scores (the run's scoring config).
    def dev_scorer(self):
        scoring = self.scoring
        if self._trainer is not None and self.trainer.world_size > 1:
            # Under FSDP every forward is a collective: equal shards scored whole run the same number of forwards
            # on every rank, while prefix sharing plans its passes by content. The scores are the same.
            scoring = replace(scoring, share_prefix=False)
        return make_scorer(self.model, self.tokenizer, scoring)

    def score_dev(self) -> dict:
        """The whole dev split scored on this process (step 0, before any update), as one result per domain."""
        metric = StereoSetMetric(self.dev_targets, n_bootstrap=0)
        scores = stereoset_sentence_scores(self.dev_scorer(), self.dev_examples, self.scoring.mode)
        metric.update([self.dev_position[(ex.bias_type, ex.target)] for ex in self.dev_examples],
                      *zip(*scores))
        return metric.compute()

    def on_fit_start(self) -> None:
        # Step 0: the dev score before any update decides the starting roles (callbacks read it on train start).
        if not self.dev_history:
            self.record_dev(self.dev_before if self.dev_before is not None else self.score_dev())

    def validation_step(self, batch: list, batch_idx: int) -> None:
        indices, examples = [i for i, _ in batch], [ex for _, ex in batch]  # (dev index, example) pairs
        scores = stereoset_sentence_scores(self.dev_scorer(), examples, self.scoring.mode)
        self.dev_metric.update([self.dev_position[(ex.bias_type, ex.target)] for ex in examples],
                               [s[0] for s in scores], [s[1] for s in scores], [s[2] for s in scores],
                               example_idx=indices)  # DDP pads shards with duplicates: count each example once

    def on_validation_epoch_end(self) -> None:
        result = self.dev_metric.compute()
        self.dev_metric.reset()
        self.record_dev(result)
        for domain, values in result.items():
            self.log(f"dev/ss_{domain}", values["ss"], batch_size=1)
        self.log("dev/lms", result["overall"]["lms"], batch_size=1)

    def record_dev(self, result: dict) -> dict:
        entry = {"step": int(self.global_step), **{d: result[d]["ss"] for d in ("overall", *BIAS_TYPES) if d in result},
                 "lms": result["overall"]["lms"]}
        self.dev_history.append(entry)
        return entry

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.optim_cfg.lr, weight_decay=self.optim_cfg.weight_decay)
        schedule = get_linear_schedule_with_warmup(optimizer, self.optim_cfg.warmup_steps,
                                                   max(self.optim_cfg.total_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
