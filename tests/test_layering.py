"""The package reads top-down: a module imports only from its own package or from packages below it, and no job
imports another job. The order is the architecture (docs/architecture.md): foundation (io, offline, config) <
models < data < decoding < eval < unlearning, editing < reports < jobs."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

LAYERS = [
    ("io", "offline", "config"),
    ("models",),
    ("data",),
    ("decoding",),
    ("eval",),
    ("unlearning", "editing"),  # the two ways a model is trained: LoRA unlearning, BiasEdit's editor
    ("reports",),
    ("jobs",),
]
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


def package_of(module: str) -> str | None:
    """``bias_unlearn.eval.scorer`` -> ``eval``; None outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "bias_unlearn" and len(parts) > 1 else None


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every bias_unlearn import in ``path``, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "bias_unlearn" else [f"bias_unlearn.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("bias_unlearn")]


def violations() -> list[str]:
    out = []
    for path in sorted((ROOT / "bias_unlearn").rglob("*.py")):
        rel = path.relative_to(ROOT / "bias_unlearn")
        here = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else None
        if here not in RANK:
            continue
        for line, module in imports(path):
            there = package_of(module)
            if there is None or there == here:
                if there == "jobs" and here == "jobs" and rel.name != "cli.py" and module != "bias_unlearn.jobs.cli":
                    out.append(f"{rel}:{line}: a job imports another job ({module})")
                continue
            if there in RANK and RANK[there] > RANK[here]:
                out.append(f"{rel}:{line}: {here} imports upwards from {there} ({module})")
    return out


def test_no_module_imports_a_higher_package_and_no_job_imports_another_job():
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The test above can fail: a data module importing eval is reported."""
    fake = tmp_path / "bias_unlearn" / "data"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from bias_unlearn.eval.scorer import make_scorer\n")
    monkeypatch.setattr("tests.test_layering.ROOT", tmp_path)
    assert violations() == ["data/bad.py:1: data imports upwards from eval (bias_unlearn.eval.scorer)"]


def test_every_package_has_a_place_in_the_order():
    """A package missing from LAYERS would be skipped by the check above."""
    packages = {p.parent.name for p in (ROOT / "bias_unlearn").glob("*/__init__.py")}
    modules = {p.stem for p in (ROOT / "bias_unlearn").glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(RANK), sorted((packages | modules) - set(RANK))
