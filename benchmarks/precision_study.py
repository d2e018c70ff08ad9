"""Does bf16 change the scores? The same examples scored by the offline model in fp32 and in bf16 weights, paired.

    python benchmarks/precision_study.py [--seed 0] [--threads 2]

Scores split ``--seed``'s StereoSet dev and test intrasentence examples and the 1,018 offline CrowS-Pairs pairs with
the model's weights in fp32 and in bf16 (the scorer's log-softmax stays fp32 either way), and prints, per split and
bias type, SS and LMS in both precisions with the paired difference bf16 - fp32 (95% bootstrap within targets), and
CrowS-Pairs % stereotyped both ways. The rule it is read by, fixed before it was first run (2026-12-05): bf16 may
score (dev evaluations, and with them the run's before and after, which share the weights) only if on both dev and
test |delta SS| <= 0.5 and |delta LMS| <= 0.5 overall, |delta SS| <= 1.0 for every bias type, and CrowS-Pairs
|delta % stereotyped| <= 0.5. bf16 arithmetic does not depend on whether the CPU computes it in hardware or emulates
it (both accumulate in fp32), so the numbers hold for either; only the time does not.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_model import bench_model  # benchmarks/bench_model.py (the script's folder is on sys.path)

from bias_unlearn.config.settings import ScoringConfig
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.eval.crows_pairs import score_crows_pairs
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.stereoset import score_stereoset
from bias_unlearn.reports.paired import paired_difference

DOMAINS = ("overall", "gender", "profession", "race", "religion")


def score(dtype: torch.dtype, splits: dict, pairs: list, model_dir: str | None) -> dict:
    model, tokenizer = bench_model(model_dir, dtype)
    scorer = make_scorer(model, tokenizer, ScoringConfig(n_bootstrap=0))
    out, start = {}, time.perf_counter()
    for name, examples in splits.items():
        results, rows = score_stereoset(scorer, examples, n_bootstrap=0)
        out[name] = (results["intrasentence"], rows["intrasentence"])
    crows, _ = score_crows_pairs(scorer, pairs)
    out["crows"] = crows["overall"]["pct_stereotype_mean"]
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model-dir", default=None, help="a local model directory (default: the offline model)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_by_target(load_stereoset("offline"), seed=args.seed)
    splits = {s: [ex for ex in split[s] if ex.kind == "intrasentence"] for s in ("dev", "test")}
    pairs = load_crows_pairs("offline")
    fp32, bf16 = (score(dtype, splits, pairs, args.model_dir) for dtype in (torch.float32, torch.bfloat16))
    print(f"split seed {args.seed}; scoring took {fp32['seconds']:.0f} s in fp32, {bf16['seconds']:.0f} s in bf16")
    print("| split | domain | N | SS fp32 | SS bf16 | delta SS [95%] | LMS fp32 | LMS bf16 | delta LMS [95%] |")
    print("|---|---|---|---|---|---|---|---|---|")
    verdict = []
    for name in splits:
        diff = paired_difference(bf16[name][1], fp32[name][1], n_bootstrap=1000)
        for domain in DOMAINS:
            a, b, d = fp32[name][0][domain], bf16[name][0][domain], diff[domain]
            ss, lms = b["ss"] - a["ss"], b["lms"] - a["lms"]
            verdict.append(abs(ss) <= (0.5 if domain == "overall" else 1.0))
            if domain == "overall":
                verdict.append(abs(lms) <= 0.5)
            ci = [f"[{d[k]['ci95'][0]:+.2f}, {d[k]['ci95'][1]:+.2f}]" for k in ("abs_ss", "lms")]
            print(
                f"| {name} | {domain} | {a['n']} | {a['ss']:.2f} | {b['ss']:.2f} | {ss:+.2f} (\\|SS-50\\| {ci[0]}) | "
                f"{a['lms']:.2f} | {b['lms']:.2f} | {lms:+.2f} {ci[1]} |"
            )
    crows = bf16["crows"] - fp32["crows"]
    verdict.append(abs(crows) <= 0.5)
    print(
        f"\nCrowS-Pairs ({len(pairs)} pairs): {fp32['crows']:.2f}% fp32, {bf16['crows']:.2f}% bf16, delta {crows:+.2f}"
    )
    print(f"Rule (bf16 may score): {'met' if all(verdict) else 'not met'}")


if __name__ == "__main__":
    main()
