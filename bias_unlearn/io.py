"""Every file a run writes goes through here: written beside its destination, then moved into place, so that a
reader (or a run killed mid-write) never sees half a file or half a folder."""
from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` through a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


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
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def copy_dir(source: str | Path, directory: str | Path) -> Path:
    """Copy a folder into place atomically (e.g. the delivered adapter)."""
    with atomic_dir(directory) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return Path(directory)
