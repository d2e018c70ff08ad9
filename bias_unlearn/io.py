"""Every file a run writes goes through here: written beside its destination under a name no other writer uses,
then moved into place, so that a reader (or a run killed mid-write) never sees half a file or half a folder, and two
processes writing the same file (Lightning's launched processes on a multi-GPU node) never rename each other's
temporary file away."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path in ``path``'s folder (yielded) that is moved over ``path`` when the block ends; on
    error it is removed and ``path`` keeps what it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` through a temporary file in the same folder, then rename it over ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_with(path: str | Path, save: Callable[[Path], None]) -> Path:
    """``save(tmp)`` writes the file (e.g. a figure or a checkpoint); it is then moved over ``path``."""
    with atomic_file(path) as tmp:
        save(tmp)
    return Path(path)


def strict_json(value):
    """NaN and infinities as null: JSON has no NaN, and strict readers (jq, JavaScript, pandas' engine) refuse it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(strict_json(data), indent=2, default=str, allow_nan=False))


@contextmanager
def atomic_dir(directory: str | Path) -> Iterator[Path]:
    """Fill a temporary folder (yielded), then swap it in for ``directory``; on error the old folder stays."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if directory.exists():
        old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
        os.replace(directory, old / directory.name)
    os.replace(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def copy_dir(source: str | Path, directory: str | Path) -> Path:
    """Copy a folder into place atomically (e.g. the delivered adapter)."""
    with atomic_dir(directory) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return Path(directory)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
