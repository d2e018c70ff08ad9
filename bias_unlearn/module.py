"""The LightningModule: a LoRA policy over a frozen base model whose adapter-disabled self is the reference."""
from __future__ import annotations

from dataclasses import replace

import lightning as L
import torch

from bias_unlearn import losses
from bias_unlearn.balance import ss_resolution, ss_standard_error
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.distributed import any_rank, gather_objects
from bias_unlearn.eval.metrics import StereoSetMetric
from bias_unlearn.eval.scorer import ScoringConfig, make_scorer
from bias_unlearn.eval.stereoset import stereoset_sentence_scores
from bias_unlearn.logprobs import token_logprobs_from_logits
from bias_unlearn.models.dropout import use_fast_dropout
from bias_unlearn.models.fused_lora import set_fused_lora
from bias_unlearn.models.lm_head import is_sharded, loss_rows, split_lm, token_logprobs_at_rows
from bias_unlearn.models.packing import pack, packed_loss_rows
from bias_unlearn.models.reference import reference_mode
from bias_unlearn.module_config import ComputeConfig, LossConfig, OptimConfig
from bias_unlearn.resume import rng_state, set_rng_state


class BiasUnlearnModule(L.LightningModule):
    """Holds the PEFT-wrapped policy. The reference is the same weights with the adapter disabled (no copy).

    The reference never changes, so what a step needs of it is computed once per sequence, on first use, and
    kept: the sequence log-prob of each forget sequence, and (``compute.cache_kl_reference``) the final hidden
    states of each KL sequence, from which the head gives the reference distributions exactly.
    """

    def __init__(self, model, tokenizer, loss: LossConfig, optim: OptimConfig, dev_examples,
                 scoring: ScoringConfig | None = None, dev_before: dict | None = None,
                 compute: ComputeConfig | None = None):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.loss_cfg, self.optim_cfg = loss, optim
        self.scoring = scoring or ScoringConfig(n_bootstrap=0)  # the run's one scoring config (eval/scorer.py)
        self.compute = compute or ComputeConfig()
        self._split = split_lm(model) if self.compute.sparse_head else None
        if self.compute.fast_dropout and model is not None:
            use_fast_dropout(model)
        if model is not None:
            set_fused_lora(model, self.compute.fused_lora)
        self.ref_cache: dict[str, float] = {}  # forget sequence key -> reference sequence log-prob
        self.kl_cache: dict[str, torch.Tensor] = {}  # KL sequence key -> reference hidden states at its loss rows
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

    def reference(self):
        """The frozen reference (models/reference.py): adapter disabled, eval mode, no gradients."""
        return reference_mode(self.model)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if isinstance(batch, list):  # dev examples: plain records; the scorer tokenises them on the model's device
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @property
    def split(self):
        """The body and head apart (models/lm_head.py), or None: the full forward (also once FSDP shards the model)."""
        fsdp = self._trainer is not None and "FSDP" in type(self.trainer.strategy).__name__
        return None if self._split is None or fsdp or is_sharded(self.model) else self._split

    def _forward(self, model, batch: dict) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def _outputs(self, model, batch: dict) -> torch.Tensor:
        """What the losses start from: the logits at the loss rows (N, V) when the model is split, else at every
        position (B, T, V)."""
        if self.split is None:
            return self._forward(model, batch)
        hidden = self.split.hidden(batch["input_ids"], batch["attention_mask"])
        return self.split.head(loss_rows(hidden, batch["loss_mask"]))

    def _token_logp(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.split is None:
            return token_logprobs_from_logits(outputs, batch["input_ids"])
        return token_logprobs_at_rows(outputs, batch["input_ids"], batch["loss_mask"])

    def _cached_reference(self, cache: dict, batch: dict, compute) -> list:
        """Per sequence of ``batch``, the reference's value kept in ``cache``; ``compute(rows)`` gives the values of
        those rows, run under the reference context. Under FSDP a forward is a collective: when any rank misses,
        every rank runs the reference (on its missing rows, or on all its rows when none is missing, so no rank runs
        a zero-row batch)."""
        keys = batch["keys"]
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if any_rank(bool(missing), batch["input_ids"].device):
            rows = missing or list(range(len(keys)))
            with self.reference():
                cache.update(zip([keys[i] for i in rows], compute(rows)))
        return [cache[key] for key in keys]

    def reference_logp(self, batch: dict) -> torch.Tensor:
        """The reference's sequence log-prob of each forget sequence, computed once and kept."""
        def logp(rows):
            sub = {k: batch[k][rows] for k in ("input_ids", "attention_mask", "loss_mask")}
            token_logp = self._token_logp(self._outputs(self.model, sub), sub)
            return losses.sequence_logp(token_logp, sub["loss_mask"], self.loss_cfg.logp_reduction).tolist()

        return torch.tensor(self._cached_reference(self.ref_cache, batch, logp), device=batch["input_ids"].device)

    def reference_kl_rows(self, batch: dict) -> torch.Tensor:
        """The reference's final hidden states at the KL batch's loss rows (N, H), row-major; kept per sequence
        when ``compute.cache_kl_reference``."""
        mask = batch["loss_mask"].bool()

        def hidden_rows(rows):
            hidden = self.split.hidden(batch["input_ids"][rows], batch["attention_mask"][rows])
            return [hidden[j, :-1][mask[i]] for j, i in enumerate(rows)]

        cache = self.kl_cache if self.compute.cache_kl_reference else {}
        return torch.cat(self._cached_reference(cache, batch, hidden_rows))

    def fill_reference(self, chunk: dict) -> None:
        """Every reference value this chunk's losses read and the caches lack (forget log-probs, KL hidden rows),
        from one packed forward of the reference over the missing sequences of all its batches: one pass over the
        weights with larger matmuls instead of a small forward per batch. A run's first pass over its pools misses
        on every sequence (the default job is one pass: its caches are written once and hardly read again), so this
        is most of what the reference costs there. The same values as computing them batch by batch
        (``reference_logp``, ``reference_kl_rows``, which then find them cached) up to float rounding.
        Only where the step packs sequences and keeps KL rows; elsewhere those compute them on use."""
        if self.split is None or not (self.compute.pack_sequences and self.compute.cache_kl_reference):
            return
        cfg = self.loss_cfg
        wanted = []  # (role, cache): the batches whose reference values the losses read
        if cfg.forget_weight > 0 and cfg.forget in ("npo", "dpo"):
            wanted += [("forget", self.ref_cache)] + ([("retain", self.ref_cache)] if cfg.forget == "dpo" else [])
        if cfg.kl_weight > 0:
            wanted.append(("kl", self.kl_cache))
        subs, is_kl, keys = [], [], []
        scheduled: dict[int, set] = {}  # per cache: the keys already in this forward (a cycling pool repeats keys)
        for role, cache in wanted:
            batch, seen, missing = chunk[role], scheduled.setdefault(id(cache), set()), []
            for i, key in enumerate(batch["keys"]):
                if key not in cache and key not in seen:
                    seen.add(key)
                    missing.append(i)
            if missing:
                subs.append({k: batch[k][missing] for k in ("input_ids", "attention_mask", "loss_mask")})
                is_kl.append(role == "kl")
                keys.append([batch["keys"][i] for i in missing])
        if not subs:  # (no rank agreement needed: a split model is never sharded, so this forward is local)
            return
        with self.reference():
            packed = pack(subs, self.tokenizer.pad_token_id or 0)
            hidden = self.split.hidden(packed.input_ids, packed.attention_mask, packed.position_ids)
            hidden_rows = packed_loss_rows(hidden, packed, [sub["loss_mask"] for sub in subs])
            logp_subs = [i for i, kl in enumerate(is_kl) if not kl]
            logits = self._head_on_rows([hidden_rows[i] for i in logp_subs]) if logp_subs else []
            for i, row_logits in zip(logp_subs, logits):
                sub = subs[i]
                token_logp = token_logprobs_at_rows(row_logits, sub["input_ids"], sub["loss_mask"])
                values = losses.sequence_logp(token_logp, sub["loss_mask"], cfg.logp_reduction).tolist()
                self.ref_cache.update(zip(keys[i], values))
            for i in (i for i, kl in enumerate(is_kl) if kl):
                counts = subs[i]["loss_mask"].bool().sum(dim=1).tolist()
                self.kl_cache.update(zip(keys[i], hidden_rows[i].split(counts)))

    def kl_term(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        """Forward KL(reference || policy) over the KL batch's loss positions (``outputs``: the policy's, as
        ``_outputs`` gives them)."""
        mask = batch["loss_mask"]
        if self.split is None:
            with self.reference() as ref:
                ref_logits = self._forward(ref, batch)
            return losses.forward_kl_loss(ref_logits[:, :-1], outputs[:, :-1], mask)
        ref_rows = self.reference_kl_rows(batch)
        with self.reference():  # the head with any adapter of its own disabled
            ref_logits = self.split.head(ref_rows)
        every = torch.ones(1, len(outputs), device=outputs.device)
        return losses.forward_kl_loss(ref_logits[None], outputs[None], every)

    def policy_outputs(self, batches: list[dict]) -> list[torch.Tensor]:
        """The policy's outputs (as ``_outputs`` gives them) of several batches from one forward pass and, when the
        model is split, one head call over every batch's loss rows (bigger matmuls, one backward graph)."""
        pad_id = self.tokenizer.pad_token_id or 0
        masks = [b["loss_mask"] for b in batches]
        if self.split is not None and self.compute.pack_sequences:
            packed = pack(batches, pad_id)
            hidden = self.split.hidden(packed.input_ids, packed.attention_mask, packed.position_ids)
            return self._head_on_rows(packed_loss_rows(hidden, packed, masks))
        width = max(b["input_ids"].shape[1] for b in batches)

        def widen(t, value):
            return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

        merged = {"input_ids": torch.cat([widen(b["input_ids"], pad_id) for b in batches]),
                  "attention_mask": torch.cat([widen(b["attention_mask"], 0) for b in batches])}
        outputs = (self._forward(self.model, merged) if self.split is None
                   else self.split.hidden(merged["input_ids"], merged["attention_mask"]))
        out, start = [], 0
        for b in batches:
            rows, cols = b["input_ids"].shape
            out.append(outputs[start: start + rows, :cols])
            start += rows
        if self.split is None:
            return out
        return self._head_on_rows([loss_rows(hidden, mask) for hidden, mask in zip(out, masks)])

    def _head_on_rows(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        """The head's logits of each batch's rows, from one call: the 49k-wide head streams its whole weight per
        call, so one call over all rows costs less than one per batch."""
        logits = self.split.head(torch.cat(rows))
        return list(logits.split([len(r) for r in rows]))

    def compute_losses(self, chunk: dict) -> dict[str, torch.Tensor]:
        """Each term and the weighted total for one chunk (forget, retain and KL batches)."""
        cfg = self.loss_cfg
        weights = {"forget": cfg.forget_weight, "retain": cfg.retain_weight, "kl": cfg.kl_weight}
        needed = {"forget": cfg.forget_weight > 0, "retain": cfg.retain_weight > 0 or cfg.forget == "dpo",
                  "kl": cfg.kl_weight > 0}
        roles = [role for role in ("forget", "retain", "kl") if needed[role]]
        self.fill_reference(chunk)  # before the policy's graph exists: its activations are freed first
        outputs = dict(zip(roles, self.policy_outputs([chunk[role] for role in roles])))
        token_logp = {role: self._token_logp(outputs[role], chunk[role]) for role in ("forget", "retain")
                      if role in outputs}
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
            terms["kl"] = self.kl_term(outputs["kl"], chunk["kl"])
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms

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

    # Resume (resume.py): the checkpoint keeps the adapter, the dev history and every rank's RNG state.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        def plain(name: str) -> str:  # FSDP1 / activation-checkpoint wrappers add segments to parameter names
            return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")
        trainable = {plain(name) for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if plain(k) in trainable}
        checkpoint["bias_unlearn"] = {"dev_history": self.dev_history, "dev_before": self.dev_before,
                                      "rng": gather_objects(rng_state())}

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
        return bool(self.compute.fused_optimizer and not clipping and all(
            p.device.type in ("cpu", "cuda") and type(p.data).__name__ != "DTensor" for p in params))

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.optim_cfg.lr, weight_decay=self.optim_cfg.weight_decay,
                                      fused=self.fused_optimizer(params) or None)
        schedule = get_linear_schedule_with_warmup(optimizer, self.optim_cfg.warmup_steps,
                                                   max(self.optim_cfg.total_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
