"""Dead letters sent back to the input stream, once the cause of their refusal is fixed.

Each dead letter holds the refused event's fields (`event`, a JSON object of text). A
replay adds those fields to the input stream as a new event and deletes the dead letter,
both in one MULTI/EXEC transaction, so a dead letter is never replayed twice nor lost.
The new event has a new id: its result (or its new dead letter) carries that id, and
`replayed_from` holds the original one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

REPLAYED_FROM = "replayed_from"


def replay(
    client: redis.Redis,
    dead_letter: str,
    input_stream: str,
    ids: Sequence[str] = (),
    *,
    batch: int = 500,
) -> int:
    """Replays the dead letters `ids`, or all of them when none are given; returns how many."""
    replayed = 0
    start = "-"
    while True:
        if ids:
            entries = [e for i in ids for e in client.xrange(dead_letter, i, i)]
        else:
            entries = client.xrange(dead_letter, start, "+", count=batch)
        if not entries:
            return replayed
        pipe = client.pipeline(transaction=True)
        for entry_id, fields in entries:
            event = json.loads(fields[b"event"])
            event[REPLAYED_FROM] = fields[b"input_id"].decode()
            pipe.xadd(input_stream, event)
            pipe.xdel(dead_letter, entry_id)
        pipe.execute()
        replayed += len(entries)
        if ids:
            return replayed
        start = "(" + entries[-1][0].decode()
