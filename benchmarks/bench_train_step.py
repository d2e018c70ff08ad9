"""Training-step cost: the authors' way, our previous step and our step, on the same model and chunks.

    python benchmarks/bench_train_step.py [--chunks 4] [--forget 4 --retain 8 --kl 4] [--targets ...]
                                          [--variants authors previous ours] [--precisions fp32 bf16]
                                          [--model-dir DIR] [--threads 2] [--profile]

Each variant runs in fp32 and (``--precisions``) in bf16-mixed: the frozen base stored in bf16, its products under
autocast, the LoRA adapters and AdamW state in fp32 (what ``model.dtype=fastest`` picks on a CPU that computes bf16
in hardware). The table gives model FLOP/s as a share of the machine's best matmul peak, fp32 or bf16, both
measured in the same run. ``--profile`` adds one more steady pass per variant under torch's profiler (after the
measured ones, so their times are untouched) and a second table: the share of the step's operator time that goes
to matrix products, to dtype casts and copies, and the heaviest other operators: why a faster matmul does or does not
make a faster step.

- authors: a second full model as reference, run on every step; every sequence padded to 100 tokens; no caches;
  one forward per batch; logits and log-softmax over every position.
- previous: this project's step before the speed work (``ComputeConfig.plain()``): adapter-disabled reference,
  forget reference log-probs cached, the three batches in one forward, the KL reference run on every step, logits
  over every position.
- ours: the default step (``ComputeConfig()``): the LM head and its log-softmax only at positions that carry a
  loss (one head call over the three batches' rows), the KL reference's hidden states cached per sequence, the
  policy's sequences packed without padding, LoRA dropout masks from 16-bit draws, the LoRA branch's scale and add
  inside one in-place addmm, AdamW's fused kernel.
- ours-unfused: ours with PEFT's own LoRA forward (``fused_lora=False``): what the fused addmm saves.
- ours-loop-adamw: ours with torch's default AdamW (``fused_optimizer=False``; on CPU a loop of ~12 operators per
  adapter tensor): what the fused optimizer saves.
- ours-reference-per-batch: ours with the reference values a chunk misses computed batch by batch, one small
  forward for the forget batch and one for the KL batch, as before ``BiasUnlearnModule.fill_reference``: what one
  packed reference forward saves in a first pass.

Every variant runs a warm-up pass over ``--chunks`` chunks, then two measured passes over ``--chunks`` other chunks:
the first pass meets their forget and KL sequences for the first time (the reference values are computed: what a
run pays in its first pass over its pools, and the default job is one pass), the second finds them cached (a long
run's steady state). Each variant runs in its own process so that its peak memory (RSS on CPU, max allocated on
CUDA) is its own. Model FLOPs are counted the same way for every variant and pass, from real tokens (padding
excluded): a policy token 4 x P (forward and activation gradients; frozen weights need no weight gradients), a KL
reference token 2 x P, P the parameter count; so "% of peak" is useful work per second (a first pass's forget
reference forward is not counted, a cached KL reference still is), against the machine's matmul peak (fp32 on CPU,
bf16 on a GPU) measured in the same run.
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
from bench_model import bench_model  # benchmarks/bench_model.py (the script's folder is on sys.path)
from peak import cpu_peaks, matmul_peak_gflops  # benchmarks/peak.py (the script's folder is on sys.path)

MATMUL_OPS = {
    "aten::mm",
    "aten::addmm",
    "aten::addmm_",
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
}
CAST_OPS = {"aten::copy_", "aten::_to_copy"}
VARIANTS = ("authors", "previous", "ours-unfused", "ours-loop-adamw", "ours-reference-per-batch", "ours")
PRECISIONS = ("fp32", "bf16")


def build(args):
    from omegaconf import OmegaConf

    from bias_unlearn.config.settings import ComputeConfig, LossConfig, OptimConfig
    from bias_unlearn.data.datamodule import UnlearningDataModule
    from bias_unlearn.data.splits import split_by_target
    from bias_unlearn.data.stereoset import load_stereoset
    from bias_unlearn.models.lora import wrap_lora
    from bias_unlearn.unlearning.module import BiasUnlearnModule

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model, tokenizer = bench_model(args.model_dir, dtype, device)
    n_params = sum(p.numel() for p in model.parameters())
    split = split_by_target(load_stereoset("offline"), seed=0)
    dm = UnlearningDataModule(split, tokenizer, args.forget, args.retain, args.kl, 0.25, ["intrasentence"])
    reference = copy.deepcopy(model).eval() if args.variant == "authors" else None
    lora = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": args.targets}
    policy = wrap_lora(model, OmegaConf.create(lora))
    compute = {
        "ours": ComputeConfig(fused_lora=True),
        "ours-unfused": ComputeConfig(fused_lora=False),
        "ours-loop-adamw": ComputeConfig(fused_lora=True, fused_optimizer=False),
        "ours-reference-per-batch": ComputeConfig(fused_lora=True),
    }.get(args.variant, ComputeConfig.plain())
    module = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(lr=1e-4), dm.dev_examples, compute=compute)
    if args.variant == "ours-reference-per-batch":
        module.engine.fill_reference = lambda chunk: None  # reference_logp / reference_kl_rows compute them on use
    module.to(device).train()
    return module, dm, reference, device, n_params


def pad_to(batch: dict, length: int, pad_id: int) -> dict:
    """The authors' fixed-length padding (every sequence to ``length`` tokens)."""
    grow = max(length - batch["input_ids"].shape[1], 0)
    pad = torch.nn.functional.pad
    return {
        **batch,
        "input_ids": pad(batch["input_ids"], (0, grow), value=pad_id),
        "attention_mask": pad(batch["attention_mask"], (0, grow), value=0),
        "loss_mask": pad(batch["loss_mask"], (0, grow), value=0),
    }


