"""What every entry point shares: the config checked before Hydra runs (``preflight``), and known failures ending
with one clear line and an exit status instead of a traceback (``run_cli``)."""

from __future__ import annotations

import difflib
import itertools
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from bias_unlearn.config.errors import USER_ERRORS, ConfigError, TrainingDiverged
from bias_unlearn.io import write_text
from bias_unlearn.reports.runs import ERROR_FILE

log = logging.getLogger("bias_unlearn")
MAX_PREFLIGHT = 256  # sweep combinations composed and checked before a multirun starts


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_cli(job, cfg):
    """Run ``job(cfg)``; a known failure ends with one line and its exit status: 2 bad input, 3 a diverged run,
    143 SIGTERM. Inside a multirun a failed job (bad input, divergence) leaves its reason in ``error.txt`` and
    the sweep goes on to the next job; the sweep report lists it as failed."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        return job(cfg)
    except SIGTERMException:  # a scheduler's stop: like Ctrl-C, the last checkpoint stays (the log says how to resume)
        print("error: stopped by SIGTERM; the run directory keeps its last checkpoint", file=sys.stderr)
        sys.exit(143)
    except (*USER_ERRORS, TrainingDiverged) as err:  # a diverged run has written its report; it still failed
        log.debug("traceback", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        run_dir = OmegaConf.select(cfg, "paths.output_dir")
        if in_multirun() and run_dir:
            log.error("this job failed (%s); the sweep goes on", err)
            write_text(Path(run_dir) / ERROR_FILE, f"{err}\n")
            return None
        sys.exit(3 if isinstance(err, TrainingDiverged) else 2)


def training_job(cfg):
    """The job ``train.py`` runs for a config: a decoding-time method scores under the method
    (jobs/decode.py), BiasEdit meta-trains its editor (jobs/edit.py), every other method trains a LoRA adapter."""
    if cfg.method.get("decoding") is not None:
        from bias_unlearn.jobs.decode import run_decoding

        return run_decoding
    if cfg.method.get("editing") is not None:
        from bias_unlearn.jobs.edit import run_editing

        return run_editing
    from bias_unlearn.jobs.train import run_training

    return run_training


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_config_choices(argv: list[str], conf_dir: str | Path) -> None:
    """Refuse a ``group=choice`` override that names no file in ``conf/<group>/`` (Hydra prints its own error but
    exits 1, like a crash), and ``loss=`` beside ``method=`` (one is an alias of the other)."""
    given = set()
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        given.add(key)
        group = Path(conf_dir) / key
        if "." in key or "(" in value or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):
            if choice not in options and choice != "null":
                refuse(f"{key}={choice}: no such config in conf/{key}/; choose from {', '.join(options)}")
    if {"loss", "method"} <= given:
        refuse(
            "loss= and method= together: loss=full|no_kl|no_retain|no_adv is an alias of method=bias_unlearn|no_kl|"
            "no_retain|no_adv; give one of them"
        )


def _known_keys(node, prefix: str = "") -> list[str]:
    if not OmegaConf.is_dict(node):
        return []
    keys = []
    for key in node.keys():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        keys += _known_keys(node._get_node(key), f"{dotted}.") if OmegaConf.is_dict(node._get_node(key)) else []
    return keys


def explain(err: Exception, schema) -> str:
    """One line for a composition error: the key at fault and what is wrong with it."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

    cause = err
    while cause.__cause__ is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    if not isinstance(cause, OmegaConfBaseException):
        return str(err).splitlines()[0]
    key = getattr(cause, "full_key", None) or "?"
    message = str(cause).splitlines()[0]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        wanted = str(err).split("'")[1] if str(err).count("'") >= 2 else key
        hint = ""
        if wanted.startswith("loss."):
            hint = f"; the objective's knobs are method.loss.* (e.g. method.{wanted})"
        else:
            close = difflib.get_close_matches(wanted, _known_keys(OmegaConf.structured(schema)), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
        return f"{wanted}: no such setting{hint}"
    if isinstance(cause, MissingMandatoryValue):
        return f"{key}: must be given (it has no default)"
    return f"{key}: {message}"


def sweep_combinations(overrides: list[str]) -> list[list[str]]:
    """The command line's sweep expanded (``a=1,2 b=x`` -> two override lists), as Hydra's basic sweeper would."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in parsed
    ]
    return [list(combo) for combo in itertools.islice(itertools.product(*choices), MAX_PREFLIGHT)]


def preflight(config_name: str, argv: list[str], conf_dir: str | Path, check=None) -> None:
    """Compose the config as Hydra will (every combination of a multirun's sweep, the command line's and an
    experiment's) and ``check`` each, before Hydra starts: a wrong choice, key, type or value ends with one line
    naming the key and exit status 2, with nothing written and no model loaded."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from bias_unlearn.config import schema

    check_config_choices(argv, conf_dir)
    overrides = [a for a in argv if not a.startswith("-")]
    root = {
        "train": schema.TrainJob,
        "evaluate": schema.EvaluateJob,
        "report": schema.ReportJob,
        "export": schema.ExportJob,
    }[config_name]
    try:
        combos = sweep_combinations(overrides)
    except Exception as err:  # noqa: BLE001 - Hydra's grammar errors: the command line is at fault
        refuse(f"cannot read the overrides: {str(err).splitlines()[0]}")
    with initialize_config_dir(str(Path(conf_dir).resolve()), version_base="1.3"):
        for combo in combos:
            try:
                cfg = compose(config_name, overrides=combo, return_hydra_config=True)
                with open_dict(cfg):  # ${hydra:runtime.output_dir} resolves as in a job (nothing is written there)
                    cfg.hydra.runtime.output_dir = "<the run directory>"
                HydraConfig.instance().set_config(cfg)
                grid = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
                inner = (
                    sweep_combinations([f"{k}={v}" for k, v in grid.items()])
                    if "-m" in argv or ("--multirun" in argv)
                    else [[]]
                )
                for extra in inner[:MAX_PREFLIGHT]:
                    job_cfg = compose(config_name, overrides=[*combo, *extra]) if extra else cfg
                    if check is not None:
                        check(job_cfg)
            except ConfigError as err:
                refuse(f"{err}")
            except Exception as err:  # noqa: BLE001 - Hydra / OmegaConf composition errors: the settings are at fault
                if type(err).__module__.startswith(("hydra", "omegaconf")):
                    refuse(explain(err, root))
                raise
