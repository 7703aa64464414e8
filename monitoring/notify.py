"""Webhook notifications of drift results: a generic JSON body or a Slack message.

`notify_drift(result, url)` posts one drift result (`DriftResult.to_dict()`, or a loaded
drift.json) to a webhook and returns whether it was delivered:

- `fmt="json"`: the result itself plus a `text` summary.
- `fmt="slack"`: `{"text": ..., "blocks": [...]}`, accepted by Slack incoming webhooks
  and by the Slack-compatible ones of Mattermost and Rocket.Chat.

The summary names the share of drifted features and the drifted columns that are
furthest past their threshold (score / threshold for distances, threshold / score for
p-values; columns that cannot be tested come first).

Each attempt has `timeout` seconds per network operation (connect, send, each read).
Connection errors, timeouts, 429 and 5xx answers are retried up to `retries` times, after
`backoff`, 2 * `backoff`, 4 * `backoff`... seconds (at most `max_delay`), or after the
answer's Retry-After when that is longer; a Retry-After beyond `max_delay` ends the
retries. Other answers (4xx, 3xx) are not retried. Failures never raise: they are logged
as a warning on the `monitoring.notify` logger and `notify_drift` returns False.

Webhook URLs carry their secret in the path or query, so logs only ever show the scheme,
host and port; while a notification is sent, httpx's own request log line is cut down the
same way. httpx (a dependency of BentoML) is imported on first use.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

Format = Literal["json", "slack"]
FORMATS: tuple[str, ...] = get_args(Format)
TOP_COLUMNS = 5
SLACK_SECTION_LIMIT = 3000
REASON_LIMIT = 200
USER_AGENT = "tabular-model-drift-notifier"

_REDACTING: ContextVar[bool] = ContextVar("monitoring_notify_redacting", default=False)


def notify_drift(
    result: Mapping[str, Any],
    url: str,
    *,
    fmt: Format = "json",
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 1.0,
    max_delay: float = 30.0,
    top: int = TOP_COLUMNS,
) -> bool:
    """POST `result` to the webhook at `url`; True once it answered 2xx (see module doc)."""
    target = safe_url(url)
    try:
        problem = _check_options(fmt, timeout, retries, backoff, max_delay)
        if problem:
            logger.warning("drift notification to %s not sent: %s", target, problem)
            return False
        body = encode_payload(result, fmt, top=top)
    except Exception as exc:
        logger.warning(
            "drift notification to %s not sent: bad drift result or option (%r)", target, exc
        )
        return False
    try:
        return _deliver(body, url, target, timeout, retries, backoff, max_delay)
    except Exception as exc:  # the caller's drift run must never fail on a notification
        logger.warning(
            "drift notification to %s failed: %s", target, _scrub(type(exc).__name__, url)
        )
        return False


def build_payload(
    result: Mapping[str, Any], fmt: Format = "json", *, top: int = TOP_COLUMNS
) -> dict[str, Any]:
    """The request body as Python data."""
    text = summary_text(result, top=top)
    if fmt == "json":
        return {**result, "text": text}
    if fmt == "slack":
        return slack_message(text)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def encode_payload(
    result: Mapping[str, Any], fmt: Format = "json", *, top: int = TOP_COLUMNS
) -> bytes:
    payload = build_payload(result, fmt, top=top)
    return json.dumps(payload, allow_nan=False, default=str).encode()


def summary_text(result: Mapping[str, Any], *, top: int = TOP_COLUMNS) -> str:
    """A few plain lines: verdict and share, top drifted columns, prediction, data sizes."""
    columns: Mapping[str, Mapping[str, Any]] = result.get("columns") or {}
    drifted = [(name, column) for name, column in columns.items() if column.get("drifted")]
    verdict = "Drift detected" if result.get("drift_detected") else "No dataset drift"
    share = float(result.get("share_drifted") or 0.0)
    lines = [
        f"{verdict} for model {result.get('model', 'unknown')}: "
        f"{len(drifted)} of {len(columns)} features drifted ({share:.1%})."
    ]
    if drifted:
        ranked = sorted(drifted, key=lambda item: _severity(item[1]), reverse=True)
        shown = ", ".join(f"{name} ({_verdict(column)})" for name, column in ranked[:top])
        more = f" and {len(ranked) - top} more" if len(ranked) > top else ""
        lines.append(f"Top drifted: {shown}{more}.")
    prediction = result.get("prediction")
    if prediction:
        state = "drifted" if prediction.get("drifted") else "no drift"
        lines.append(f"Prediction: {state} ({_verdict(prediction)}).")
    lines.append(
        f"{result.get('current_rows', '?')} current rows against "
        f"{result.get('reference_rows', '?')} reference rows, "
        f"generated {result.get('generated_at', 'at an unknown time')}."
    )
    return "\n".join(lines)


def slack_message(text: str) -> dict[str, Any]:
    """Slack's incoming-webhook body: `text` (notifications, fallback) and one section."""
    escaped = _slack_escape(text)
    headline, _, rest = escaped.partition("\n")
    section = f"*{headline}*\n{rest}" if rest else f"*{headline}*"
    if len(section) > SLACK_SECTION_LIMIT:
        section = section[: SLACK_SECTION_LIMIT - 3] + "..."
    return {
        "text": escaped,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": section}}],
    }


