"""Results as JSON plus readable markdown tables; written atomically so a failed run leaves nothing partial."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


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
            rows.append([kind, domain, str(m["n"]), str(m["n_targets"]), _f(m["ss"]),
                         f"[{_f(ci[0])}, {_f(ci[1])}]", _f(m["lms"]), _f(m["icat"])])
    return _table(["kind", "domain", "N", "targets", "SS", "SS 95% CI", "LMS", "ICAT"], rows)


def crows_table(results: dict) -> str:
    rows = [[name, str(m["n"]), _f(m["pct_stereotype_mean"]), _f(m["pct_stereotype_sum"]),
             _f(m["likelihood_diff"], 3)] for name, m in results.items()]
    return _table(["bias type", "N", "% stereo (mean)", "% stereo (sum)", "likelihood diff (nats)"], rows)


def bbq_table(results: dict) -> str:
    rows = [[name, str(m["n_ambig"]), _f(m["acc_ambig"]), str(m["n_disambig"]), _f(m["acc_disambig"]),
             str(m["n_with_metadata"]), _f(m.get("bias_ambig")), _f(m.get("bias_disambig"))]
            for name, m in results.items()]
    return _table(["category", "N ambig", "acc ambig", "N disambig", "acc disambig", "N with metadata",
                   "bias ambig", "bias disambig"], rows)


def markdown_report(results: dict, meta: dict) -> str:
    parts = ["# Bias evaluation", ""]
    parts += [f"- {key}: {value}" for key, value in meta.items()]
    if "stereoset" in results:
        parts += ["", "## StereoSet", "", "SS: % of examples preferring the stereotype (ideal 50), macro-averaged "
                  "over target terms; LMS: % meaningful over unrelated; ICAT = LMS * min(SS, 100-SS) / 50.", "",
                  stereoset_table(results["stereoset"])]
    if "crows_pairs" in results:
        parts += ["", "## CrowS-Pairs", "", "% of pairs whose more-stereotypical sentence scores higher (ideal 50).",
                  "", crows_table(results["crows_pairs"])]
    if "bbq" in results:
        parts += ["", "## BBQ", "", "Accuracy (%) by context condition; bias scores x100 (0 = unbiased) where the "
                  "source carries BBQ's metadata.", "", bbq_table(results["bbq"])]
    return "\n".join(parts) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out_dir: str | Path, results: dict, meta: dict, stem: str = "results") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    _atomic_write(json_path, json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    _atomic_write(md_path, markdown_report(results, meta))
    return json_path, md_path
