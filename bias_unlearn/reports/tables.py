"""Markdown tables of benchmark results: one model's (evaluate.py) and before / after a run (its report, the adapter's
model card), with their intervals and paired changes."""

from __future__ import annotations

import math


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
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
                    fmt(m["ss"]),
                    f"[{fmt(ci[0])}, {fmt(ci[1])}]",
                    fmt(m["lms"]),
                    fmt(m["icat"]),
                ]
            )
    return table(["kind", "domain", "N", "targets", "SS", "SS 95% CI", "LMS", "ICAT"], rows)


def crows_table(results: dict) -> str:
    rows = [
        [name, str(m["n"]), fmt(m["pct_stereotype_mean"]), fmt(m["pct_stereotype_sum"]), fmt(m["likelihood_diff"], 3)]
        for name, m in results.items()
    ]
    return table(["bias type", "N", "% stereo (mean)", "% stereo (sum)", "likelihood diff (nats)"], rows)


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
            fmt(m["acc_ambig"]),
            str(m["n_disambig"]),
            fmt(m["acc_disambig"]),
            str(m["n_with_metadata"]),
            left_out(m),
            fmt(m.get("bias_ambig")),
            fmt(m.get("bias_disambig")),
        ]
        for name, m in results.items()
    ]
    return table(
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


def _measure(values: dict) -> tuple[str, str]:
    """A general-ability task's headline measure and its standard error key (lm-evaluation-harness's)."""
    return ("perplexity", "") if "perplexity" in values else ("acc", "acc_stderr")


def general_table(before: dict | None, after: dict | None = None, compare: bool = True) -> str:
    """lm-evaluation-harness's results per task (word perplexity; accuracy % with its standard error, and the
    length-normalised accuracy): before / after / change, or (``compare=False``) one model's results in ``before``."""
    rows = []
    for task, values in (after or before or {}).items():
        b, a = (before or {}).get(task, {}), (after or {}).get(task, {})
        key, err = _measure(values)
        stderr = f"± {fmt((a or b).get(err))}" if err and (a or b).get(err) is not None else ""
        version = f"v{values.get('version')}" if values.get("version") is not None else ""
        if not compare:
            rows.append([task, version, str(values["n"]), key, fmt(b.get(key)), stderr, fmt(b.get("acc_norm"))])
            continue
        change = fmt(a[key] - b[key]) if a.get(key) is not None and b.get(key) is not None else ""
        rows.append([task, version, str(values["n"]), key, fmt(b.get(key)), fmt(a.get(key)), change, stderr])
    harness = next((v.get("lm_eval") for v in (after or before or {}).values() if v.get("lm_eval")), None)
    note = f"\n\nScored by lm-evaluation-harness {harness} (0-shot)." if harness else ""
    if not compare:
        return table(["task", "task version", "N", "measure", "value", "stderr", "acc_norm"], rows) + note
    return table(["task", "task version", "N", "measure", "before", "after", "change", "stderr (after)"], rows) + note


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
                fmt(b.get("ss")),
                f"[{fmt(ci_b[0])}, {fmt(ci_b[1])}]",
                fmt(a.get("ss")),
                f"[{fmt(ci_a[0])}, {fmt(ci_a[1])}]",
                fmt(b.get("lms")),
                fmt(a.get("lms")),
                fmt(a["lms"] - b["lms"]) if a and b else "n/a",
                fmt(b.get("icat")),
                fmt(a.get("icat")),
            ]
        )
    return table(
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
    return f"[{fmt(low)}, {fmt(high)}]"


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
                fmt(b.get("pct_stereotype_mean")),
                _ci(b.get("pct_stereotype_mean_ci95")),
                fmt(a.get("pct_stereotype_mean")),
                _ci(a.get("pct_stereotype_mean_ci95")),
                fmt(c.get("change")),
                _ci(c.get("ci95")),
                "yes" if c.get("resolved") else "no" if c else "",
            ]
        )
    return table(
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
                    f"{fmt(b.get(key))} / {fmt(a.get(key))}"
                    for key in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")
                ],
            ]
        )
    return table(
        ["category", "N ambig", "N disambig", "acc ambig", "acc disambig", "bias ambig", "bias disambig"], rows
    )


def paired_change_table(diff: dict) -> str:
    """After - before on the same test examples (paired.paired_difference), per domain."""
    rows = [
        [
            domain,
            str(d["n"]),
            *[
                f"{fmt(d[s]['diff'])} {_ci(d[s]['ci95'])}{' *' if d[s]['resolved'] else ''}"
                for s in ("abs_ss", "lms", "icat")
            ],
        ]
        for domain, d in diff.items()
    ]
    return table(["domain", "N", "change in \\|SS - 50\\|", "change in LMS", "change in ICAT"], rows)
