"""The screenshots in docs/images are real pages, and the blank-page check can tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench.screenshots import HEIGHT, WIDTH, blank_reason

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def test_committed_screenshots_are_real_pages() -> None:
    for name in ("drift-report.png", "evidently-ui-dashboard.png"):
        assert blank_reason(IMAGES / name) is None, name


def test_one_colour_is_blank(tmp_path: Path) -> None:
    Image.new("RGB", (WIDTH, HEIGHT), "white").save(tmp_path / "white.png")
    assert blank_reason(tmp_path / "white.png") == "1 colours"


def test_wrong_size_is_reported(tmp_path: Path) -> None:
    Image.new("RGB", (WIDTH, HEIGHT // 2), "white").save(tmp_path / "half.png")
    assert "size" in (blank_reason(tmp_path / "half.png") or "")


def test_faint_noise_is_blank(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(240, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert blank_reason(tmp_path / "noise.png") is not None
