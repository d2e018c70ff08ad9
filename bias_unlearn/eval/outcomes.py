"""What scoring a model produces, typed: per-example outcomes (the rows every paired or pooled comparison reads:
reports/paired.py, reports/seeds.py) and one model's ``Evaluation`` of the benchmarks a run reports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StereoSetOutcome:
    """One scored StereoSet example: ``pro`` 1 where the stereotype beat the anti-stereotype, ``related`` how many
    of the two beat the unrelated sentence (0-2); both -1 where a score was undefined (NaN)."""

    id: str
    bias_type: str
    target: str
    pro: int
    related: int


@dataclass(frozen=True)
class CrowsOutcome:
    """One scored CrowS-Pairs pair: ``more`` 1 where the more stereotypical sentence scored higher (mean mode),
    -1 where a score was undefined."""

    id: str
    category: str
    more: int


@dataclass
class Outcomes:
    """One model's per-example outcomes: StereoSet per kind, CrowS-Pairs where it was scored."""

    stereoset: dict[str, list[StereoSetOutcome]] = field(default_factory=dict)
    crows_pairs: list[CrowsOutcome] | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> Outcomes | None:
        if not data:
            return None

        def row(kind, value):
            return kind(*value) if isinstance(value, (list, tuple)) else kind(**value)

        stereoset = {k: [row(StereoSetOutcome, r) for r in rows] for k, rows in (data.get("stereoset") or {}).items()}
        crows = data.get("crows_pairs")
        return cls(stereoset, [row(CrowsOutcome, r) for r in crows] if crows is not None else None)


@dataclass
class Evaluation:
    """One model's scores of the benchmarks a run reports (None where a benchmark was not scored)."""

    stereoset: dict | None = None  # {kind: {domain: {ss, lms, icat, n, n_targets, ss_ci95}}}
    crows_pairs: dict | None = None
    bbq: dict | None = None
    general: dict | None = None
    outcomes: Outcomes | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> Evaluation | None:
        """From its JSON form (also the form before 2026-12-05, whose outcomes were positional lists)."""
        if data is None:
            return None
        names = ("stereoset", "crows_pairs", "bbq", "general")
        return cls(**{name: data.get(name) for name in names}, outcomes=Outcomes.from_dict(data.get("outcomes")))
