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


def test_stream_settings_defaults_values_and_secret():
    stream = Settings.from_env({}).stream
    assert (stream.input, stream.group, stream.batch_size) == (
        "tabular-model:events",
        "tabular-model",
        256,
    )
    assert stream.start_id == "0" and stream.metrics_port == 9100
    stream = Settings.from_env(
        {
            "REDIS_URL": " redis://cache:6380/2 ",
            "REDIS_PASSWORD": "hunter2",
            "STREAM_START_ID": "$",
            "STREAM_OUTPUT_MAXLEN": "0",
            "STREAM_BATCH_SIZE": "64",
        }
    ).stream
    assert stream.redis_url == "redis://cache:6380/2" and stream.start_id == "$"
    assert stream.output_maxlen == 0 and stream.batch_size == 64
    assert stream.redis_password.reveal() == "hunter2" and "hunter2" not in repr(stream)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAM_BATCH_SIZE": "0"}, "STREAM_BATCH_SIZE must be >= 1"),
        ({"STREAM_START_ID": "1-0"}, "STREAM_START_ID must be one of 0, \\$"),
        ({"STREAM_RETRY_MAX_SECONDS": "0"}, "STREAM_RETRY_MAX_SECONDS must be between"),
        (
            {"STREAM_MARKER_TTL_SECONDS": "60", "STREAM_CLAIM_IDLE_MS": "60000"},
            "STREAM_MARKER_TTL_SECONDS \\(60\\) must be longer than STREAM_CLAIM_IDLE_MS",
        ),
    ],
)
def test_malformed_stream_settings_name_the_variable(env, message):
    with pytest.raises(SettingError, match=message):
        Settings.from_env(env)
