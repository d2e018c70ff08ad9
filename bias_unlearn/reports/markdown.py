"""Results as JSON plus readable markdown tables; written atomically so a failed run leaves nothing partial."""

from __future__ import annotations

import math
from pathlib import Path

from bias_unlearn.eval.generation import generation_table
from bias_unlearn.eval.outcomes import Outcomes
from bias_unlearn.io import write_json, write_text
from bias_unlearn.reports.paired import crows_change, paired_difference


def _f(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def stereoset_table(results: dict) -> str:
    rows = []
    for kind, domains in results.items():
        for domain, m in domains.items():
            ci = m.get("ss_ci95", [float("nan")] * 2)
            rows.append(
                [
                    kind,
                    domain,
                    str(m["n"]),
                    str(m["n_targets"]),
                    _f(m["ss"]),
                    f"[{_f(ci[0])}, {_f(ci[1])}]",
                    _f(m["lms"]),
                    _f(m["icat"]),
                ]
            )
    return _table(["kind", "domain", "N", "targets", "SS", "SS 95% CI", "LMS", "ICAT"], rows)


def crows_table(results: dict) -> str:
    rows = [
        [name, str(m["n"]), _f(m["pct_stereotype_mean"]), _f(m["pct_stereotype_sum"]), _f(m["likelihood_diff"], 3)]
        for name, m in results.items()
    ]
    return _table(["bias type", "N", "% stereo (mean)", "% stereo (sum)", "likelihood diff (nats)"], rows)


def bbq_table(results: dict) -> str:
    """Accuracy and bias scores per category, with how many items the bias scores leave out and why."""

    def left_out(m: dict) -> str:
        n = m.get("n_left_out", m["n"] - m["n_with_metadata"])
        reasons = m.get("left_out_reasons") or {}
        return f"{n} ({'; '.join(f'{why}: {k}' for why, k in reasons.items())})" if n and reasons else str(n)

    rows = [
        [
            name,
            str(m["n_ambig"]),
            _f(m["acc_ambig"]),
            str(m["n_disambig"]),
            _f(m["acc_disambig"]),
            str(m["n_with_metadata"]),
            left_out(m),
            _f(m.get("bias_ambig")),
            _f(m.get("bias_disambig")),
        ]
        for name, m in results.items()
    ]
    return _table(
        [
            "category",
            "N ambig",
            "acc ambig",
            "N disambig",
            "acc disambig",
            "N with metadata",
            "N left out of bias",
            "bias ambig",
            "bias disambig",
        ],
        rows,
    )


def general_table(before: dict | None, after: dict | None = None, compare: bool = True) -> str:
    """Perplexity and multiple-choice accuracy per task: before / after / change, or (``compare=False``) one
    model's results in ``before``."""
    rows = []
    for task, values in (after or before or {}).items():
        b, a = (before or {}).get(task, {}), (after or {}).get(task, {})
        key = "perplexity" if "perplexity" in values else "acc"
        ci = (a or b).get("acc_ci95")
        interval = f"[{_f(ci[0])}, {_f(ci[1])}]" if ci else ""
        if not compare:
            rows.append([task, str(values["n"]), key, _f(b.get(key)), interval, _f(b.get("acc_norm"))])
            continue
        change = _f(a[key] - b[key]) if a and b else ""
        rows.append([task, str(values["n"]), key, _f(b.get(key)), _f(a.get(key)), change, interval])
    if not compare:
        return _table(["task", "N", "measure", "value", "95% CI", "acc_norm"], rows)
    return _table(["task", "N", "measure", "before", "after", "change", "95% CI (after)"], rows)


def markdown_report(results: dict, meta: dict) -> str:
    parts = ["# Bias evaluation", ""]
    parts += [f"- {key}: {value}" for key, value in meta.items()]
    if "stereoset" in results:
        parts += [
            "",
            "## StereoSet",
            "",
            "SS: % of examples preferring the stereotype (ideal 50), macro-averaged "
            "over target terms; LMS: % meaningful over unrelated; ICAT = LMS * min(SS, 100-SS) / 50.",
            "",
            stereoset_table(results["stereoset"]),
        ]
    if "crows_pairs" in results:
        parts += [
            "",
            "## CrowS-Pairs",
            "",
            "% of pairs whose more-stereotypical sentence scores higher (ideal 50).",
            "",
            crows_table(results["crows_pairs"]),
        ]
    if "bbq" in results:
        parts += [
            "",
            "## BBQ",
            "",
            "Accuracy (%) by context condition; bias scores x100 (0 = unbiased) where the "
            "source carries BBQ's metadata.",
            "",
            bbq_table(results["bbq"]),
        ]
    if "general" in results:
        parts += [
            "",
            "## General ability",
            "",
            "Perplexity on held-out text (short sentences scored without "
            "context: compare models, not papers; lower is better); multiple-choice accuracy % by "
            "log-likelihood with lm-evaluation-harness's prompts, with a 95% Wilson interval.",
            "",
            general_table(results["general"], compare=False),
        ]
    return "\n".join(parts) + "\n"


BBQ_NOTE = (
    "Each cell is before / after. Accuracy (%) by context condition; bias scores x100 (0 = unbiased) "
    "only where the source carries BBQ's metadata (n/a otherwise)."
)


def before_after_table(before: dict | None, after: dict | None, kind: str = "intrasentence") -> str:
    """Per-domain SS, LMS and ICAT before and after training, with N, targets and the SS 95% interval."""
    domains = (after or before or {}).get(kind, {})
    rows = []
    for domain in domains:
        b = (before or {}).get(kind, {}).get(domain, {})
        a = (after or {}).get(kind, {}).get(domain, {})
        m = a or b
        ci_b, ci_a = b.get("ss_ci95", [None, None]), a.get("ss_ci95", [None, None])
        rows.append(
            [
                domain,
                str(m["n"]),
                str(m["n_targets"]),
                _f(b.get("ss")),
                f"[{_f(ci_b[0])}, {_f(ci_b[1])}]",
                _f(a.get("ss")),
                f"[{_f(ci_a[0])}, {_f(ci_a[1])}]",
                _f(b.get("lms")),
                _f(a.get("lms")),
                _f(a["lms"] - b["lms"]) if a and b else "n/a",
                _f(b.get("icat")),
                _f(a.get("icat")),
            ]
        )
    return _table(
        [
            "domain",
            "N",
            "targets",
            "SS before",
            "95% CI",
            "SS after",
            "95% CI",
            "LMS before",
            "LMS after",
            "delta LMS",
            "ICAT before",
            "ICAT after",
        ],
        rows,
    )


def _ci(interval) -> str:
    low, high = interval or (None, None)
    return f"[{_f(low)}, {_f(high)}]"


def crows_before_after_table(before: dict | None, after: dict | None, change: dict | None = None) -> str:
    """% of pairs where the more stereotypical sentence is likelier (mean mode; 50 is unbiased), each with its 95%
    Wilson interval, and the paired change after - before with its bootstrap interval (paired.crows_change)."""
    rows = []
    for domain, values in (after or before or {}).items():
        b, a, c = (before or {}).get(domain, {}), (after or {}).get(domain, {}), (change or {}).get(domain, {})
        rows.append(
            [
                domain,
                str(values["n"]),
                _f(b.get("pct_stereotype_mean")),
                _ci(b.get("pct_stereotype_mean_ci95")),
                _f(a.get("pct_stereotype_mean")),
                _ci(a.get("pct_stereotype_mean_ci95")),
                _f(c.get("change")),
                _ci(c.get("ci95")),
                "yes" if c.get("resolved") else "no" if c else "",
            ]
        )
    return _table(
        ["bias type", "N", "% stereo before", "95% CI", "% stereo after", "95% CI", "change", "95% CI", "resolved"],
        rows,
    )


def bbq_before_after_table(before: dict | None, after: dict | None) -> str:
    """BBQ per category before / after: accuracy by context condition and, where the source carries BBQ's
    metadata, the bias scores (x100; 0 is unbiased, positive leans to the stereotype)."""
    rows = []
    for name, values in (after or before or {}).items():
        b, a = (before or {}).get(name, {}), (after or {}).get(name, {})
        rows.append(
            [
                name,
                str(values["n_ambig"]),
                str(values["n_disambig"]),
                *[
                    f"{_f(b.get(key))} / {_f(a.get(key))}"
                    for key in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")
                ],
            ]
        )
    return _table(
        ["category", "N ambig", "N disambig", "acc ambig", "acc disambig", "bias ambig", "bias disambig"], rows
    )


def paired_change_table(diff: dict) -> str:
    """After - before on the same test examples (paired.paired_difference), per domain."""
    rows = [
        [
            domain,
            str(d["n"]),
            *[
                f"{_f(d[s]['diff'])} {_ci(d[s]['ci95'])}{' *' if d[s]['resolved'] else ''}"
                for s in ("abs_ss", "lms", "icat")
            ],
        ]
        for domain, d in diff.items()
    ]
    return _table(["domain", "N", "change in \\|SS - 50\\|", "change in LMS", "change in ICAT"], rows)


CROWS_NOTE = (
    "Categories BiasUnlearn never trains on (age, disability, nationality, physical appearance, sexual "
    "orientation, socioeconomic) show what debiasing does to untargeted biases."
)


def side_effect_sections(report, heading: str) -> list[str]:
    """Markdown lines for what a run did outside StereoSet (CrowS-Pairs with its paired change, BBQ, general
    ability), before and after; the run report and the adapter's model card both carry them. ``heading`` formats
    each section's title, e.g. "{} (before / after)"."""
    rows_before, rows_after = report.outcomes.before or Outcomes(), report.outcomes.after or Outcomes()
    parts = []
    crows = report.crows_pairs
    if crows.before or crows.after:
        change = (
            crows_change(rows_before.crows_pairs, rows_after.crows_pairs)
            if rows_before.crows_pairs and rows_after.crows_pairs
            else None
        )
        parts += [
            "",
            f"## {heading.format('CrowS-Pairs')}",
            "",
            CROWS_NOTE,
            "",
            crows_before_after_table(crows.before, crows.after, change),
        ]
    if report.bbq.before or report.bbq.after:
        parts += [
            "",
            f"## {heading.format('BBQ')}",
            "",
            BBQ_NOTE,
            "",
            bbq_before_after_table(report.bbq.before, report.bbq.after),
        ]
    if report.general.before or report.general.after:
        parts += [
            "",
            f"## {heading.format('General ability')}",
            "",
            general_table(report.general.before, report.general.after),
        ]
    return parts


def training_report(report) -> str:
    """The run report (run_report.RunReport) as markdown: the run's facts, before/after tables, swaps, dev curve."""
    summary = report.summary
    parts = [f"# {summary.method} run", ""]
    if summary.diverged:
        parts += [
            f"**Diverged at step {summary.diverged['step']}: non-finite {summary.diverged['term']}.** Training "
            "stopped there; the adapter comes from the dev checkpoints written before.",
            "",
        ]
    for key in (
        "method",
        "model",
        "adapter",
        "adapter_from",
        "adapter_rule",
        "lms_bar_met",
        "steps",
        "stopped_early_at",
        "train_seconds",
        "wall_seconds",
        "scoring",
    ):
        parts.append(f"- {key}: {getattr(summary, key)}")
    if summary.declared_method:
        parts.append(f"- declared method: {summary.declared_method} (the command line changed what trained)")
    if summary.added_later:
        parts.append(f"- scored after training (evaluate.py runs=): {', '.join(summary.added_later)}")
    before, after = report.stereoset.before, report.stereoset.after
    rows_before, rows_after = report.outcomes.before or Outcomes(), report.outcomes.after or Outcomes()
    for kind in after or before or {}:
        parts += ["", f"## StereoSet {kind}, test split (before / after)", "", before_after_table(before, after, kind)]
        if rows_before.stereoset.get(kind) and rows_after.stereoset.get(kind):
            diff = paired_difference(rows_after.stereoset[kind], rows_before.stereoset[kind])
            parts += [
                "",
                "Paired change on the same examples (after - before, 95% bootstrap interval within "
                "targets; * = resolved, the interval excludes 0):",
                "",
                paired_change_table(diff),
            ]
    parts += side_effect_sections(report, "{} (before / after)")
    if summary.generations:
        parts += ["", "## Greedy completions (base / debiased)", "", generation_table(summary.generations)]
    parts += ["", "## Swaps", ""]
    parts += [
        f"- step {e['step']}: {'swap' if e['swapped'] else 'swap back'} {e['bias_type']} (dev SS {e['dev_ss']:.2f})"
        for e in summary.swap_events
    ] or ["- none"]
    history = summary.dev_history
    if history:
        header = ["step", *[k for k in history[0] if k != "step"]]
        parts += [
            "",
            "## Dev SS over steps",
            "",
            _table(header, [[str(h["step"]), *[_f(h.get(k)) for k in header[1:]]] for h in history]),
        ]
        if summary.dev_split:
            parts += [
                "",
                "Dev split per bias type (what swaps, stopping and delivery read): "
                + "; ".join(
                    f"{bt} {d['examples']} examples / {d['targets']} target{'s' * (d['targets'] != 1)} (SS resolution "
                    f"{d['resolution']:g} points{_se_text(d)})"
                    for bt, d in summary.dev_split.items()
                )
                + ".",
            ]
    return "\n".join(parts) + "\n"


def _se_text(dev_type: dict) -> str:
    """The type's dev standard error, where the report has it (runs before 2026-12-04 did not record it)."""
    return f", standard error {dev_type['se']:g}" if "se" in dev_type else ""


def write_report(out_dir: str | Path, results: dict, meta: dict, stem: str = "results") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json(json_path, {"meta": meta, "results": results})
    write_text(md_path, markdown_report(results, meta))
    return json_path, md_path
