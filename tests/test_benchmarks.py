"""Every benchmark command of the docs runs in fast form: the tiny model, a few examples or chunks."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests.helpers import DOCUMENTS, ROOT

FAST = {
    "bench_train_step.py": ["--chunks", "1", "--forget", "2", "--retain", "3", "--kl", "2"],
    "bench_scoring.py": ["--n", "4"],
    "bench_decoding.py": ["--n", "4"],
    "bench_general.py": ["--max-items", "2", "--batch-sizes", "4,2"],
    "precision_study.py": [],
}


def documented() -> list[list[str]]:
    import re

    found = []
    for document in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", document.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line.split("#")[0])
                if words[:1] == ["python"] and len(words) > 1 and words[1].startswith("benchmarks/"):
                    found.append(words[1:])
    return found


@pytest.mark.slow
@pytest.mark.parametrize("command", documented(), ids=" ".join)
def test_documented_benchmarks_run_fast(command, tiny_model_dir):
    script, args = command[0], command[1:]
    name = script.split("/")[-1]
    fast = [*args, "--model-dir", str(tiny_model_dir), *FAST.get(name, [])]
    if name == "bench_train_step.py" and "--variants" not in args:  # the two ends of the table, both precisions
        fast += ["--variants", "authors", "ours"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *fast], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|" in proc.stdout  # a table


def test_the_docs_show_the_benchmarks():
    assert {c[0] for c in documented()} >= {"benchmarks/bench_train_step.py", "benchmarks/bench_scoring.py"}


def test_the_dev_study_joins_a_variants_runs_from_several_sweeps(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("dev_study", ROOT / "benchmarks" / "dev_study.py")
    dev_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev_study)
    for sweep in ("a", "b"):  # Hydra's sweep directory names hold commas
        (tmp_path / sweep / "0_seed=0,eval.after=False" / "adapter").mkdir(parents=True)
    (tmp_path / "b" / "1_no_adapter").mkdir()
    variants = dev_study.parse_variants([f"preset={tmp_path}/a/*", f"preset={tmp_path}/b/*", f"preset={tmp_path}/a/*"])
    assert [d.parent.name for d in variants["preset"]] == ["a", "b"]
    with pytest.raises(SystemExit, match="no run directory"):
        dev_study.parse_variants([f"other={tmp_path}/none/*"])
    with pytest.raises(SystemExit, match="name=glob"):
        dev_study.parse_variants(["preset"])


def test_the_step_profile_counts_matrix_products_and_casts_apart():
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_train_step", ROOT / "benchmarks" / "bench_train_step.py")
    bench = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports its sibling peak.py
    try:
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    products = bench.operator_shares(lambda: [a @ b for _ in range(20)])
    casts = bench.operator_shares(lambda: [a.to(torch.bfloat16) for _ in range(20)])
    assert products["matmul"] > 0.9 and products["casts"] == 0.0
    assert casts["casts"] > 0.5 and casts["matmul"] == 0.0
    assert all(name not in bench.MATMUL_OPS | bench.CAST_OPS for name, _ in casts["top"])
