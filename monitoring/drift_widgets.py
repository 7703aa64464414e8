"""The drift page: a summary and one table row per column, as Evidently widgets.

Charts are plain plotly JSON built from histograms already computed for the verdict, so
the page costs little next to the statistics.
"""

from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.options import ColorOptions
from evidently.legacy.renderers.html_widgets import (
    ColumnDefinition,
    ColumnType,
    CounterData,
    RichTableDataRow,
    RowDetails,
    counter,
    plotly_data,
    rich_table_data,
)

from monitoring.verdicts import STRUCTURAL_METHODS, ColumnVerdict, Histogram, dataset_verdict

ROWS_PER_PAGE = 20


def render(
    verdicts: list[ColumnVerdict],
    *,
    prediction: str | None,
    drift_share: float,
    reference_rows: int,
    current_rows: int,
) -> list[BaseWidgetInfo]:
    colors = ColorOptions()
    features = [v for v in verdicts if v.column != prediction]
    predicted = next((v for v in verdicts if v.column == prediction), None)
    ordered = ([predicted] if predicted else []) + sorted(features, key=lambda v: not v.drifted)
    return [
        _summary(features, predicted, drift_share, reference_rows, current_rows),
        rich_table_data(
            title=_table_title(features),
            rows_per_page=ROWS_PER_PAGE,
            columns=_table_columns(colors),
            data=[_table_row(v, colors, is_prediction=v is predicted) for v in ordered],
        ),
    ]


def _summary(
    features: list[ColumnVerdict],
    predicted: ColumnVerdict | None,
    drift_share: float,
    reference_rows: int,
    current_rows: int,
) -> BaseWidgetInfo:
    share, detected = dataset_verdict([v.drifted for v in features], drift_share)
    drifted = sum(v.drifted for v in features)
    counters = [
        CounterData("Dataset drift", "Detected" if detected else "Not detected"),
        CounterData("Drifted features", f"{drifted} of {len(features)} ({share:.0%})"),
        CounterData("Dataset drift when share ≥", f"{drift_share:.0%}"),
        CounterData("Rows (reference / current)", f"{reference_rows} / {current_rows}"),
    ]
    if predicted is not None:
        counters.append(CounterData("Prediction drift", _drift_word(predicted)))
    return counter(title="Data drift", counters=counters)


def _table_title(features: list[ColumnVerdict]) -> str:
    drifted = sum(v.drifted for v in features)
    return f"Drift is detected for {drifted} of {len(features)} features."


def _table_columns(colors: ColorOptions) -> list[ColumnDefinition]:
    def histogram(title: str, field: str, color: str) -> ColumnDefinition:
        options = {"xField": "x", "yField": "y", "color": color}
        return ColumnDefinition(title, field, ColumnType.HISTOGRAM, options=options)

    return [
        ColumnDefinition("Column", "column"),
        ColumnDefinition("Type", "kind"),
        histogram("Reference distribution", "reference", colors.get_reference_data_color()),
        histogram("Current distribution", "current", colors.get_current_data_color()),
        ColumnDefinition("Data drift", "drift"),
        ColumnDefinition("Stat test", "method"),
        ColumnDefinition("Drift score", "score"),
        ColumnDefinition("Threshold", "threshold"),
    ]


def _table_row(
    verdict: ColumnVerdict, colors: ColorOptions, *, is_prediction: bool
) -> RichTableDataRow:
    histogram = verdict.histogram
    fields = {
        "column": _column_label(verdict.column, is_prediction=is_prediction),
        "kind": verdict.kind,
        "reference": _sparkline(histogram, reference=True),
        "current": _sparkline(histogram, reference=False),
        "drift": _drift_word(verdict),
        "method": verdict.method_label,
        "score": _number(verdict.score) if verdict.method not in STRUCTURAL_METHODS else "",
        "threshold": _number(verdict.threshold) if verdict.method not in STRUCTURAL_METHODS else "",
    }
    if histogram is None:
        return RichTableDataRow(fields=fields)
    chart = plotly_data(
        title="",
        data=_bars(histogram, colors),
        layout=_bars_layout(verdict.column),
    )
    return RichTableDataRow(fields=fields, details=RowDetails().with_part("DISTRIBUTION", chart))


def _column_label(column: str, *, is_prediction: bool) -> str:
    if is_prediction and "prediction" not in column.lower():
        return f"{column} (prediction)"
    return column


def _drift_word(verdict: ColumnVerdict) -> str:
    return "Detected" if verdict.drifted else "Not detected"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _sparkline(histogram: Histogram | None, *, reference: bool) -> dict[str, list]:
    if histogram is None:
        return {"x": [], "y": []}
    counts = histogram.reference if reference else histogram.current
    return {"x": list(histogram.labels), "y": list(counts)}


def _percent(counts: list[int]) -> list[float]:
    total = sum(counts) or 1
    return [100.0 * c / total for c in counts]


def _bars(histogram: Histogram, colors: ColorOptions) -> list[dict]:
    def bars(name: str, counts: list[int], color: str) -> dict:
        return {
            "type": "bar",
            "name": name,
            "x": list(histogram.labels),
            "y": _percent(counts),
            "marker": {"color": color},
        }

    return [
        bars("reference", histogram.reference, colors.get_reference_data_color()),
        bars("current", histogram.current, colors.get_current_data_color()),
    ]


def _bars_layout(column: str) -> dict:
    return {
        "barmode": "group",
        "bargap": 0.1,
        "xaxis": {"title": {"text": column}},
        "yaxis": {"title": {"text": "share of rows, %"}},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    }
