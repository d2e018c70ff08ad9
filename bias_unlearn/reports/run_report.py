"""The training run's report: one typed object, written by the training job as ``report.json`` and read back by
``report.py`` / sweeps, ``evaluate.py runs=``, the notebooks and the tests (nobody rebuilds or indexes the JSON by
hand).

Schema 4 (2026-12-05) holds every benchmark in one shape, ``{"before": ..., "after": ...}`` (``stereoset``,
``crows_pairs``, ``bbq``, ``general``), and the per-example outcomes the paired comparisons read as typed rows
(``StereoSetOutcome``, ``CrowsOutcome``). Reports of schema 3 (StereoSet as top-level ``before`` / ``after``,
outcomes as positional lists) and 2 (no outcomes) still load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bias_unlearn.config.errors import ReportError
from bias_unlearn.eval.outcomes import Evaluation, Outcomes
from bias_unlearn.io import write_json

SCHEMA_VERSION = 4
READABLE_SCHEMAS = (2, 3, 4)
KIND = "intrasentence"  # the StereoSet kind the paper and the tables report
BENCHMARKS = ("stereoset", "crows_pairs", "bbq", "general")


@dataclass
class BeforeAfter:
    before: object = None
    after: object = None


@dataclass
class Summary:
    method: str  # derived from what trained (config/methods.py), never from a label
    objective: dict  # the fields that decide the method: weights, forget loss, adversarial share, pairing, swapping
    model: str
    adapter: str  # where the delivered adapter was written
    adapter_from: str  # the checkpoint it came from, or "final weights"
    adapter_rule: str  # which rule chose it (unlearning/callbacks/adapter_checkpoint.py)
    lms_bar_met: bool | None  # whether its dev LMS stayed within the bar (None: no dev evaluation chose it)
    steps: int
    stopped_early_at: int | None
    swap_events: list = field(default_factory=list)
    # train.type_weights=adaptive: {"step", "factors"} after each dev evaluation (callbacks/type_weighting.py)
    type_weight_events: list = field(default_factory=list)
    # train.counterfactual_types: per type, copies made and why the others were not (data/counterfactual.py)
    counterfactual_copies: dict = field(default_factory=dict)
    dev_history: list = field(default_factory=list)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    scoring: str = ""
    loss: dict = field(default_factory=dict)
    generations: list = field(default_factory=list)
    diverged: dict | None = None  # {"step", "term"}: the run stopped at a NaN/inf (callbacks/non_finite.py)
    # Per bias type, what the dev rules read: {"examples", "targets", "resolution", "se"} (unlearning/balance.py)
    dev_split: dict = field(default_factory=dict)
    # Side effects scored after training, by ``evaluate.py runs=`` (jobs/complete_runs.py), e.g. ["bbq", "general"]
    added_later: list = field(default_factory=list)
    declared_method: str | None = None  # conf/method/<name>.yaml's name, where the command line changed what trained
    # What the machine chose for ``auto`` settings: weights' dtype, trainer precision, LoRA forward, device (and CPU)
    precision: dict = field(default_factory=dict)
    # A decoding-time method (no adapter): its settings, forward passes per scored token, measured seconds per
    # StereoSet test example plain and under the method, and (CAFIE) how many texts it could change
    decoding: dict = field(default_factory=dict)
    # BiasEdit: the editor's settings, the edited modules, its size and the last epoch's meta-losses
    editing: dict = field(default_factory=dict)


@dataclass
class RunReport:
    summary: Summary
    stereoset: BeforeAfter = field(default_factory=BeforeAfter)
    crows_pairs: BeforeAfter = field(default_factory=BeforeAfter)
    bbq: BeforeAfter = field(default_factory=BeforeAfter)
    general: BeforeAfter = field(default_factory=BeforeAfter)
    outcomes: BeforeAfter = field(default_factory=BeforeAfter)  # Outcomes before and after
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_scores(cls, summary: Summary, before: Evaluation | None, after: Evaluation | None) -> RunReport:
        before, after = before or Evaluation(), after or Evaluation()
        return cls(
            summary, *(BeforeAfter(getattr(before, name), getattr(after, name)) for name in (*BENCHMARKS, "outcomes"))
        )

    def benchmark(self, name: str) -> BeforeAfter:
        return getattr(self, name)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "report") -> RunReport:
        if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
            raise ReportError(f"{source}: no summary (not a training run report)")
        version = data.get("schema_version")
        if version not in READABLE_SCHEMAS:
            raise ReportError(
                f"{source}: report schema {version!r}, expected one of {READABLE_SCHEMAS} (written "
                "by another version of bias_unlearn)"
            )
        known = {f.name for f in fields(Summary)}
        try:
            summary = Summary(**{k: v for k, v in data["summary"].items() if k in known})
        except TypeError as err:
            raise ReportError(f"{source}: summary is missing fields ({err})") from err

        def pair(value) -> BeforeAfter:
            value = value or {}
            return BeforeAfter(value.get("before"), value.get("after"))

        stereoset = pair(data.get("stereoset")) if version >= 4 else BeforeAfter(data.get("before"), data.get("after"))
        outcomes = pair(data.get("outcomes"))
        try:
            outcomes = BeforeAfter(Outcomes.from_dict(outcomes.before), Outcomes.from_dict(outcomes.after))
        except (TypeError, AttributeError) as err:
            raise ReportError(f"{source}: unreadable per-example outcomes ({err})") from err
        return cls(
            summary,
            stereoset,
            pair(data.get("crows_pairs")),
            pair(data.get("bbq")),
            pair(data.get("general")),
            outcomes,
            SCHEMA_VERSION,
        )

    @classmethod
    def load(cls, path: str | Path) -> RunReport:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReportError(f"unreadable report.json ({path}: {err})") from err
        return cls.from_dict(data, str(path))
