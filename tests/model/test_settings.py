"""Settings come from the environment, with defaults, and fail naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.settings import SettingError, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults():
    settings = Settings.from_env({"BENTOML_HOME": "/srv/bento"})
    assert settings.model.name == "breast_cancer" and settings.model.tag == ""
    assert (settings.serving.predict_max_rows, settings.serving.predict_batch_max_rows) == (
        1_000,
        100_000,
    )
    assert settings.payload_log.enabled and settings.payload_log.sample_rate == 1.0
    assert settings.payload_log.directory == Path("/srv/bento/payload-logs")


def test_values_are_read_and_trimmed():
    settings = Settings.from_env(
        {
            "MODEL_TAG": " m:1 ",
            "BATCH_MAX_SIZE": "128",
            "PAYLOAD_LOG": "off",
            "PAYLOAD_LOG_SAMPLE_RATE": "0.25",
            "PAYLOAD_LOG_DIR": "/logs",
        }
    )
    assert settings.model.tag == "m:1" and settings.serving.max_batch_size == 128
    assert not settings.payload_log.enabled and settings.payload_log.sample_rate == 0.25
    assert settings.payload_log.directory == Path("/logs")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREDICT_MAX_ROWS": "many"}, "PREDICT_MAX_ROWS must be an integer"),
        ({"BATCH_MAX_SIZE": "1"}, "BATCH_MAX_SIZE must be >= 2"),
        ({"PAYLOAD_LOG_SAMPLE_RATE": "2"}, "PAYLOAD_LOG_SAMPLE_RATE must be between"),
        ({"PAYLOAD_LOG": "maybe"}, "PAYLOAD_LOG must be on/off"),
    ],
)
def test_malformed_values_name_the_variable(env, message):
    with pytest.raises(SettingError, match=message):
        Settings.from_env(env)


def test_every_setting_is_documented():
    source = (ROOT / "model" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    assert len(names) >= 25
    documented = (ROOT / "docs" / "operations.md").read_text()
    assert {name for name in names if f"`{name}`" not in documented} == set()
