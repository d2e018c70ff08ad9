"""Adapters, caches and reports a user hands over are read as safetensors or JSON: nothing in the package unpickles a
file (``torch.load`` only with ``weights_only=True``; no pickle, no ``np.load`` with pickles)."""

import ast

from tests.helpers import ROOT

UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_nothing_in_the_package_unpickles():
    problems = []
    for path in sorted((ROOT / "bias_unlearn").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            problems += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        for call in _calls(tree):
            name = ast.unparse(call.func)
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name == "torch.load" and keywords.get("weights_only") != "True":
                problems.append(f"{path.name}:{call.lineno} torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and keywords.get("allow_pickle") not in (None, "False"):
                problems.append(f"{path.name}:{call.lineno} np.load with pickles")
    assert problems == []
