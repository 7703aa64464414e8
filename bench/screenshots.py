"""Screenshots of the drift pages for docs/, taken by headless Chromium.

    python -m bench.screenshots --out docs/images

runs the drift CLI three times (two stable windows, then a drifted one) into run
directories and an Evidently Workspace, starts `evidently ui` on a free loopback port,
and writes:

- `drift-report.png`: the newest run's report.html, the page `/drift/latest` serves;
- `evidently-ui-dashboard.png`: the model's project dashboard in Evidently's UI.

The integration test `tests/integration/test_evidently_ui.py` runs the same steps.
Needs Debian's `chromium`; no network (the pages load nothing from outside).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from PIL import Image, ImageStat

from bench.harness import prepare_model
from bench.local import ROOT, ServerCommand

WIDTH, HEIGHT = 1400, 1800
# Shifted by three standard deviations in the drifted window: a third of the features.
SHIFTED_FEATURES = 10
DRIFT_SHARE = "0.3"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@dataclass(frozen=True)
class DriftRuns:
    runs: Path
    workspace: Path

    def latest_report(self) -> Path:
        return self.runs / (self.runs / "LATEST").read_text().strip() / "report.html"


def write_windows(reference: pd.DataFrame, work: Path) -> dict[str, Path]:
    """Three current windows of the model's reference sample (stable, stable, drifted) as CSV."""
    numeric = reference.select_dtypes("number").columns
    drifted = reference.sample(frac=0.8, random_state=3)
    for column in numeric[:SHIFTED_FEATURES]:
        drifted[column] = drifted[column] + 3 * reference[column].std()
    if "prediction" in drifted:
        labels = sorted(reference["prediction"].dropna().unique())
        # the classes' mix turned around: three in four rows get the last class
        drifted["prediction"] = np.where(np.arange(len(drifted)) % 4 == 0, labels[0], labels[-1])
    files = {
        "stable-1": reference.sample(frac=0.8, random_state=1),
        "stable-2": reference.sample(frac=0.8, random_state=2),
        "drifted": drifted,
    }
    work.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        data.to_csv(work / f"{name}.csv", index=False)
    return {name: work / f"{name}.csv" for name in files}


def run_drift_jobs(work: Path, model: str) -> DriftRuns:
    """Three runs of the real CLI on a stored model (BENTOML_HOME), each into `runs/` and
    the workspace; the last one drifts."""
    from model.store import load_reference

    files = write_windows(load_reference(model), work / "data")
    result = DriftRuns(runs=work / "runs", workspace=work / "workspace")
    for window in ("stable-1", "stable-2", "drifted"):
        subprocess.run(
            [
                sys.executable, "-m", "monitoring", "drift",
                "--model", model, "--current", str(files[window]),
                "--drift-share", DRIFT_SHARE,
                "--runs", str(result.runs), "--workspace", str(result.workspace), "--quiet",
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    return result


class EvidentlyUI(ServerCommand):
    """`evidently ui` over a workspace, on a free loopback port."""

    def __init__(self, workspace: Path, log_path: Path) -> None:
        binary = Path(sys.executable).with_name("evidently")
        argv = [str(binary), "ui", "--workspace", str(workspace)]
        super().__init__(
            [*argv, "--host", "127.0.0.1", "--port", "{port}"], log_path, {}, "/api/projects"
        )

    def project_id(self, name: str) -> str:
        projects = requests.get(f"{self.url}/api/projects", timeout=10).json()
        return next(p["id"] for p in projects if p["name"] == name)


def screenshot(url: str, out: Path, *, budget_ms: int = 15_000) -> Path:
    """A WIDTH x HEIGHT PNG of `url` after its scripts ran for `budget_ms` of virtual time."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (Debian package `chromium`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run(
            [
                chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}", f"--virtual-time-budget={budget_ms}",
                f"--screenshot={out}", url,
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    return out


def blank_reason(path: Path) -> str | None:
    """Why the PNG is not a real page (wrong size, one colour, nearly empty), or None."""
    with Image.open(path) as image:
        if image.size != (WIDTH, HEIGHT):
            return f"size {image.size}, expected {(WIDTH, HEIGHT)}"
        grey = image.convert("L")
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
        spread = ImageStat.Stat(grey).stddev[0]
        inked = sum(grey.point(lambda v: 255 if v < 200 else 0).histogram()[255:])
    if colours < 16:
        return f"{colours} colours"
    if spread < 10:
        return f"grey levels spread {spread:.1f}"
    if inked < WIDTH * HEIGHT * 0.01:
        return f"only {inked} dark pixels"
    return None


def take_all(work: Path, out: Path, model: str) -> dict[str, Path]:
    runs = run_drift_jobs(work, model)
    shots = {"drift-report": screenshot(runs.latest_report().as_uri(), out / "drift-report.png")}
    ui = EvidentlyUI(runs.workspace, work / "evidently-ui.log")
    try:
        ui.wait_ready(timeout=120)
        project = ui.project_id(model.split(":", 1)[0])
        shots["evidently-ui-dashboard"] = screenshot(
            f"{ui.url}/projects/{project}", out / "evidently-ui-dashboard.png"
        )
    finally:
        ui.stop()
    for name, path in shots.items():
        reason = blank_reason(path)
        if reason:
            raise RuntimeError(f"{name}: {path} looks blank: {reason}")
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument(
        "--model", help="model tag in BENTOML_HOME (default: one trained as breast_cancer)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as work:
        model, _ = prepare_model(args.model, Path(work), name="breast_cancer")
        for name, path in take_all(Path(work), args.out, model).items():
            print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
