"""Every bad input a user can hand the entry points is refused at once: exit status 2, one line that names the file,
row and field or the config key, and nothing written. Each case runs through ``run_cli`` (what train.py,
evaluate.py and report.py call) in-process; composing an unknown config choice runs train.py itself."""

from __future__ import annotations

import json
import re

import pytest

from bias_unlearn.jobs.cli import preflight, run_cli
from bias_unlearn.jobs.evaluate import run_evaluation
from bias_unlearn.jobs.train import run_training
from tests.helpers import FIXTURES, ROOT, compose_config, make_stereoset_rows, run_entry_point, tiny_run_overrides

ROWS = make_stereoset_rows()


def jsonl(rows) -> str:
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def stereoset_file(tmp, name: str, text: str | bytes) -> list[str]:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return [f"data.stereoset.path={path}"]


def crows_file(tmp, text: str) -> list[str]:
    path = tmp / "crows.csv"
    path.write_text(text)
    return ["eval.crows_pairs=true", "data.crows_pairs.source=local", f"data.crows_pairs.path={path}"]


def adapter_dir(tmp, tiny_model_dir, change) -> list[str]:
    """A real adapter of the tiny model (trained 2 steps), then damaged by ``change``."""
    out = tmp / "trained"
    run_training(
        compose_config(
            "train",
            *tiny_run_overrides(out, tiny_model_dir, FIXTURES / "none"),
            f"data.stereoset.path={tmp / 'ok.jsonl'}",
            "trainer.max_steps=2",
            "eval.after=false",
            "eval.generation.prompts=[]",
        )
    )
    adapter = out / "adapter"
    change(adapter)
    return [f"adapter={adapter}"]


def blank_line_crows(tmp):
    lines = (FIXTURES / "crows_pairs_anonymized.csv").read_text().splitlines()
    cells = lines[4].split(",")
    lines[4] = ",".join(cells[:2] + [""] + cells[3:])  # the 5th line of the file loses its sent_less
    return crows_file(tmp, "\n".join(lines[:2] + [""] + lines[2:]) + "\n")  # a blank line before it: now line 6


