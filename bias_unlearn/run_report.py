"""The training run's report: one typed object, written by the training job as ``report.json`` and read back by
``report.py`` / sweeps, the notebooks and the tests (nobody rebuilds or indexes the JSON by hand)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bias_unlearn.io import write_json

SCHEMA_VERSION = 3  # 3: per-example outcomes; 2 (without them) still reads
READABLE_SCHEMAS = (2, 3)


class ReportError(ValueError):
    """A report.json that cannot be read as a run report (unreadable, or another layout)."""


@dataclass
class Summary:
    method: str  # derived from what trained (methods.py), never from a label
    objective: dict  # the fields that decide the method: weights, forget loss, adversarial share, pairing, swapping
    model: str
    adapter: str  # where the delivered adapter was written
    adapter_from: str  # the checkpoint it came from, or "final weights"
    adapter_rule: str  # which rule chose it (callbacks/adapter_checkpoint.py)
    lms_bar_met: bool | None  # whether its dev LMS stayed within the bar (None: no dev evaluation chose it)
    steps: int
    stopped_early_at: int | None
    swap_events: list = field(default_factory=list)
    dev_history: list = field(default_factory=list)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    scoring: str = ""
    loss: dict = field(default_factory=dict)
    generations: list = field(default_factory=list)
    diverged: dict | None = None  # {"step", "term"}: the run stopped at a NaN/inf (callbacks/non_finite.py)
    # Per bias type, what the dev rules read: {"examples", "targets", "resolution", "se"} (balance.py)
    dev_split: dict = field(default_factory=dict)
    # Side effects scored after training, by ``evaluate.py runs=`` (run_completion.py), e.g. ["bbq", "general"]
    added_later: list = field(default_factory=list)


@dataclass
class RunReport:
    summary: Summary
    before: dict | None = None  # StereoSet test split, base model: {kind: {domain: {ss, lms, icat, n, ...}}}
    after: dict | None = None  # ... with the delivered adapter
    crows_pairs: dict = field(default_factory=lambda: {"before": None, "after": None})
    general: dict = field(default_factory=lambda: {"before": None, "after": None})  # perplexity, MC accuracy
    # Per test example, before and after: {"stereoset": {kind: rows}, "crows_pairs": rows} (paired.py reads them)
    outcomes: dict = field(default_factory=lambda: {"before": None, "after": None})
    bbq: dict = field(default_factory=lambda: {"before": None, "after": None})  # accuracy, bias scores per category
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "report") -> "RunReport":
        if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
            raise ReportError(f"{source}: no summary (not a training run report)")
        if data.get("schema_version") not in READABLE_SCHEMAS:
            raise ReportError(f"{source}: report schema {data.get('schema_version')!r}, expected one of "
                              f"{READABLE_SCHEMAS} (written by another version of bias_unlearn)")
        known = {f.name for f in fields(Summary)}
        summary = {k: v for k, v in data["summary"].items() if k in known}
        try:
            return cls(Summary(**summary), data.get("before"), data.get("after"),
                       data.get("crows_pairs") or {"before": None, "after": None},
                       data.get("general") or {"before": None, "after": None},
                       data.get("outcomes") or {"before": None, "after": None},
                       data.get("bbq") or {"before": None, "after": None})
        except TypeError as err:
            raise ReportError(f"{source}: summary is missing fields ({err})") from err

    @classmethod
    def load(cls, path: str | Path) -> "RunReport":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReportError(f"unreadable report.json ({path}: {err})") from err
        return cls.from_dict(data, str(path))
