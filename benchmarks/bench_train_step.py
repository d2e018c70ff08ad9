"""Training-step cost: our BiasUnlearn step against the authors' way, same model, data and batch sizes.

    python benchmarks/bench_train_step.py [--steps 6] [--forget 4 --retain 8 --kl 8] [--model-dir DIR]

Ours: the reference is the LoRA model with its adapter disabled (no second copy), sequences are padded to the
longest in their batch, forget reference log-probs are computed once and cached, and the policy runs the three
batches in one forward pass. The authors' way: a second full model as reference, run on every step; every
sequence padded to 100 tokens; no cache; one forward per batch. Both compute the same loss. Each variant runs in
its own process so that its peak memory (RSS on CPU, max allocated on CUDA) is its own.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

import torch


def build(args):
    from omegaconf import OmegaConf

    from bias_unlearn.data.datamodule import UnlearningDataModule
    from bias_unlearn.data.splits import split_by_target
    from bias_unlearn.data.stereoset import load_stereoset
    from bias_unlearn.models.loading import load_model
    from bias_unlearn.module import BiasUnlearnModule, LossConfig, OptimConfig
    from bias_unlearn.models.lora import wrap_lora

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = (load_model("local", args.model_dir, device=device) if args.model_dir
                        else load_model("offline", "smollm2-135m-instruct", device=device))
    split = split_by_target(load_stereoset("offline"), seed=0)
    dm = UnlearningDataModule(split, tokenizer, args.forget, args.retain, args.kl, 0.25, ["intrasentence"])
    reference = copy.deepcopy(model).eval() if args.variant == "authors" else None
    lora = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": args.targets}
    policy = wrap_lora(model, OmegaConf.create(lora))
    module = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(lr=1e-4), dm.dev_examples)
    module.to(device).train()
    return module, dm, reference, device


def pad_to(batch: dict, length: int, pad_id: int) -> dict:
    """The authors' fixed-length padding (every sequence to ``length`` tokens)."""
    width = batch["input_ids"].shape[1]
    grow = max(length - width, 0)
    pad = torch.nn.functional.pad
    return {**batch, "input_ids": pad(batch["input_ids"], (0, grow), value=pad_id),
            "attention_mask": pad(batch["attention_mask"], (0, grow), value=0),
            "loss_mask": pad(batch["loss_mask"], (0, grow), value=0)}


def authors_losses(module, reference, chunk: dict) -> torch.Tensor:
    from bias_unlearn import losses
    from bias_unlearn.logprobs import token_logprobs_from_logits

    cfg = module.loss_cfg
    f, r, k = chunk["forget"], chunk["retain"], chunk["kl"]
    logp = token_logprobs_from_logits(module._forward(module.model, f), f["input_ids"])
    seq = losses.sequence_logp(logp, f["loss_mask"], cfg.logp_reduction)
    with torch.no_grad():  # no cache: the second model recomputes the reference every step
        ref_logp = token_logprobs_from_logits(module._forward(reference, f), f["input_ids"])
        ref_seq = losses.sequence_logp(ref_logp, f["loss_mask"], cfg.logp_reduction)
        ref_kl = module._forward(reference, k)
    forget = losses.npo_loss(seq, ref_seq, cfg.beta)
    retain = losses.cross_entropy_loss(token_logprobs_from_logits(module._forward(module.model, r), r["input_ids"]),
                                       r["loss_mask"])
    kl = losses.forward_kl_loss(ref_kl[:, :-1], module._forward(module.model, k)[:, :-1], k["loss_mask"])
    return cfg.forget_weight * forget + cfg.retain_weight * retain + cfg.kl_weight * kl


def run_variant(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    module, dm, reference, device = build(args)
    optimizer = module.configure_optimizers()["optimizer"]
    stream = iter(dm.train_dataloader())
    times, tokens = [], 0
    for step in range(args.warmup + args.steps):
        chunk = next(stream)
        real = sum(int(chunk[role]["attention_mask"].sum()) for role in ("forget", "retain", "kl"))
        if args.variant == "authors":
            chunk = {role: pad_to(b, 100, dm.pad_id) for role, b in chunk.items()}
        chunk = {role: {key: v.to(device) if torch.is_tensor(v) else v for key, v in b.items()}
                 for role, b in chunk.items()}
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = authors_losses(module, reference, chunk) if args.variant == "authors" else \
            module.compute_losses(chunk)["total"]
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            tokens += real
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"variant": args.variant, "device": device, "step_s": sum(times) / len(times),
            "tokens_per_s": tokens / sum(times), "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["ours", "authors"], default=None, help="run one variant (internal)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--forget", type=int, default=4)
    parser.add_argument("--retain", type=int, default=8)
    parser.add_argument("--kl", type=int, default=8)
    parser.add_argument("--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    rows = []
    for variant in ("authors", "ours"):
        cmd = [sys.executable, __file__, "--variant", variant] + [a for a in sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"chunk {args.forget} : {args.retain} : {args.kl}, {args.steps} measured steps after {args.warmup} warm-up, "
          f"LoRA r 8 on {' '.join(args.targets)}, device {base['device']}, threads {args.threads or 'default'}")
    print("| variant | s/step | real tokens/s | peak memory (MiB) | speed-up | memory ratio |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['step_s']:.2f} | {row['tokens_per_s']:.1f} | {row['peak_mib']:.0f} | "
              f"{base['step_s'] / row['step_s']:.2f}x | {row['peak_mib'] / base['peak_mib']:.2f} |")


if __name__ == "__main__":
    main()