CASES = {  # id: (entry point, overrides(tmp, tiny_model_dir), what the one line must say)
    "malformed jsonl": (
        "train",
        lambda t, m: stereoset_file(t, "s.jsonl", jsonl(ROWS[:3]) + "{not json\n" + jsonl(ROWS[3:])),
        r"s\.jsonl, row 4: not valid JSON",
    ),
    "malformed json": (
        "train",
        lambda t, m: stereoset_file(t, "s.json", '{"version": "1.0", "data": {'),
        r"s\.json.*not valid JSON",
    ),
    "non-UTF-8 file": (
        "train",
        lambda t, m: stereoset_file(t, "s.jsonl", jsonl(ROWS).encode() + b"\xff\xfe\n"),
        r"s\.jsonl, row \d+: not UTF-8 text",
    ),
    "directory as data path": (
        "train",
        lambda t, m: [f"data.stereoset.path={t}"],
        r"on\d+: is a directory, not a data file",
    ),
    "missing field": (
        "train",
        lambda t, m: stereoset_file(
            t, "s.jsonl", jsonl([{k: v for k, v in ROWS[0].items() if k != "stereotype"}] + ROWS[1:])
        ),
        r"s\.jsonl, row 1, field 'stereotype': missing",
    ),
    "unknown bias type": (
        "train",
        lambda t, m: stereoset_file(t, "s.jsonl", jsonl([{**ROWS[0], "bias_type": "height"}] + ROWS[1:])),
        r"s\.jsonl, row 1, field 'bias_type': unknown bias type 'height'",
    ),
    "a bias type with no train targets": (
        "train",
        lambda t, m: stereoset_file(
            t,
            "s.jsonl",
            jsonl([r for r in ROWS if not (r["bias_type"] == "religion" and r["type"] == "intrasentence")]),
        ),
        r"religion",
    ),
    "empty data file": ("train", lambda t, m: stereoset_file(t, "s.jsonl", ""), r"s\.jsonl: no StereoSet examples"),
    "malformed CSV": (
        "train",
        lambda t, m: crows_file(t, 'sent_more,sent_less\n"unclosed,x\n'),
        r"crows\.csv, row 1: unrecognised header",
    ),
    "blank CSV line keeps row numbers": (
        "train",
        lambda t, m: blank_line_crows(t),
        r"crows\.csv, row 6, field 'sent_less'",
    ),
    "hub name while offline": (
        "train",
        lambda t, m: ["model=gpt2", "model.name_or_path=gpt2"],
        r"'gpt2': the Hugging Face hub is unreachable.*model=local",
    ),
    "empty model directory": (
        "train",
        lambda t, m: (t / "empty").mkdir() or ["model=local", f"model.name_or_path={t / 'empty'}"],
        r"empty' has no config\.json",
    ),
    "negative loss weight": ("train", lambda t, m: ["method.loss.retain_weight=-1"], r"loss\.retain_weight"),
    "all-zero loss weights": (
        "train",
        lambda t, m: ["method.loss.forget_weight=0", "method.loss.retain_weight=0", "method.loss.kl_weight=0"],
        r"loss weights",
    ),
    "tiny NPO beta": ("train", lambda t, m: ["method.loss.beta=1e-12"], r"loss\.beta"),
    "retain batch not larger": ("train", lambda t, m: ["train.retain_batch=1"], r"train\.retain_batch"),
    "threshold outside (0, 50)": (
        "train",
        lambda t, m: ["callbacks.early_stopping.threshold=50"],
        r"callbacks\.early_stopping\.threshold",
    ),
    "unknown delivery balance measure": (
        "train",
        lambda t, m: ["callbacks.adapter_checkpoint.balance=max"],
        r"callbacks\.adapter_checkpoint\.balance",
    ),
    "unknown scoring option": ("train", lambda t, m: ["+scoring.share_prefixes=true"], r"scoring\.share_prefixes"),
    "NPO beta not a number": ("train", lambda t, m: ["method.loss.beta=abc"], r"method\.loss\.beta: Value 'abc'"),
    "LoRA rank 0": ("train", lambda t, m: ["model.lora.r=0"], r"model\.lora\.r must be >= 1"),
    "dev evaluation every 0 steps": (
        "train",
        lambda t, m: ["trainer.val_check_interval=0"],
        r"trainer\.val_check_interval must be a number of steps",
    ),
    "misspelt trainer key": (
        "train",
        lambda t, m: ["trainer.max_stpes=10"],
        r"trainer\.max_stpes: no such setting; did you mean trainer\.max_steps\?",
    ),
    "an objective knob by its old key": (
        "train",
        lambda t, m: ["loss.beta=0.2"],
        r"loss\.beta: no such setting; the "
        r"objective's knobs are method\.loss\.\* \(e\.g\. method\.loss\.beta\)",
    ),
    "loss alias beside a method": ("train", lambda t, m: ["method=cda", "loss=no_kl"], r"loss= and method= together"),
    "a wrong type for a lightning knob": (
        "train",
        lambda t, m: ["trainer.accumulate_grad_batches=two"],
        r"trainer\.accumulate_grad_batches",
    ),
    "LoRA dropout 1": ("train", lambda t, m: ["model.lora.dropout=1.0"], r"model\.lora\.dropout"),
    "type weights misspelt": ("train", lambda t, m: ["train.type_weights=sized"], r"train\.type_weights"),
    "evaluate split misspelt": ("evaluate", lambda t, m: ["split=validation"], r"split must be one of"),
    "unknown eval.adapter": ("train", lambda t, m: ["eval.adapter=first"], r"eval\.adapter"),
    "misspelt eval kind": ("train", lambda t, m: ["eval.kinds=[intrasentance]"], r"eval\.kinds.*intrasentance"),
    "seed not a number": (
        "train",
        lambda t, m: ["seed=abc"],
        r"seed: Value 'abc' of type 'str' could not be converted",
    ),
    "resume of a non-run": ("train", lambda t, m: [f"resume={t}"], r"not a run directory"),
    "adapter that does not fit": (
        "evaluate",
        lambda t, m: adapter_dir(t, m, lambda a: _json_edit(a / "adapter_config.json", r=4)),
        r"weights have rank \[8\] but its adapter_config\.json says r=4",
    ),
    "not a PEFT adapter": ("evaluate", lambda t, m: [f"adapter={t}"], r"no adapter_config\.json"),
    "malformed adapter_config.json": (
        "evaluate",
        lambda t, m: adapter_dir(t, m, lambda a: (a / "adapter_config.json").write_text("{r: 8")),
        r"malformed adapter_config\.json",
    ),
    "adapter without weights": (
        "evaluate",
        lambda t, m: adapter_dir(t, m, lambda a: (a / "adapter_model.safetensors").unlink()),
        r"no adapter weights",
    ),
    "report without sweep_dir": ("report", lambda t, m: [], r"sweep_dir is required"),
    "report of a missing sweep": ("report", lambda t, m: [f"sweep_dir={t / 'nothing'}"], r"does not exist"),
}


def _json_edit(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, tiny_model_dir, capsys, monkeypatch):
    """As the entry point runs it: the preflight (compose and check every setting), then the job."""
    from huggingface_hub import constants

    from bias_unlearn.config.schema import evaluate_settings, train_settings
    from bias_unlearn.jobs.report import make_report

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as on a machine without the hub (this one has none)
    (tmp_path / "ok.jsonl").write_text(jsonl(ROWS))
    entry, overrides, message = CASES[case]
    extra = overrides(tmp_path, tiny_model_dir)
    capsys.readouterr()
    out = tmp_path / "out"
    base = {
        "train": [*tiny_run_overrides(out, tiny_model_dir, tmp_path / "ok.jsonl"), "eval.before=true"],
        "evaluate": [
            f"paths.output_dir={out}",
            "model=local",
            f"model.name_or_path={tiny_model_dir}",
            "data.stereoset.source=local",
            f"data.stereoset.path={tmp_path / 'ok.jsonl'}",
            "benchmarks=[stereoset]",
        ],
        "report": [f"out_dir={out}"],
    }[entry]
    job = {"train": run_training, "evaluate": run_evaluation, "report": make_report}[entry]
    check = {"train": train_settings, "evaluate": evaluate_settings}.get(entry)
    with pytest.raises(SystemExit) as exited:
        preflight(entry, [*base, *extra], ROOT / "conf", check=check)
        run_cli(job, compose_config(entry, *base, *extra))
    lines = capsys.readouterr().err.strip().splitlines()  # a model's loading bar may come first
    assert exited.value.code == 2, lines[-5:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-5:]
    assert re.search(message, errors[0]), errors[0]
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("args", [["model=gpt5"], ["-m", "loss=full,nope"], ["strategy=fdsp"]])
def test_unknown_config_choice_exits_2_naming_it(args):
    proc = run_entry_point("train.py", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-1500:]
    bad = args[-1].split("=")
    assert f"{bad[0]}={bad[1].split(',')[-1]}" in proc.stderr and "choose from" in proc.stderr
