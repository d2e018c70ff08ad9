"""Resuming a killed run: ``python train.py ... resume=<run dir>`` continues from the run's last checkpoint and ends
exactly as the uninterrupted run would have.

The checkpoint (``checkpoints/resume.ckpt``, written atomically after every dev evaluation by
callbacks/resume_checkpoint.py) is Lightning's: the adapter (not the frozen base), optimizer and scheduler, global
step and loop progress, every callback's state (swap events, stopping, the delivery rule's choice), the
datamodule's swap state, the training stream's position and RNGs (data/unlearning.py), and the module's dev history
and RNG states (below). It is loaded with ``weights_only=True``: tensors and plain values, nothing unpickled.
A resumed run must have the run's configuration in everything that changes results (``config_differences``; a
config saved by an earlier version is read in today's layout, config/upgrade.py), and a checkpoint that is damaged
(unreadable, or not the bytes written: ``resume.ckpt.sha256`` beside it) is refused before any work.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.upgrade import ADDED_KEYS, UNKNOWN, absent_value, flatten, upgrade
from bias_unlearn.io import sha256_of, write_text

CHECKPOINT = Path("checkpoints") / "resume.ckpt"
DIGEST_SUFFIX = ".sha256"  # the checkpoint's sha256, written beside it after every save
# Keys that change where a run writes or how it shows progress, never what it computes.
IGNORED = (
    "resume",
    "paths",
    "threads",
    "logger",
    "callbacks.progress_bar",
    "callbacks.lr_monitor",
    "eval.cache_before",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "callbacks.adapter_checkpoint.dirpath",
    "callbacks.resume_checkpoint.dirpath",
)


# Callbacks added later that act only when a key the run predates selects them (train.type_weights=adaptive, which an
# old run reads as "size"): an old run is read as having today's node, inert there.
ADDED_CALLBACKS = ("callbacks.type_weighting",)


def saved_values(saved: dict, current: dict) -> dict:
    """The saved config's dotted values in today's layout (config/upgrade.py); a key it lacks that today's config
    has reads as the behaviour the run had (absent_value)."""
    old, new = flatten(upgrade(saved)), flatten(current)
    for key in new.keys() - old.keys():
        if any(key.startswith(other + ".") for other in old):  # under a node the saved config set whole (null)
            continue
        if any(key.startswith(node + ".") for node in ADDED_CALLBACKS) and key not in ADDED_KEYS:
            old[key] = new[key]
            continue
        value = absent_value(key, old)
        if value is not UNKNOWN:
            old[key] = value
    return old


def config_differences(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, leaving out the IGNORED ones."""
    old, new = saved_values(saved, current), flatten(current)
    keys = sorted(set(old) | set(new))
    return [
        k
        for k in keys
        if not any(k == i or k.startswith(i + ".") for i in IGNORED)
        and old.get(k, "<absent>") != new.get(k, "<absent>")
    ]


def saved_setting(run_dir, key: str, default):
    """A run directory's saved value of a dotted config key, or ``default`` where it has none or no readable config
    (``resume_checkpoint`` then says why)."""
    try:
        value = OmegaConf.select(OmegaConf.load(Path(str(run_dir)).expanduser() / "config.yaml"), key)
    except Exception:  # noqa: BLE001 - any missing or unreadable config: resume_checkpoint reports it
        return default
    return default if value is None else value


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """For ``resume=<run dir>``: check that it is a run of this configuration and point the job at it (its output
    directory becomes the run's); the checkpoint to continue from, or None (killed before its first dev
    evaluation: the run starts again). Raises ConfigError naming the directory or the differing keys."""
    run = Path(str(cfg.resume)).expanduser()
    saved_config = run / "config.yaml"
    if not run.is_dir() or not saved_config.is_file():
        raise ConfigError(
            f"resume={cfg.resume}: not a run directory (a run directory holds the config.yaml that "
            "train.py writes, and checkpoints/resume.ckpt once a dev evaluation has run)"
        )
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_config), resolve=False)
    except Exception as err:  # noqa: BLE001 - any YAML error: the file is not a run's config
        raise ConfigError(f"resume={cfg.resume}: {saved_config} is not readable as a run config ({err})") from err
    OmegaConf.update(cfg, "paths.output_dir", str(run.resolve()), force_add=True)
    current = OmegaConf.to_container(cfg, resolve=True)
    differing = config_differences(saved, current)
    if differing:
        old, new, written = saved_values(saved, current), flatten(current), flatten(saved)

        def was(key: str) -> str:  # a key the run's config lacks: the behaviour it ran, named as such
            implied = key in ADDED_KEYS and key not in written
            return f"{old.get(key, '<absent>')!r}" + (" (the key did not exist then)" if implied else "")

        shown = ", ".join(f"{k} ({was(k)} -> {new.get(k, '<absent>')!r})" for k in differing[:8])
        raise ConfigError(
            f"resume={cfg.resume}: the run was configured differently in what changes results: "
            f"{shown}{' ...' if len(differing) > 8 else ''}; resume with the run's settings, or start "
            "a new run"
        )
    checkpoint = run / CHECKPOINT
    if not checkpoint.is_file():
        return None
    check_checkpoint(checkpoint)
    return checkpoint


def write_digest(checkpoint: Path) -> None:
    """Record the checkpoint's sha256 beside it (after it is in place; see ``check_checkpoint``)."""
    write_text(checkpoint.with_name(checkpoint.name + DIGEST_SUFFIX), sha256_of(checkpoint) + "\n")


def check_checkpoint(checkpoint: Path) -> None:
    """Refuse a damaged checkpoint with one line, before any work: its bytes must be the ones its digest records,
    or (where the digest is missing, or a kill fell between writing the checkpoint and its digest) it must load."""
    digest = checkpoint.with_name(checkpoint.name + DIGEST_SUFFIX)
    if digest.is_file() and digest.read_text().strip() == sha256_of(checkpoint):
        return
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, not a torch archive, or holding what weights_only refuses
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"{checkpoint}: damaged resume checkpoint ({first[:160]}); it cannot be continued: restore "
            "it, or start the run again without resume="
        ) from None


def rng_state() -> dict:
    """This process's torch RNG states (LoRA dropout draws from them)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
