"""Results and dead letters written, and their inputs acknowledged, in one atomic step.

For each event of a batch, one Lua script run in Redis:

1. sets the event's done-marker (`SET <prefix><input id> 1 NX EX <ttl>`);
2. only if the marker was new, adds the result to the output stream, or the error to the
   dead-letter stream;
3. acknowledges every event of the batch (`XACK`), after all its writes.

Redis runs a script as one step, and replicates and persists its writes as one
transaction, so a result is never acknowledged without being written, and never written
twice: an event handled again (a slow consumer's entry claimed by another, or a script
retried after a lost connection that did run) finds its marker and adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from model.outputs import Outputs

from .events import Event

RESULT, DEAD_LETTER = "r", "d"
# one entry of the script's arguments per event: id, kind, then three values
VALUES_PER_EVENT = 5

WRITE_AND_ACK = """
local group, ttl, prefix, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local written, duplicates, ids = 0, 0, {}
for i = 5, #ARGV, 5 do
  local id, kind = ARGV[i], ARGV[i + 1]
  if redis.call('SET', prefix .. id, '1', 'NX', 'EX', ttl) then
    if kind == 'r' then
      if maxlen == '0' then
        redis.call('XADD', KEYS[2], '*', 'input_id', id, 'model', ARGV[i + 2],
          'prediction', ARGV[i + 3], 'probabilities', ARGV[i + 4])
      else
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'input_id', id,
          'model', ARGV[i + 2], 'prediction', ARGV[i + 3], 'probabilities', ARGV[i + 4])
      end
    else
      redis.call('XADD', KEYS[3], '*', 'input_id', id, 'model', ARGV[i + 2],
        'error', ARGV[i + 3], 'event', ARGV[i + 4])
    end
    written = written + 1
  else
    duplicates = duplicates + 1
  end
  ids[#ids + 1] = id
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], group, unpack(ids))
end
return {written, duplicates}
"""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def result_values(model: str, outputs: Outputs) -> list[tuple[str, str, str]]:
    """Per row: the model tag, the prediction and the class probabilities (null for a
    regressor), both as JSON text, as the API answers them."""
    predictions = outputs.predictions.tolist()
    texts = {value: _json(value) for value in set(predictions)}
    if outputs.probabilities is None:
        return [(model, texts[p], "null") for p in predictions]
    # a float's repr is its JSON text; the class names are quoted once
    template = "{" + ",".join(f"{_json(label)}:%r" for label in outputs.classes) + "}"
    if not np.isfinite(outputs.probabilities).all():
        raise ValueError("the model answered a probability that is not a finite number")
    rows = outputs.probabilities.tolist()
    return [
        (model, texts[p], template % tuple(row)) for p, row in zip(predictions, rows, strict=True)
    ]


def event_text(event: Event) -> str:
    """The event's fields as a JSON object of text, kept in the dead letter for replay."""
    return _json(
        {k.decode(errors="replace"): v.decode(errors="replace") for k, v in event.fields.items()}
    )


@dataclass(frozen=True)
class Written:
    written: int
    duplicates: int


@dataclass(frozen=True)
class Streams:
    input: str
    output: str
    dead_letter: str
    group: str
    marker_prefix: str
    marker_ttl_seconds: int
    output_maxlen: int


class BatchWriter:
    """Writes one batch's results and dead letters and acknowledges its events."""

    def __init__(self, client: redis.Redis, streams: Streams) -> None:
        self.streams = streams
        self._script = client.register_script(WRITE_AND_ACK)

    def arguments(
        self,
        results: Sequence[tuple[Event, tuple[str, str, str]]],
        dead_letters: Sequence[tuple[Event, str, dict[str, Any]]],
    ) -> list[str]:
        s = self.streams
        args = [s.group, str(s.marker_ttl_seconds), s.marker_prefix, str(s.output_maxlen)]
        for event, (model, prediction, probabilities) in results:
            args += [event.id, RESULT, model, prediction, probabilities]
        for event, model, error in dead_letters:
            args += [event.id, DEAD_LETTER, model, _json(error), event_text(event)]
        return args

    def write(self, arguments: Sequence[str]) -> Written:
        """Run the script; safe to run again with the same arguments after any failure."""
        s = self.streams
        written, duplicates = self._script(keys=[s.input, s.output, s.dead_letter], args=arguments)
        return Written(int(written), int(duplicates))

    def acknowledge(self, client: redis.Redis, ids: Sequence[str]) -> None:
        """Acknowledge entries with nothing to write (deleted from the stream meanwhile)."""
        if ids:
            client.xack(self.streams.input, self.streams.group, *ids)