def authors_losses(module, reference, chunk: dict) -> torch.Tensor:
    from bias_unlearn.models.logprobs import token_logprobs_from_logits
    from bias_unlearn.unlearning import losses

    cfg = module.loss_cfg
    f, r, k = chunk["forget"], chunk["retain"], chunk["kl"]
    logp = token_logprobs_from_logits(module.engine._forward(module.model, f), f["input_ids"])
    seq = losses.sequence_logp(logp, f["loss_mask"], cfg.logp_reduction)
    with torch.no_grad():  # no cache: the second model recomputes the reference every step
        ref_logp = token_logprobs_from_logits(module.engine._forward(reference, f), f["input_ids"])
        ref_seq = losses.sequence_logp(ref_logp, f["loss_mask"], cfg.logp_reduction)
        ref_kl = module.engine._forward(reference, k)
    forget = losses.npo_loss(seq, ref_seq, cfg.beta)
    retain = losses.cross_entropy_loss(
        token_logprobs_from_logits(module.engine._forward(module.model, r), r["input_ids"]),
        r["loss_mask"],
        cfg.retain_reduction,
    )
    kl = losses.forward_kl_loss(ref_kl[:, :-1], module.engine._forward(module.model, k)[:, :-1], k["loss_mask"])
    return cfg.forget_weight * forget + cfg.retain_weight * retain + cfg.kl_weight * kl


def model_gflop(chunk: dict, n_params: int) -> float:
    """Model FLOPs of one step from real tokens: 4 P per policy token, 2 P per KL reference token."""
    real = {role: int(batch["attention_mask"].sum()) for role, batch in chunk.items()}
    return (4 * n_params * sum(real.values()) + 2 * n_params * real["kl"]) / 1e9


def step(module, reference, optimizer, chunk: dict, variant: str, precision: str, device: str) -> None:
    optimizer.zero_grad()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = (
            authors_losses(module, reference, chunk) if variant == "authors" else module.compute_losses(chunk)["total"]
        )
    loss.backward()
    optimizer.step()


def operator_shares(run_pass) -> dict:
    """Self time per operator over one pass (``run_pass()``) under torch's profiler: the matmul and cast shares and
    the five heaviest other operators."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_pass()
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values()) or 1.0
    others = sorted(((us, name) for name, us in self_us.items() if name not in MATMUL_OPS | CAST_OPS), reverse=True)
    return {
        "matmul": sum(us for name, us in self_us.items() if name in MATMUL_OPS) / total,
        "casts": sum(us for name, us in self_us.items() if name in CAST_OPS) / total,
        "top": [(name, us / total) for us, name in others[:5]],
    }


def run_variant(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    module, dm, reference, device, n_params = build(args)
    optimizer = module.configure_optimizers()["optimizer"]
    stream = iter(dm.train_dataloader())
    warm = [next(stream) for _ in range(args.chunks)]
    fresh = [next(stream) for _ in range(args.chunks)]
    sequences = sum(len(batch["keys"]) for batch in fresh[0].values())
    times, gflop = {"first": [], "steady": []}, {"first": 0.0, "steady": 0.0}

    def prepare(chunk: dict) -> dict:
        if args.variant == "authors":
            chunk = {role: pad_to(b, 100, dm.pad_id) for role, b in chunk.items()}
        return {
            role: {key: v.to(device) if torch.is_tensor(v) else v for key, v in b.items()} for role, b in chunk.items()
        }

    for measured, chunks in ((None, warm), ("first", fresh), ("steady", fresh)):
        if measured == "first":  # the first pass must meet every forget and KL sequence for the first time
            seen = set(module.engine.ref_cache) | set(module.engine.kl_cache)
            if any(key in seen for chunk in fresh for batch in chunk.values() for key in batch["keys"]):
                sys.exit("the first pass would find sequences the warm-up cached: fewer --chunks or smaller batches")
        for chunk in chunks:
            flops = model_gflop(chunk, n_params)
            chunk = prepare(chunk)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(module, reference, optimizer, chunk, args.variant, args.precision, device)
            if device == "cuda":
                torch.cuda.synchronize()
            if measured:
                times[measured].append(time.perf_counter() - start)
                gflop[measured] += flops
    peak_mib = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    shares = (
        operator_shares(
            lambda: [
                step(module, reference, optimizer, prepare(c), args.variant, args.precision, device) for c in fresh
            ]
        )
        if args.profile
        else None
    )
    step_s = sum(times["steady"]) / len(times["steady"])
    return {
        "variant": args.variant,
        "precision": args.precision,
        "device": device,
        "step_s": step_s,
        "seq_per_s": sequences / step_s,
        "gflop_per_s": gflop["steady"] / sum(times["steady"]),
        "first_step_s": sum(times["first"]) / len(times["first"]),
        "first_gflop_per_s": gflop["first"] / sum(times["first"]),
        "peak_mib": peak_mib,
        "params_m": n_params / 1e6,
        "threads": torch.get_num_threads(),
        "shares": shares,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="run one variant (internal)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="one variant's precision (internal)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument(
        "--chunks",
        type=int,
        default=4,
        help="chunks per pass (a warm-up pass over some chunks, then a first and a steady pass over as many others)",
    )
    parser.add_argument("--forget", type=int, default=4)
    parser.add_argument("--retain", type=int, default=8)
    parser.add_argument("--kl", type=int, default=4)
    parser.add_argument(
        "--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="where the steady step's operator time goes")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peaks = {"fp32": [], "bf16": []}

    def measure_peaks():
        if device == "cuda":
            peaks["bf16"].append(matmul_peak_gflops(device=device))
        else:
            for dtype, value in cpu_peaks().items():
                peaks[dtype].append(value)

    measure_peaks()
    rows = []
    for precision in args.precisions:
        for variant in args.variants:
            cmd = [sys.executable, __file__, "--variant", variant, "--precision", precision, *sys.argv[1:]]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:  # e.g. -9: killed for memory (the authors' way at the paper's chunk on 24 GiB)
                last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                why = "killed (out of memory?)" if proc.returncode in (-9, 137) else last
                rows.append({"variant": variant, "precision": precision, "failed": f"exit {proc.returncode}: {why}"})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            measure_peaks()  # between variants: the machine's drift shows in the spread
    best = {dtype: max(values) for dtype, values in peaks.items() if values}
    peak = max(best.values())
    done = [row for row in rows if "failed" not in row]
    if not done:
        sys.exit("every variant failed: " + "; ".join(f"{r['variant']}: {r['failed']}" for r in rows))
    first = done[0]
    spread = "; ".join(f"{d} {min(v):.0f}-{max(v):.0f}" for d, v in peaks.items() if v)
    print(
        f"chunk {args.forget} : {args.retain} : {args.kl}, {args.chunks} chunks a pass (warm-up pass on other "
        "chunks; s/step, sequences/s and % of peak from the steady pass, first pass beside), "
        f"LoRA r 8 on {' '.join(args.targets)}, {first['params_m']:.1f}M parameters, device {first['device']}, "
        f"{first['threads']} threads; matmul peaks (2048^3 on CPU, emulated bf16 512^3, bf16 8192^3 on CUDA; "
        f"GFLOP/s, best of {len(peaks['fp32']) or len(peaks['bf16'])} measurements): {spread}; % of peak is of the "
        f"best, {peak:.0f}"
    )
    header = [
        "variant",
        "precision",
        "s/step",
        "sequences/s",
        "model GFLOP/s",
        "% of peak",
        "first pass: s/step",
        "first pass: sequences/s",
        "first pass: % of peak",
        "peak memory (MiB)",
        f"speed-up vs {first['variant']} {first['precision']} (first pass)",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        if "failed" in row:
            print(f"| {row['variant']} | {row['precision']} | {row['failed']} |" + " |" * (len(header) - 3))
            continue
        print(
            f"| {row['variant']} | {row['precision']} | {row['step_s']:.2f} | {row['seq_per_s']:.1f} | "
            f"{row['gflop_per_s']:.1f} | {100 * row['gflop_per_s'] / peak:.0f}% | {row['first_step_s']:.2f} | "
            f"{row['seq_per_s'] * row['step_s'] / row['first_step_s']:.1f} | "
            f"{100 * row['first_gflop_per_s'] / peak:.0f}% | {row['peak_mib']:.0f} | "
            f"{first['step_s'] / row['step_s']:.2f}x ({first['first_step_s'] / row['first_step_s']:.2f}x) |"
        )
    profiled = [row for row in done if row.get("shares")]
    if profiled:
        print(
            "\nWhere the steady step's operator time goes (self CPU time under torch's profiler, one more steady pass):"
        )
        print(
            "| variant | precision | matrix products | casts and copies | heaviest other operators |\n"
            "|---|---|---|---|---|"
        )
        for row in profiled:
            shares = row["shares"]
            top = ", ".join(f"{name} {100 * share:.0f}%" for name, share in shares["top"])
            print(
                f"| {row['variant']} | {row['precision']} | {100 * shares['matmul']:.0f}% | "
                f"{100 * shares['casts']:.0f}% | {top} |"
            )


if __name__ == "__main__":
    main()
