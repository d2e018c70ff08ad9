"""Generation check: greedy completions of bias-sensitive prompts by the base model and the debiased model.

Scores say how much the likelihoods moved; a few completions side by side show what the model now says.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bias_unlearn.models.reference import evaluation_mode, reference_mode


@torch.no_grad()
def greedy_completion(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    enc = tokenizer(prompt, return_tensors="pt").to(model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def compare_generations(
    policy, tokenizer, prompts: Sequence[str], max_new_tokens: int = 20, base_model=None
) -> list[dict]:
    """[{prompt, base, debiased}]: the base is the training reference (the policy with its adapter disabled), or
    ``base_model`` where the debiased model is another object (a decoding-time method around it)."""
    rows = []
    for prompt in prompts:
        if base_model is not None:
            with evaluation_mode(base_model):
                base = greedy_completion(base_model, tokenizer, prompt, max_new_tokens)
        else:
            with reference_mode(policy):
                base = greedy_completion(policy, tokenizer, prompt, max_new_tokens)
        with evaluation_mode(policy):
            debiased = greedy_completion(policy, tokenizer, prompt, max_new_tokens)
        rows.append({"prompt": prompt, "base": base, "debiased": debiased})
    return rows


def generation_table(rows: list[dict]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| prompt | base model | debiased model |", "|---|---|---|"]
    lines += [f"| {cell(r['prompt'])} | {cell(r['base'])} | {cell(r['debiased'])} |" for r in rows]
    return "\n".join(lines)
