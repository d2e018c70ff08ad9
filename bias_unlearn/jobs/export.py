"""The export job behind ``export.py``: a finished run's debiased model as something to ship.

``merged=true`` (default) writes the base model with the delivered adapter merged into its weights
(``merge_and_unload``): safetensors, tokenizer, generation config, ``split.json`` and a model card carrying the run's
evidence, loadable with ``AutoModelForCausalLM.from_pretrained`` alone. ``merged=false`` writes the adapter (PEFT
format) with the same card. ``push_to_hub=<repo>`` uploads the folder. Every check comes first, and the folder is
filled beside its destination and moved into place: a refused or failed export writes nothing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.io import atomic_dir, write_text
from bias_unlearn.models.loading import hub_reachable
from bias_unlearn.models.policy import load_policy
from bias_unlearn.reports.model_card import model_card
from bias_unlearn.reports.runs import ADAPTER, read_run

log = logging.getLogger(__name__)


def check_export(cfg: DictConfig):
    """The run to export (finished, with a delivered adapter) and the destination (absent or empty); refused with
    one line otherwise."""
    run_dir, out = Path(str(cfg.run)), Path(str(cfg.out))
    if not run_dir.is_dir():
        raise ConfigError(f"run={run_dir}: the directory does not exist")
    run = read_run(run_dir)
    if not run.has_adapter:
        raise ConfigError(
            f"run={run_dir}: no delivered adapter ({run_dir / ADAPTER / 'adapter_config.json'}); export "
            "a finished training run"
        )
    if run.report is None or not run.config:
        raise ConfigError(f"run={run_dir}: {run.status.removeprefix('failed: ')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out={out}: not empty; export into a new or empty folder")
    if cfg.get("push_to_hub") and not hub_reachable():
        raise ConfigError(
            f"push_to_hub={cfg.push_to_hub}: the Hugging Face hub is unreachable from here; export "
            "without push_to_hub and upload the folder where the hub is reachable"
        )
    return run, out


def export(cfg: DictConfig) -> Path:
    run, out = check_export(cfg)
    run_cfg = OmegaConf.create(run.config)
    with atomic_dir(out) as tmp:
        if cfg.merged:
            model, tokenizer = load_policy(run_cfg.model, str(cfg.device), str(run.path / ADAPTER))
            merged = model.merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        else:
            shutil.copytree(run.path / ADAPTER, tmp, dirs_exist_ok=True)
        split = run.path / "split.json"
        if split.is_file():
            shutil.copyfile(split, tmp / "split.json")
        write_text(tmp / "README.md", model_card(run.report, run_cfg, merged=bool(cfg.merged)))
    log.info("%s written to %s", "merged model" if cfg.merged else "adapter", out)
    if cfg.get("push_to_hub"):
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(str(cfg.push_to_hub), private=bool(cfg.private), exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=str(cfg.push_to_hub))
        log.info("uploaded to https://huggingface.co/%s", cfg.push_to_hub)
    print(out)
    return out