def safe_url(url: str) -> str:
    """`scheme://host[:port]` of `url`: no credentials, path or query."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except (TypeError, ValueError, AttributeError):
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True)
class _Outcome:
    sent: bool
    retry: bool
    reason: str
    retry_after: float | None = None


def _deliver(
    body: bytes,
    url: str,
    target: str,
    timeout: float,
    retries: int,
    backoff: float,
    max_delay: float,
) -> bool:
    import httpx

    _install_log_redaction()
    token = _REDACTING.set(True)
    try:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client:
            attempts = retries + 1
            for attempt in range(1, attempts + 1):
                outcome = _attempt(client, url, body)
                if outcome.sent:
                    logger.info("drift notification sent to %s (attempt %d)", target, attempt)
                    return True
                delay = _next_delay(outcome, attempt, backoff, max_delay)
                if not outcome.retry or attempt == attempts or delay is None:
                    logger.warning(
                        "drift notification to %s failed after %d attempt(s): %s%s",
                        target,
                        attempt,
                        outcome.reason,
                        _why_stopped(outcome, attempt, attempts),
                    )
                    return False
                logger.info(
                    "drift notification to %s: %s; retry %d of %d in %.2fs",
                    target,
                    outcome.reason,
                    attempt,
                    retries,
                    delay,
                )
                time.sleep(delay)
    finally:
        _REDACTING.reset(token)
    return False


def _attempt(client: httpx.Client, url: str, body: bytes) -> _Outcome:
    import httpx

    try:
        response = client.post(url, content=body)
    except httpx.TimeoutException as exc:
        return _Outcome(False, True, f"timed out ({type(exc).__name__})")
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        return _Outcome(False, True, _error_reason(exc, url))
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _Outcome(False, False, _error_reason(exc, url))
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(True, False, f"HTTP {status}")
    reason = f"HTTP {status}"
    detail = _scrub(response.text.strip(), url)[:REASON_LIMIT]
    if detail:
        reason = f"{reason}: {detail}"
    if status == 429 or 500 <= status <= 599:
        return _Outcome(
            False, True, reason, retry_after_seconds(response.headers.get("Retry-After"))
        )
    return _Outcome(False, False, reason)


def _next_delay(outcome: _Outcome, attempt: int, backoff: float, max_delay: float) -> float | None:
    """Seconds before the next attempt; None when the server asks for more than max_delay."""
    delay = min(backoff * 2.0 ** (attempt - 1), max_delay)
    if outcome.retry_after is None:
        return delay
    if outcome.retry_after > max_delay:
        return None
    return max(delay, outcome.retry_after)


def _why_stopped(outcome: _Outcome, attempt: int, attempts: int) -> str:
    if not outcome.retry:
        return " (not retried)"
    if attempt == attempts:
        return ""
    return f" (Retry-After {outcome.retry_after:.0f}s is beyond the retry limit)"


def _check_options(
    fmt: str, timeout: float, retries: int, backoff: float, max_delay: float
) -> str | None:
    if fmt not in FORMATS:
        return f"unknown format {fmt!r}; expected one of {FORMATS}"
    if not timeout > 0:
        return f"timeout must be positive, got {timeout!r}"
    if retries < 0:
        return f"retries must be 0 or more, got {retries!r}"
    if not (backoff >= 0 and max_delay >= 0):
        return "backoff and max_delay must be 0 or more"
    return None


def _severity(column: Mapping[str, Any]) -> float:
    """How far a drifted column is past its threshold, whichever way the test reads."""
    score, threshold = column.get("score"), float(column.get("threshold") or 0.0)
    if score is None:
        return math.inf
    score = float(score)
    if score >= threshold:  # a distance at or above its threshold
        return score / threshold if threshold > 0 else math.inf
    return threshold / score if score > 0 else math.inf  # a p-value below its threshold


def _verdict(column: Mapping[str, Any]) -> str:
    method = column.get("method", "?")
    score, threshold = column.get("score"), column.get("threshold")
    if score is None or threshold is None:
        return f"{method}, no score"
    sign = ">=" if float(score) >= float(threshold) else "<"
    return f"{method} {float(score):.3g} {sign} {float(threshold):.3g}"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _error_reason(exc: BaseException, url: str) -> str:
    message = _scrub(str(exc), url)[:REASON_LIMIT]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _scrub(text: str, url: str) -> str:
    """`text` with the URL's secret parts (credentials, path, query) cut out."""
    try:
        parts = urlsplit(url)
        secrets = [url, parts.netloc.rpartition("@")[0], parts.path, parts.query, parts.fragment]
        password = parts.password
    except (TypeError, ValueError, AttributeError):
        return "<redacted>" if url and url in text else text
    if password:
        secrets.append(password)
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        if secret != "/":
            text = text.replace(secret, "<redacted>")
    return text


class _RedactRequestUrls(logging.Filter):
    """Cuts URLs in httpx's request log lines down to scheme://host while notifying."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _REDACTING.get() and isinstance(record.args, tuple):
            import httpx

            record.args = tuple(
                safe_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_HTTPX_FILTER = _RedactRequestUrls()


def _install_log_redaction() -> None:
    logging.getLogger("httpx").addFilter(_HTTPX_FILTER)  # a no-op when already there
