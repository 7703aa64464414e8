"""`python -m serving.stream`: score events from a Redis stream until SIGTERM.

    python -m serving.stream                     consume until SIGTERM
    python -m serving.stream replay [ID ...]     send dead letters back to the input stream

Every setting comes from the environment (`model.settings`, docs/operations.md): the
model (MODEL_NAME, MODEL_TAG), Redis (REDIS_URL, REDIS_PASSWORD), the streams and the
group (STREAM_*), the payload log (PAYLOAD_LOG_*). Logs are JSON lines on stdout.
Exit status: 0 after a stop, 1 when the model cannot be loaded, 2 on a malformed setting.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from ..access_log import JsonFormatter

if TYPE_CHECKING:
    from model.settings import Settings

logger = logging.getLogger("serving.stream")


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.stream",
        description="Score events from a Redis stream (settings: docs/operations.md).",
    )
    commands = parser.add_subparsers(dest="command")
    replay = commands.add_parser(
        "replay",
        help="add dead letters back to the input stream as new events, and delete them",
    )
    replay.add_argument(
        "ids", nargs="*", metavar="ID", help="dead-letter entry ids (default: every one)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    from model.settings import SettingError, Settings

    try:
        settings = Settings.from_env()
    except SettingError as error:
        logger.error("%s", error)
        return 2
    if args.command == "replay":
        return replay_dead_letters(settings, args.ids)
    return consume(settings)


def replay_dead_letters(settings: Settings, ids: list[str]) -> int:
    from .app import redis_client
    from .replay import replay

    stream = settings.stream
    client = redis_client(stream)
    count = replay(client, stream.dead_letter, stream.input, ids)
    logger.info("replayed %d dead letters from %s to %s", count, stream.dead_letter, stream.input)
    return 0


def consume(settings: Settings) -> int:
    from model import store

    choice = store.choose_served(settings.model.name, settings.model.tag)
    if choice.problem is not None:
        logger.error("%s; no events are read until a model can be loaded", choice.problem)
        return 1
    try:
        loaded = store.load(choice.tag, settings.model.runtime)
    except Exception as error:  # any failure to load means: never read events
        logger.error("model %s cannot be served: %s", choice.tag, error)
        return 1

    from .app import build_consumer

    stream = settings.stream
    name = stream.consumer or f"{socket.gethostname()}-{os.getpid()}"
    consumer, close = build_consumer(settings, loaded, name)

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("%s: finishing the batch in hand", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
