"""What a drift run decides: per-column verdicts and the dataset's, shared by the metric
(`drift_metric`), its page (`drift_widgets`) and the job (`drift`)."""

from __future__ import annotations

from dataclasses import dataclass

NUMERIC = "numeric"
CATEGORICAL = "categorical"

# Verdicts for columns Evidently cannot test (it raises on an empty column).
MISSING_IN_CURRENT = "missing_in_current"
EMPTY_IN_CURRENT = "empty_in_current"
EMPTY_IN_REFERENCE = "empty_in_reference"
EMPTY_IN_BOTH = "empty_in_both"
STRUCTURAL_METHODS = (MISSING_IN_CURRENT, EMPTY_IN_CURRENT, EMPTY_IN_REFERENCE, EMPTY_IN_BOTH)

RESULT_COLUMNS = ["column", "kind", "method", "method_label", "threshold", "score", "drifted"]


@dataclass(frozen=True)
class Histogram:
    """Counts of reference and current values over shared bins (or categories)."""

    labels: list[str | float]
    reference: list[int]
    current: list[int]


@dataclass(frozen=True)
class ColumnVerdict:
    column: str
    kind: str
    method: str
    method_label: str
    threshold: float
    score: float
    drifted: bool
    histogram: Histogram | None

    def as_row(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in RESULT_COLUMNS}


def dataset_verdict(drifted: list[bool], drift_share: float) -> tuple[float, bool]:
    """Share of drifted columns, and Evidently's dataset rule: drifted when share >= drift_share."""
    if not drifted:
        return 0.0, False
    share = sum(drifted) / len(drifted)
    return share, share >= drift_share
