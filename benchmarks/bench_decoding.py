"""Decoding-time methods at inference: seconds per example under plain scoring, Self-Debias with every prefix run
whole in front of every text (the path before 2026-12-06), Self-Debias continuing each text from its prefix's cached
keys / values, text by text, the same with each group's shared tokens (BBQ's context) run once per pass
(eval/shared_groups.py), and CAFIE, on the same rows through the project's scorer.

    python benchmarks/bench_decoding.py [--n 200] [--model-dir DIR] [--threads 2]

Prints one table: examples, seconds, s per example, the cost against plain scoring, the speed-up of each Self-Debias
path over the whole-prefix one, and the largest difference of a sentence score (mean token log-prob) from the
whole-prefix Self-Debias (neither cache may move a score: below 1e-4 in fp32, checked). Workloads: StereoSet
intrasentence (three sentences an example), CrowS-Pairs (two) and BBQ (a context and three answers; N / 4 items).
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_model import bench_model  # benchmarks/bench_model.py (the script's folder is on sys.path)

from bias_unlearn.data.bbq import load_bbq
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.decoding.cafie import CAFIE
from bias_unlearn.decoding.self_debias import SelfDebias
from bias_unlearn.eval.bbq import bbq_prompt
from bias_unlearn.eval.scorer import SentenceScorer


class SelfDebiasWhole(SelfDebias):
    """The previous path, kept here as the reference: start token, prefix and text run as one sequence per pass."""

    def prefixed_logprobs(self, index, ids, mask):
        prefix = self.prefix_ids[index]
        after_start = bool((ids[:, 0] == self.start_id).all())
        lead = torch.tensor([self.start_id, *prefix], device=ids.device).expand(len(ids), -1)
        body, body_mask = (ids[:, 1:], mask[:, 1:]) if after_start else (ids, mask)
        joined_mask = torch.cat([torch.ones_like(lead), body_mask], dim=1)
        logprobs = self.plain_logprobs(torch.cat([lead, body], dim=1), joined_mask)
        offset = len(prefix) if after_start else len(prefix) + 1
        return logprobs[:, offset : offset + ids.shape[1]]


def workloads(n: int) -> dict:
    intra = [ex for ex in load_stereoset("offline") if ex.kind == "intrasentence"][:n]
    pairs = load_crows_pairs("offline")[:n]
    bbq = load_bbq("offline")[: max(n // 4, 1)]
    return {
        f"StereoSet intra (N={len(intra)})": (
            "sentences",
            [[ex.stereotype, ex.anti_stereotype, ex.unrelated] for ex in intra],
        ),
        f"CrowS-Pairs (N={len(pairs)})": ("sentences", [[p.sent_more, p.sent_less] for p in pairs]),
        f"BBQ (N={len(bbq)})": ("continuations", [(bbq_prompt(it), list(it.options)) for it in bbq]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="examples per workload (BBQ: n / 4 items)")
    parser.add_argument("--model-dir", default=None, help="a local model directory (default: the offline model)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = bench_model(args.model_dir)
    types = ("gender", "profession", "race", "religion")

    def scorer(m, share=False):  # plain: the default auto sharing; a decoding-time model packs no rows (eval/scorer.py)
        decoding = getattr(m, "decoding_time", False)
        return SentenceScorer(
            m, tokenizer, args.batch_size, share_prefix=share if decoding else "auto", pack_rows=not decoding
        )

    whole = "Self-Debias, whole prefix per text (previous)"
    methods = {
        "plain": scorer(model),
        whole: scorer(SelfDebiasWhole(model, tokenizer, types)),
        "Self-Debias, cached prefix, text by text": scorer(SelfDebias(model, tokenizer, types)),
        "Self-Debias, cached prefix + shared context": scorer(SelfDebias(model, tokenizer, types), share=True),
        "CAFIE": scorer(CAFIE(model, tokenizer, types)),
    }
    print(f"model: {type(model).__name__}, fp32; threads: {torch.get_num_threads()}; batch {args.batch_size}")
    header = ["workload", "scoring", "examples", "seconds", "s / example", "x plain", "speed-up", "max |diff|"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, (kind, groups) in workloads(args.n).items():
        seconds, scores = {}, {}
        for label, sc in methods.items():
            getattr(sc, kind)(groups[:4])  # warm-up
            start = time.perf_counter()
            result = getattr(sc, kind)(groups)
            seconds[label] = time.perf_counter() - start
            scores[label] = [s.value("mean") for g in result for s in g]
            reference = scores.get(whole)
            diff = max(abs(a - b) for a, b in zip(scores[label], reference)) if "Self-Debias" in label else None
            assert diff is None or diff < 1e-4, f"{label} disagrees with the whole-prefix path by {diff}"
            speedup = f"{seconds[whole] / seconds[label]:.2f}x" if "cached" in label else ""
            print(
                f"| {name} | {label} | {len(groups)} | {seconds[label]:.1f} | {seconds[label] / len(groups):.3f} | "
                f"{seconds[label] / seconds['plain']:.1f}x | {speedup} | {'' if diff is None else f'{diff:.1e}'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
