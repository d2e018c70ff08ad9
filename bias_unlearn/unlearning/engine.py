"""A training step's forward passes and losses, apart from the Lightning hooks (unlearning/module.py).

The policy is a PEFT-wrapped model; the reference is the same weights with the adapter disabled (no copy). The
reference never changes, so what a step needs of it is computed once per sequence, on first use, and kept: the
sequence log-prob of each forget sequence, and (``compute.cache_kl_reference``) the final hidden states of each KL
sequence, from which the head gives the reference distributions exactly. How a step is computed (a split head,
packed rows, the caches) follows ``ComputeConfig``; every switch gives the same losses up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bias_unlearn.config.settings import ComputeConfig, LossConfig
from bias_unlearn.models.distributed import any_rank
from bias_unlearn.models.dropout import use_fast_dropout
from bias_unlearn.models.fused_lora import resolve_fused, set_fused_lora
from bias_unlearn.models.lm_head import is_sharded, loss_rows, split_lm, token_logprobs_at_rows
from bias_unlearn.models.logprobs import token_logprobs_from_logits
from bias_unlearn.models.packing import pack, packed_loss_rows
from bias_unlearn.models.reference import reference_mode
from bias_unlearn.unlearning import losses


class StepEngine:
    """The losses of one chunk (forget, retain and KL batches) for the policy ``model()`` returns (a callable, so
    that a model a strategy wraps later is the one used); ``sharded()`` says when the model is sharded (FSDP), where
    the head cannot run apart from the body."""

    def __init__(
        self,
        model: Callable,
        tokenizer,
        loss: LossConfig,
        compute: ComputeConfig,
        sharded: Callable[[], bool] = lambda: False,
    ):
        self._model, self.tokenizer, self.loss_cfg, self.compute, self._sharded = (
            model,
            tokenizer,
            loss,
            compute,
            sharded,
        )
        policy = model()
        self._split = split_lm(policy) if compute.sparse_head and policy is not None else None
        if compute.fast_dropout and policy is not None:
            use_fast_dropout(policy)
        if policy is not None:
            set_fused_lora(policy, resolve_fused(compute.fused_lora, next(policy.parameters()).dtype))
        self.ref_cache: dict[str, float] = {}  # forget sequence key -> reference sequence log-prob
        self.kl_cache: dict[str, torch.Tensor] = {}  # KL sequence key -> reference hidden states at its loss rows

    @property
    def model(self):
        return self._model()

    def reference(self):
        """The frozen reference (models/reference.py): adapter disabled, eval mode, no gradients."""
        return reference_mode(self.model)

    @property
    def split(self):
        """The body and head apart (models/lm_head.py), or None: the full forward (also once FSDP shards the model)."""
        return None if self._split is None or self._sharded() or is_sharded(self.model) else self._split

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

        merged = {
            "input_ids": torch.cat([widen(b["input_ids"], pad_id) for b in batches]),
            "attention_mask": torch.cat([widen(b["attention_mask"], 0) for b in batches]),
        }
        outputs = (
            self._forward(self.model, merged)
            if self.split is None
            else self.split.hidden(merged["input_ids"], merged["attention_mask"])
        )
        out, start = [], 0
        for b in batches:
            rows, cols = b["input_ids"].shape
            out.append(outputs[start : start + rows, :cols])
            start += rows
        if self.split is None:
            return out
        return self._head_on_rows([loss_rows(hidden, mask) for hidden, mask in zip(out, masks)])

    def _head_on_rows(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        """The head's logits of each batch's rows, from one call: the 49k-wide head streams its whole weight per
        call, so one call over all rows costs less than one per batch."""
        logits = self.split.head(torch.cat(rows))
        return list(logits.split([len(r) for r in rows]))

    def losses(self, chunk: dict) -> dict[str, torch.Tensor]:
        """Each term and the weighted total for one chunk (forget, retain and KL batches)."""
        cfg = self.loss_cfg
        weights = {"forget": cfg.forget_weight, "retain": cfg.retain_weight, "kl": cfg.kl_weight}
        needed = {
            "forget": cfg.forget_weight > 0,
            "retain": cfg.retain_weight > 0 or cfg.forget == "dpo",
            "kl": cfg.kl_weight > 0,
        }
        roles = [role for role in ("forget", "retain", "kl") if needed[role]]
        self.fill_reference(chunk)  # before the policy's graph exists: its activations are freed first
        outputs = dict(zip(roles, self.policy_outputs([chunk[role] for role in roles])))
        token_logp = {
            role: self._token_logp(outputs[role], chunk[role]) for role in ("forget", "retain") if role in outputs
        }
        terms: dict[str, torch.Tensor] = {}
        if cfg.forget_weight > 0:
            batch = chunk["forget"]
            if cfg.forget == "ce":
                terms["forget"] = losses.cross_entropy_loss(
                    token_logp["forget"], batch["loss_mask"], cfg.retain_reduction
                )
            else:
                seq_logp = losses.sequence_logp(token_logp["forget"], batch["loss_mask"], cfg.logp_reduction)
                if cfg.forget == "npo":
                    terms["forget"] = losses.npo_loss(seq_logp, self.reference_logp(batch), cfg.beta, cfg.npo_reduction)
                elif cfg.forget == "ga":
                    terms["forget"] = losses.gradient_ascent_loss(seq_logp)
                else:  # dpo: the retain batch holds each forget sentence's partner (paired chunks)
                    chosen = chunk["retain"]
                    chosen_logp = losses.sequence_logp(token_logp["retain"], chosen["loss_mask"], cfg.logp_reduction)
                    terms["forget"] = losses.dpo_loss(
                        chosen_logp, seq_logp, self.reference_logp(chosen), self.reference_logp(batch), cfg.beta
                    )
        if cfg.retain_weight > 0:
            terms["retain"] = losses.cross_entropy_loss(
                token_logp["retain"], chunk["retain"]["loss_mask"], cfg.retain_reduction
            )
        if cfg.kl_weight > 0:
            terms["kl"] = self.kl_term(outputs["kl"], chunk["kl"])
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms
