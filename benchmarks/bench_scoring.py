"""Scoring speed: batch-size-1 reference, length-sorted padded batches (the previous scorer), length-sorted packed
batches with the LM head only at scored positions, shared prefixes, and our default (share_prefix=auto: shared
prefixes only where they skip at least half the tokens, packed batches elsewhere), on the same model and rows.

    python benchmarks/bench_scoring.py [--n 300] [--model-dir DIR] [--threads 2] [--precision fp32|bf16]

Prints one table: sentences/s; executed GFLOP/s (decoder matmuls + LM head as run, padding included, attention-score
FLOPs left out); model GFLOP/s (2 x parameters per real token of every scored sequence: the same count for every
scorer) and its share of this machine's best matmul peak (fp32 or bf16, both measured in the same run); the speed-up
over batch size 1; and the largest difference of a sentence score (mean token log-prob) from the reference (below
1e-4 in fp32, checked; in bf16 reported as measured: bf16 rounds each batch layout's sums differently). Each scorer
first scores 16 examples unmeasured: a training run scores its dev split every few steps, so the steady state is
what it pays.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_model import bench_model  # benchmarks/bench_model.py (the script's folder is on sys.path)
from peak import cpu_peaks  # benchmarks/peak.py (the script's folder is on sys.path)

from bias_unlearn.data.bbq import load_bbq
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.eval import batching
from bias_unlearn.eval.bbq import bbq_prompt
from bias_unlearn.eval.scorer import SentenceScorer

OPTIONS = ("stereotype", "anti_stereotype", "unrelated")


class FlopCounter:
    """Counts tokens entering the decoder and positions reaching the LM head, via forward hooks."""

    def __init__(self, model):
        self.decoder_params = sum(p.numel() for n, p in model.named_parameters() if "layers." in n or ".h." in n)
        head = model.get_output_embeddings()
        self.head_flops_per_position = 2 * head.weight.numel()
        self.tokens = self.positions = 0
        model.get_input_embeddings().register_forward_hook(self._on_embed)
        head.register_forward_hook(self._on_head)
        # the packed scorer runs the head a vocabulary slice at a time, not through the module: count its rows there
        streamed = batching.head_log_softmax

        def counted(hidden, *args, **kwargs):
            self.positions += len(hidden)
            return streamed(hidden, *args, **kwargs)

        batching.head_log_softmax = counted

    def _on_embed(self, module, args, output):
        self.tokens += output.shape[0] * output.shape[1]

    def _on_head(self, module, args, output):
        self.positions += output.numel() // output.shape[-1]  # (B, T, V) over all positions, or (N, V) rows

    def reset(self):
        self.tokens = self.positions = 0

    @property
    def gflop(self) -> float:
        return (2 * self.decoder_params * self.tokens + self.head_flops_per_position * self.positions) / 1e9


def model_gflop(scorer: SentenceScorer, kind: str, groups, n_params: int) -> float:
    """The workload's model FLOPs, the same for every scorer: 2 P per real token of every scored sequence."""
    if kind == "sentences":
        tokens = sum(1 + len(scorer.encode(text)) for group in groups for text in group)
    else:
        tokens = sum(
            len(options) * (1 + len(scorer.encode(context)))
            + sum(len(scorer.encode(" " + option.strip())) for option in options)
            for context, options in groups
        )
    return 2 * n_params * tokens / 1e9


def workloads(n: int) -> dict:
    stereo = load_stereoset("offline")
    intra = [ex for ex in stereo if ex.kind == "intrasentence"][:n]
    inter = [ex for ex in stereo if ex.kind == "intersentence"][:n]
    bbq = load_bbq("offline")[: max(n // 3, 1)]
    return {
        f"StereoSet intra (N={len(intra)})": ("sentences", [[getattr(ex, o) for o in OPTIONS] for ex in intra]),
        f"StereoSet inter (N={len(inter)})": (
            "continuations",
            [(ex.context, [getattr(ex, o) for o in OPTIONS]) for ex in inter],
        ),
        f"BBQ (N={len(bbq)})": ("continuations", [(bbq_prompt(it), list(it.options)) for it in bbq]),
    }


def run(scorer: SentenceScorer, counter: FlopCounter, kind: str, groups) -> tuple[list, float, float]:
    counter.reset()
    start = time.perf_counter()
    scores = getattr(scorer, kind)(groups)
    # compared as the benchmarks use them: mean token log-probability
    return [s.value("mean") for g in scores for s in g], time.perf_counter() - start, counter.gflop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="examples per workload")
    parser.add_argument("--model-dir", default=None, help="a local model directory (default: the offline model)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="the weights' dtype")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model, tokenizer = bench_model(args.model_dir, dtype)
    counter = FlopCounter(model)
    peaks = cpu_peaks()
    peak = max(peaks.values())
    scorers = {
        "reference (batch 1, whole sequences)": SentenceScorer(
            model, tokenizer, 1, share_prefix=False, pack_rows=False
        ),
        f"previous: padded (batch {args.batch_size}, length-sorted)": SentenceScorer(
            model, tokenizer, args.batch_size, share_prefix=False, pack_rows=False
        ),
        f"packed (batch {args.batch_size}, length-sorted)": SentenceScorer(
            model, tokenizer, args.batch_size, share_prefix=False
        ),
        f"shared prefixes (batch {args.batch_size})": SentenceScorer(
            model, tokenizer, args.batch_size, share_prefix=True
        ),
        f"ours: auto (batch {args.batch_size})": SentenceScorer(model, tokenizer, args.batch_size, share_prefix="auto"),
    }
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {type(model).__name__}, {n_params / 1e6:.1f}M parameters; "
        f"weights {args.precision}; threads: {torch.get_num_threads()}; matmul peaks measured now: fp32 "
        f"{peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s (% of peak is of the best)"
    )
    header = [
        "workload",
        "scorer",
        "sequences",
        "seconds",
        "seq/s",
        "executed GFLOP/s",
        "model GFLOP/s",
        "% of peak (model)",
        "speed-up",
        "max |diff|",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, (kind, groups) in workloads(args.n).items():
        reference, ref_time = None, None
        for label, scorer in scorers.items():
            run(scorer, counter, kind, groups[:16])  # warm-up: a run scores dev many times; report the steady state
            scores, seconds, gflop = run(scorer, counter, kind, groups)
            useful = model_gflop(scorer, kind, groups, n_params)
            if reference is None:
                reference, ref_time = scores, seconds
            diff = max(abs(a - b) for a, b in zip(scores, reference))
            # batching must not move a score in fp32; in bf16 each batch layout rounds its sums differently, by as
            # much as 0.11 in a sentence's mean token log-prob (offline model, 2026-12-06): the column reports it
            assert dtype != torch.float32 or diff < 1e-4, f"{label} disagrees with the reference by {diff}"
            print(
                f"| {name} | {label} | {len(scores)} | {seconds:.1f} | {len(scores) / seconds:.1f} | "
                f"{gflop / seconds:.1f} | {useful / seconds:.1f} | {100 * useful / seconds / peak:.0f}% | "
                f"{ref_time / seconds:.2f}x | "
                f"{diff:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
