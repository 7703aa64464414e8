"""What the stream consumer retries, and how long it waits, without Redis."""

from __future__ import annotations

import pytest
from redis import exceptions

from serving.stream.consumer import _group_gone, _unavailable, backoff_seconds


def test_backoff_grows_to_its_cap():
    delays = [backoff_seconds(attempt, cap=2.0) for attempt in range(1, 12)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(1.0 <= d <= 2.0 for d in delays[6:])


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (exceptions.ConnectionError("Connection refused"), True),
        (exceptions.TimeoutError("Timeout reading from socket"), True),
        (exceptions.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (exceptions.AuthenticationError("invalid password"), True),
        (exceptions.ReadOnlyError("You can't write against a read only replica."), True),
        (exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
        (exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
        (exceptions.ResponseError("BUSY Redis is busy running a script."), True),
        (exceptions.ResponseError("BUSYGROUP Consumer Group name already exists"), False),
        (
            exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
            False,
        ),
        (exceptions.ResponseError("ERR Error running script"), False),
    ],
)
def test_only_an_unavailable_redis_is_waited_for(error, retried):
    assert _unavailable(error) is retried


def test_a_deleted_group_or_stream_is_recognised():
    assert _group_gone(exceptions.ResponseError("NOGROUP No such key 'events' or consumer group"))
    assert _group_gone(exceptions.ResponseError("UNBLOCKED the stream key no longer exists"))
    assert not _group_gone(exceptions.ResponseError("ERR syntax error"))
