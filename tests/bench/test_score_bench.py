"""The scoring benchmark's comparison of whole `python -m train score` commands: the answer
check, the summary's ratios, the report section, and one real pair of processes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.score_bench import (
    BASELINE,
    CURRENT_TREE,
    NOW,
    CommandComparison,
    ScoreCommand,
    command_summary,
    compare_outputs,
    report,
    score_commands,
)
from train.data import load_default
from train.training import TrainConfig, train

SCORED = pd.DataFrame(
    {
        "row": [1, 2, 3],
        "prediction": [1, 0, 1],
        "probability_0": [0.1, 0.8, 0.3],
        "probability_1": [0.9, 0.2, 0.7],
    }
)


def written(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def test_outputs_within_the_tolerance_agree(tmp_path: Path) -> None:
    nudged = SCORED.assign(probability_1=SCORED["probability_1"] + 5e-5)
    found = compare_outputs(written(SCORED, tmp_path / "a.parquet"),
                            written(nudged, tmp_path / "b.parquet"))  # fmt: skip
    assert found["agree"]
    assert found["predictions_differing"] == 0
    assert found["max_probability_difference"] == pytest.approx(5e-5)


@pytest.mark.parametrize(
    "changed",
    [
        SCORED.assign(probability_0=SCORED["probability_0"] - 2e-4),
        SCORED.assign(prediction=[1, 1, 1]),
        SCORED.assign(row=[1, 3, 2]),
        SCORED.iloc[:2],
        SCORED.drop(columns="probability_0"),
    ],
    ids=["probability", "prediction", "row numbers", "fewer rows", "columns"],
)
def test_outputs_that_differ_do_not_agree(tmp_path: Path, changed: pd.DataFrame) -> None:
    found = compare_outputs(written(SCORED, tmp_path / "a.parquet"),
                            written(changed, tmp_path / "b.parquet"))  # fmt: skip
    assert not found["agree"]


def fake_runs(baseline: list[float], now: list[float]) -> list[dict]:
    return [
        {
            "first": BASELINE if index % 2 == 0 else NOW,
            "load_average": 0.5,
            BASELINE: {"seconds": 1.0, "rows_per_s": old, "cpu_s": 2.0},
            NOW: {"seconds": 1.0, "rows_per_s": new, "cpu_s": 1.0},
        }
        for index, (old, new) in enumerate(zip(baseline, now, strict=True))
    ]


AGREED = {"agree": True, "rows": 3, "max_probability_difference": 2e-9, "tolerance": 1e-4}


def test_summary_gives_the_ratio_of_medians_and_the_median_of_ratios() -> None:
    compared = command_summary(fake_runs([100, 200, 400], [300, 300, 1000]), AGREED,
                               "d05b6ae", Path("/tmp/before"))  # fmt: skip
    assert compared[BASELINE]["rows_per_s"] == 200 and compared[NOW]["rows_per_s"] == 300
    assert compared["of_medians"] == pytest.approx(1.5)
    assert compared["per_repeat"] == pytest.approx([3.0, 1.5, 2.5])
    assert compared["median_per_repeat"] == pytest.approx(2.5)
    assert compared["cpu"] == pytest.approx(2.0)


def bare_result() -> dict:
    return {"rows": 1_000_000, "chunk_rows": 50_000, "repeat": 3, "formats": {},
            "peak_rss_mib": 100.0, "cores": 2, "load_average": (0.5, 0.5, 0.5)}  # fmt: skip


def test_report_gains_the_command_section_after_the_existing_text() -> None:
    without = report(bare_result())
    compared = command_summary(fake_runs([100, 200, 400], [300, 300, 1000]), AGREED,
                               "d05b6ae", Path("/tmp/before"))  # fmt: skip
    text = report({**bare_result(), "commands": compared})

    assert "as of" not in without
    assert text.startswith(without)
    section = text[len(without) :]
    assert "## `python -m train score`, Parquet, as of d05b6ae vs now with ONNX" in section
    assert "start-up" in section and "included in both" in section
    assert "| d05b6ae | default | 200 | 2.00 |" in section
    assert "| now | onnx | 300 | 1.00 |" in section
    assert "**1.50x** (median of the repeats' ratios 2.50x: 3.00, 1.50, 2.50)" in section
    assert "The answers agree" in section
    assert "- 2: 200, 2.00; 300, 1.00; now; 0.50" in section


def test_report_says_when_the_answers_differ() -> None:
    differing = {**AGREED, "agree": False, "predictions_differing": 4}
    compared = command_summary(fake_runs([100], [300]), differing, "old", Path("/tmp/old"))
    assert "**The answers differ**" in report({**bare_result(), "commands": compared})


def test_a_tree_whose_code_is_not_imported_is_refused(tmp_path: Path) -> None:
    """From a directory without the project, `train` comes from the editable install."""
    elsewhere = ScoreCommand(tmp_path, score_commands(CURRENT_TREE)[BASELINE].env)
    comparison = CommandComparison({BASELINE: elsewhere}, "unused:tag", tmp_path)
    with pytest.raises(RuntimeError, match="imported from"):
        comparison.check_trees()


@pytest.mark.slow
def test_one_turn_runs_both_commands_and_checks_their_answers(tmp_path: Path) -> None:
    features, target = load_default()
    tag = train(features, target, TrainConfig(name="score-bench-test")).tag
    source = written(features.head(300), tmp_path / "in.parquet")
    comparison = CommandComparison(score_commands(CURRENT_TREE), tag, tmp_path)
    comparison.check_trees()

    comparison.take_turn(source, chunk_rows=100, rows=300)

    (run,) = comparison.runs
    assert run["first"] == BASELINE
    for name in (BASELINE, NOW):
        assert run[name]["rows_per_s"] == pytest.approx(300 / run[name]["seconds"])
        assert 0 < run[name]["cpu_s"] < 60
        timed = run["scoring"][name]
        assert timed["rows_per_s"] == pytest.approx(300 / timed["seconds"])
    assert run["scoring"][NOW]["runtime"] == "onnx"
    assert comparison.agreement is not None and comparison.agreement["agree"]
    assert comparison.agreement["rows"] == 300
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.parquet"]  # outputs removed


def test_report_gives_scoring_alone_when_it_was_timed() -> None:
    runs = fake_runs([100, 200, 400], [300, 300, 1000])
    for run, scoring in zip(runs, fake_runs([10, 20, 40], [50, 60, 70]), strict=True):
        run["scoring"] = scoring
    compared = command_summary(runs, AGREED, "d05b6ae", Path("/tmp/before"))
    assert compared["scoring"]["of_medians"] == pytest.approx(3.0)
    section = report({**bare_result(), "commands": compared})
    assert "### Scoring alone, as of d05b6ae vs now with ONNX" in section
    assert "| now | onnx | 60 | 1.00 |" in section
    assert "**3.00x** (median of the repeats' ratios 3.00x: 5.00, 3.00, 1.75)" in section
    untimed = command_summary(fake_runs([100], [300]), AGREED, "old", Path("/tmp/old"))
    assert "Scoring alone" not in report({**bare_result(), "commands": untimed})
