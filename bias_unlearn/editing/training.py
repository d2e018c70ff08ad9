"""Meta-training BiasEdit's editor on the train split, and the one edit it delivers.

Why not the Lightning module: BiasEdit trains a hypernetwork, not the model. Each step reads a fixed batch's keys and
value gradients (computed once from the unedited model, as its batches are fixed: no shuffling), predicts the batch's
weight shift, and backpropagates the edited model's debiasing and retention losses through the ridge solve into the
editor; the LoRA policy, the reference, the chunk streams and swapping of BiasUnlearnModule have no counterpart.

What is delivered (``global_shifts``): one edit from every train batch at once, the batches' normal equations summed
into one solve, so that one edited model is scored on every benchmark like an adapter (BiasEdit's own evaluation
edits each test batch from its own sentences and reverts: docs/baselines.md). Dev chooses the editor's epoch by the
delivery rule of the LoRA methods (the LMS bar first, then the chi2 closeness to balance).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from bias_unlearn.data.streams import TrainSequence, collate, tokenize_sentence
from bias_unlearn.editing.editor import Editor, ridge_shift
from bias_unlearn.editing.hooks import capture, module_shape, shifted
from bias_unlearn.editing.losses import debias_loss, retention_loss, sentence_means
from bias_unlearn.models.logprobs import token_logprobs
from bias_unlearn.models.tokens import start_token_id

log = logging.getLogger(__name__)


@dataclass
class EditBatch:
    pairs: dict  # stereotype rows first, then their anti-stereotypes, collated (data/streams.py)
    unrelated: dict
    keys: list  # per edited module: (N, in) inputs at the positions that carry the loss
    grads: list  # per edited module: (N, out) the debiasing loss's gradient at its output there
    unrelated_before: torch.Tensor  # (B,) each unrelated sentence's mean token probability before any edit


def sentence_rows(tokenizer, examples, sentence: str) -> list[TrainSequence]:
    start = start_token_id(tokenizer)
    rows = []
    for ex in examples:
        ids, mask = tokenize_sentence(tokenizer, start, ex, getattr(ex, sentence), whole=True)
        rows.append(TrainSequence(f"{ex.id}:{sentence}", ex.bias_type, ids, mask))
    return rows


def pair_losses(model, pairs: dict) -> tuple[torch.Tensor, int]:
    logp = token_logprobs(model, pairs["input_ids"], pairs["attention_mask"])
    half = len(logp) // 2
    means = sentence_means(logp, pairs["loss_mask"])
    return debias_loss((means[0][:half], means[1][:half]), (means[0][half:], means[1][half:])), half


def build_batches(model, modules, tokenizer, examples, n_edits: int, seed: int, pad_id: int) -> list[EditBatch]:
    """Fixed batches of ``n_edits`` examples (shuffled once, the last partial batch dropped), each with the keys and
    value gradients of ``modules`` (edited_modules) the editor reads, from the unedited model."""
    order = list(examples)
    random.Random(f"{seed}:biasedit").shuffle(order)
    batches = []
    for start in tqdm(range(0, len(order) - n_edits + 1, n_edits), desc="BiasEdit cache", leave=False):
        chunk = order[start : start + n_edits]
        pairs = collate(
            sentence_rows(tokenizer, chunk, "stereotype") + sentence_rows(tokenizer, chunk, "anti_stereotype"), pad_id
        )
        unrelated = collate(sentence_rows(tokenizer, chunk, "unrelated"), pad_id)
        with capture(modules) as store:
            loss, _ = pair_losses(model, pairs)
            loss.backward()
        rows = pairs["loss_mask"].bool()
        keys = [s["key"][:, :-1][rows] for s in store]
        grads = [s["probe"].grad[:, :-1][rows] for s in store]
        with torch.no_grad():
            before = sentence_means(
                token_logprobs(model, unrelated["input_ids"], unrelated["attention_mask"]), unrelated["loss_mask"]
            )[0]
        batches.append(EditBatch(pairs, unrelated, keys, grads, before))
    return batches


def make_editor(modules, batches: list[EditBatch], rank: int, n_blocks: int, lr: float) -> Editor:
    shapes = {module_shape(m) for m in modules}
    if len(shapes) != 1:
        raise ValueError(f"the edited modules have several shapes {shapes}: one editor per shape is not built here")
    (in_features, out_features) = shapes.pop()
    editor = Editor(in_features, out_features, len(modules), rank, n_blocks, lr)
    rows = torch.cat([torch.cat([k, g], -1) for b in batches for k, g in zip(b.keys, b.grads)])
    editor.set_normaliser(rows)
    return editor


def meta_step(model, modules, editor: Editor, batch: EditBatch, loc_coef: float) -> dict:
    """One batch: its edit predicted, the edited model's debiasing and retention losses backpropagated into the
    editor (the caller steps the optimiser)."""
    shifts = [editor.shift(k, g, i) for i, (k, g) in enumerate(zip(batch.keys, batch.grads))]
    with shifted(modules, shifts):
        debias, _ = pair_losses(model, batch.pairs)
        after = token_logprobs(model, batch.unrelated["input_ids"], batch.unrelated["attention_mask"])
        retain = retention_loss(batch.unrelated_before, sentence_means(after, batch.unrelated["loss_mask"])[1])
    loss = debias + loc_coef * retain
    loss.backward()
    return {"debias": float(debias), "retain": float(retain), "loss": float(loss)}


@torch.no_grad()
def global_shifts(editor: Editor, batches: list[EditBatch]) -> list[torch.Tensor]:
    """One shift per edited module from every batch: sum_b U_b^T U_b and sum_b U_b^T D_b, one ridge solve."""
    out = []
    for i in range(len(batches[0].keys)):
        gram = sum(b.keys[i].T @ b.keys[i] for b in batches)
        cross = sum(b.keys[i].T @ editor.value_diffs(b.keys[i], b.grads[i], i) for b in batches)
        out.append(ridge_shift(gram, cross, editor.log_lambda[i]))
    return out
