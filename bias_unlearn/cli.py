"""Shared behaviour of the entry points: known input errors end with one clear line, not a traceback."""
from __future__ import annotations

import logging
import sys

from lightning.pytorch.utilities.exceptions import SIGTERMException

from bias_unlearn.data.records import DataError
from bias_unlearn.errors import ConfigError, TrainingDiverged
from bias_unlearn.models.loading import ModelLoadError
from bias_unlearn.offline import OfflineAssetError

log = logging.getLogger("bias_unlearn")
USER_ERRORS = (ConfigError, DataError, ModelLoadError, OfflineAssetError)


def run_cli(job, cfg):
    try:
        return job(cfg)
    except USER_ERRORS as err:
        log.debug("traceback", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:  # a scheduler's stop: like Ctrl-C, the last checkpoint stays (the log says how to resume)
        print("error: stopped by SIGTERM; the run directory keeps its last checkpoint", file=sys.stderr)
        sys.exit(143)
    except TrainingDiverged as err:  # the report is written; the run still failed
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
