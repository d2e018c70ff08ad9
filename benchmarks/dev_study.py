"""The even-debiasing study's judge: every run's delivered adapter scored on its split's whole dev set, the same way
for every candidate, whatever dev signal the candidate itself trained with.

    python benchmarks/dev_study.py --variant preset=/work/runs/study/preset/* --variant dev2=/work/runs/study/dev2/*
        [--variant dev2=ANOTHER_SWEEP/*] [--out study.json] [--threads 2]

Each run directory must hold config.yaml, split.json and adapter/ (a training run; eval.before/after may be off).
Its StereoSet split is rebuilt from its config (the same seed and fractions), and its dev examples, both
intrasentence and intersentence, are scored with the base model (once per split) and with the adapter, each target's
examples pooled as StereoSet's overall score pools them. Per run: per-type SS, overall SS, LMS, the per-type
imbalance (mean over types of |SS - 50|, reports/evenness.py) and dev LMS change; per variant: means over its runs,
and the paired change to the first variant on each seed. Only dev is read: test stays unscored.

The rule the study is read by is in docs/results.md ("Even debiasing: the dev-only study"), written before any
candidate was measured.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bias_unlearn.config.settings import ScoringConfig
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.data.sources import build_stereoset_split
from bias_unlearn.eval.scorer import make_scorer
from bias_unlearn.eval.stereoset import StereoSetMetric, stereoset_sentence_scores
from bias_unlearn.models.lora import load_adapter_weights, wrap_lora
from bias_unlearn.models.policy import load_base
from bias_unlearn.models.reference import reference_mode

DOMAINS = ("overall", *BIAS_TYPES)


def pooled_scores(scorer, examples) -> dict:
    """Per domain SS and LMS over ``examples``, each target's examples pooled across kinds."""
    targets = sorted({(ex.bias_type, ex.target) for ex in examples})
    position = {t: i for i, t in enumerate(targets)}
    metric = StereoSetMetric(targets, n_bootstrap=0, sync_on_compute=False)
    scores = stereoset_sentence_scores(scorer, examples, "mean")
    metric.update([position[(ex.bias_type, ex.target)] for ex in examples], *zip(*scores))
    result = metric.compute()
    return {d: {"ss": result[d]["ss"], "lms": result[d]["lms"]} for d in DOMAINS}


def summary(scores: dict) -> dict:
    types = {bt: scores[bt]["ss"] for bt in BIAS_TYPES}
    return {
        **{d: round(scores[d]["ss"], 2) for d in DOMAINS},
        "lms": round(scores["overall"]["lms"], 2),
        "imbalance": round(sum(abs(ss - 50) for ss in types.values()) / len(types), 2),  # reports/evenness.py
    }


def study(variants: dict[str, list[Path]], out: Path) -> dict:
    done = json.loads(out.read_text()) if out.exists() else {"base": {}, "runs": {}}
    first = next(d for dirs in variants.values() for d in dirs)
    cfg = OmegaConf.load(first / "config.yaml")
    model, tokenizer = load_base(cfg.model, "cpu")
    policy = wrap_lora(model, cfg.model.lora)
    policy.eval()
    scorer = make_scorer(policy, tokenizer, ScoringConfig(n_bootstrap=0))
    for name, dirs in variants.items():
        for run_dir in dirs:
            key = f"{name}:{run_dir}"
            if key in done["runs"]:
                continue
            run_cfg = OmegaConf.load(run_dir / "config.yaml")
            if OmegaConf.to_container(run_cfg.model) != OmegaConf.to_container(cfg.model):
                raise SystemExit(f"{run_dir}: another model than {first}'s; study one model at a time")
            dev = build_stereoset_split(run_cfg.data).dev
            seed = str(run_cfg.data.split.seed)
            if seed not in done["base"]:
                with torch.no_grad(), reference_mode(policy):
                    done["base"][seed] = summary(pooled_scores(scorer, dev))
            load_adapter_weights(policy, run_dir / "adapter")
            with torch.no_grad():
                scored = summary(pooled_scores(scorer, dev))
            report = json.loads((run_dir / "report.json").read_text())["summary"]
            done["runs"][key] = {
                "variant": name,
                "seed": seed,
                "run": str(run_dir),
                "delivered_step": report.get("adapter_from"),
                "steps": report.get("steps"),
                **scored,
                "lms_change": round(scored["lms"] - done["base"][seed]["lms"], 2),
            }
            out.write_text(json.dumps(done, indent=1))  # after every run: a killed study keeps what it scored
            print(name, seed, done["runs"][key], flush=True)
    return done


def table(done: dict, variants: list[str]) -> str:
    rows = [r for r in done["runs"].values() if r["variant"] in variants]
    lines = [
        "| variant | seed | overall | gender | profession | race | religion | imbalance | LMS | dLMS | delivered |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, base in sorted(done["base"].items()):
        cells = [base[d] for d in DOMAINS]
        lines.append(
            f"| base | {seed} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {base['imbalance']:.2f} | "
            f"{base['lms']:.2f} | | |"
        )
    by_variant = {v: [r for r in rows if r["variant"] == v] for v in variants}
    for v, runs in by_variant.items():
        for r in sorted(runs, key=lambda r: r["seed"]):
            cells = " | ".join(f"{r[d]:.2f}" for d in DOMAINS)
            lines.append(
                f"| {v} | {r['seed']} | {cells} | {r['imbalance']:.2f} | {r['lms']:.2f} | "
                f"{r['lms_change']:+.2f} | {r['delivered_step']} |"
            )
    lines += [
        "",
        "| variant | runs | mean imbalance | mean dLMS | mean abs(overall - 50) | imbalance vs first, per seed |",
        "|---|---|---|---|---|---|",
    ]
    reference = {r["seed"]: r for r in by_variant[variants[0]]}
    for v, runs in by_variant.items():
        if not runs:
            continue
        per_seed = [
            f"{r['seed']}: {r['imbalance'] - reference[r['seed']]['imbalance']:+.2f}"
            for r in sorted(runs, key=lambda r: r["seed"])
            if r["seed"] in reference
        ]
        lines.append(
            f"| {v} | {len(runs)} | {statistics.mean(r['imbalance'] for r in runs):.2f} | "
            f"{statistics.mean(r['lms_change'] for r in runs):+.2f} | "
            f"{statistics.mean(abs(r['overall'] - 50) for r in runs):.2f} | {', '.join(per_seed)} |"
        )
    return "\n".join(lines)


def parse_variants(specs: list[str]) -> dict[str, list[Path]]:
    """``name=glob`` specs to run directories; a name given again adds its glob's runs (runs of one variant may
    live in several sweeps, and Hydra's sweep directory names hold commas, so one spec holds one glob)."""
    variants: dict[str, list[Path]] = {}
    for spec in specs:
        name, _, pattern = spec.partition("=")
        if not name or not pattern:
            raise SystemExit(f"--variant {spec!r}: expected name=glob")
        dirs = [Path(d) for d in sorted(glob.glob(pattern)) if (Path(d) / "adapter").is_dir()]
        if not dirs:
            raise SystemExit(f"--variant {spec}: no run directory with an adapter/ matches {pattern!r}")
        variants.setdefault(name, []).extend(d for d in dirs if d not in variants.get(name, []))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variant", action="append", required=True, help="name=glob of run directories; repeat a name to add runs"
    )
    parser.add_argument("--out", type=Path, default=Path("dev_study.json"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = parse_variants(args.variant)
    done = study(variants, args.out)
    print(table(done, list(variants)))


if __name__ == "__main__":
    main()
