"""The LightningModule: a LoRA policy over a frozen base model whose adapter-disabled self is the reference. The
hooks live here (training step, dev evaluation, checkpoint state, optimiser); the step's forward passes, caches and
losses in unlearning/engine.py."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import torch

from bias_unlearn.config.settings import ComputeConfig, LossConfig, OptimConfig, ScoringConfig
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.stereoset import StereoSetMetric, stereoset_sentence_scores
from bias_unlearn.models.distributed import gather_objects
from bias_unlearn.unlearning.balance import ss_resolution, ss_standard_error
from bias_unlearn.unlearning.engine import StepEngine
from bias_unlearn.unlearning.resume import rng_state, set_rng_state


class BiasUnlearnModule(L.LightningModule):
    """Holds the PEFT-wrapped policy (``model``); ``engine`` computes each chunk's losses from it (and its
    adapter-disabled reference), ``dev_history`` records every dev evaluation that swaps, stopping and delivery
    read."""

    def __init__(
        self,
        model,
        tokenizer,
        loss: LossConfig,
        optim: OptimConfig,
        dev_examples,
        scoring: ScoringConfig | None = None,
        dev_before: dict | None = None,
        compute: ComputeConfig | None = None,
    ):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.loss_cfg, self.optim_cfg = loss, optim
        self.scoring = scoring or ScoringConfig(n_bootstrap=0)  # the run's one scoring config (eval/scorer.py)
        self.compute = compute or ComputeConfig()
        self.engine = StepEngine(lambda: self.model, tokenizer, loss, self.compute, sharded=self.fsdp)
        self.dev_examples = list(dev_examples)
        self.dev_targets = sorted({(ex.bias_type, ex.target) for ex in self.dev_examples})
        self.dev_resolution = ss_resolution(self.dev_examples)  # balance.py: how finely dev SS can move per type
        self.dev_se = ss_standard_error(self.dev_examples)  # balance.py: how precisely dev measures each type's SS
        self.dev_metric = StereoSetMetric(self.dev_targets, n_bootstrap=0)
        self.dev_position = {t: i for i, t in enumerate(self.dev_targets)}
        self.dev_before = dev_before  # the step-0 dev result when the caller already has it (e.g. cached)
        self.dev_history: list[dict] = []  # one entry per dev evaluation: step and per-type SS
        self.strict_loading = False  # a resume checkpoint holds the adapter, not the frozen base
        self._resumed_rng: list | None = None

    def fsdp(self) -> bool:
        """Whether the trainer shards the policy with FSDP (then every forward is a collective)."""
        return self._trainer is not None and "FSDP" in type(self.trainer.strategy).__name__

    def compute_losses(self, chunk: dict) -> dict[str, torch.Tensor]:
        """Each loss term and the weighted total for one chunk (unlearning/engine.py)."""
        return self.engine.losses(chunk)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if isinstance(batch, list):  # dev examples: plain records; the scorer tokenises them on the model's device
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, chunk: dict, batch_idx: int) -> torch.Tensor:
        terms = self.compute_losses(chunk)
        self.last_terms = {name: value.detach() for name, value in terms.items()}  # callbacks/non_finite.py
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
        metric = StereoSetMetric(self.dev_targets, n_bootstrap=0, sync_on_compute=False)  # every rank scores it all
        scores = stereoset_sentence_scores(self.dev_scorer(), self.dev_examples, self.scoring.mode)
        metric.update([self.dev_position[(ex.bias_type, ex.target)] for ex in self.dev_examples], *zip(*scores))
        return metric.compute()

    def on_fit_start(self) -> None:
        # Step 0: the dev score before any update decides the starting roles (callbacks read it on train start).
        if not self.dev_history:
            self.record_dev(self.dev_before if self.dev_before is not None else self.score_dev())

    def validation_step(self, batch: list, batch_idx: int) -> None:
        indices, examples = [i for i, _ in batch], [ex for _, ex in batch]  # (dev index, example) pairs
        scores = stereoset_sentence_scores(self.dev_scorer(), examples, self.scoring.mode)
        self.dev_metric.update(
            [self.dev_position[(ex.bias_type, ex.target)] for ex in examples],
            [s[0] for s in scores],
            [s[1] for s in scores],
            [s[2] for s in scores],
            example_idx=indices,
        )  # DDP pads shards with duplicates: count each example once

    def on_validation_epoch_end(self) -> None:
        result = self.dev_metric.compute()
        self.dev_metric.reset()
        self.record_dev(result)
        for domain, values in result.items():
            self.log(f"dev/ss_{domain}", values["ss"], batch_size=1)
        self.log("dev/lms", result["overall"]["lms"], batch_size=1)

    def record_dev(self, result: dict) -> dict:
        entry = {
            "step": int(self.global_step),
            **{d: result[d]["ss"] for d in ("overall", *BIAS_TYPES) if d in result},
            "lms": result["overall"]["lms"],
        }
        self.dev_history.append(entry)
        return entry

    # Resume (resume.py): the checkpoint keeps the adapter, the dev history and every rank's RNG state.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        def plain(name: str) -> str:  # FSDP1 / activation-checkpoint wrappers add segments to parameter names
            return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")

        trainable = {plain(name) for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if plain(k) in trainable}
        checkpoint["bias_unlearn"] = {
            "dev_history": self.dev_history,
            "dev_before": self.dev_before,
            "rng": gather_objects(rng_state()),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["bias_unlearn"]
        self.dev_history, self.dev_before = [dict(e) for e in state["dev_history"]], state["dev_before"]
        self._resumed_rng = state["rng"]

    def on_train_start(self) -> None:
        # The RNG as it stood when the checkpoint was written, set just before the first resumed step draws from it.
        if self._resumed_rng is not None:
            set_rng_state(self._resumed_rng[self.global_rank])
            self._resumed_rng = None

    def fused_optimizer(self, params: list) -> bool:
        """Whether AdamW runs its fused kernel: it updates each tensor in one call, where torch's default on CPU
        loops over ~12 operators per tensor (a LoRA on every linear layer has hundreds of small tensors). Not for
        sharded (DTensor) parameters, and not with gradient clipping (Lightning's mixed precision refuses to clip
        the gradients of a fused optimizer). A resumed run keeps its checkpoint's setting (torch's load_state_dict)."""
        clipping = getattr(self._trainer, "gradient_clip_val", None)
        return bool(
            self.compute.fused_optimizer
            and not clipping
            and all(p.device.type in ("cpu", "cuda") and type(p.data).__name__ != "DTensor" for p in params)
        )

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=self.optim_cfg.lr,
            weight_decay=self.optim_cfg.weight_decay,
            fused=self.fused_optimizer(params) or None,
        )
        schedule = get_linear_schedule_with_warmup(
            optimizer, self.optim_cfg.warmup_steps, max(self.optim_cfg.total_steps, 1)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
