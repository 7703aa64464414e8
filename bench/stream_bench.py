"""Stream scoring against HTTP `/predict` on the same model, at equal CPU.

    python -m bench.stream_bench [--events 60000] [--duration 10] [--connections 64]
                                 [--out bench/results]

Trains the default model into a temporary BENTOML_HOME, then measures, in one run:

- `/predict`: single-row requests from wrk at `--connections`, against `bentoml serve` with
  WORKERS=1 and with WORKERS=2 (rows/s, wrk's p50/p99);
- the stream: `python -m serving.stream` with one and with two consumers in one group
  (events/s while draining `--events` events produced as fast as Redis takes them; then
  produce-to-result latency p50/p99 with events produced at the rate `/predict` reached
  on the same CPU, from the Redis ids of each event and its result, 1 ms resolution).

Equal CPU: with one worker or consumer, the system measured is pinned to core 0 and
everything else (wrk, redis-server, the producer, this script) to core 1; with two, all
share both cores. CPU seconds of the system measured (and of redis-server) are recorded,
so rows per CPU second compare too. Writes `stream.json` and `stream.md` to `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench import processes, wrk
from bench.harness import machine_info, prepare_model, sample_rows
from bench.local import ROOT, Server
from tests.integration.redis_server import ConsumerProcess, RedisServer

RESULTS = ROOT / "bench" / "results"
INPUT, OUTPUT = "bench:events", "bench:predictions"
ALL_CORES = frozenset(os.sched_getaffinity(0))
SUT_CORE, LOAD_CORE = {min(ALL_CORES)}, {max(ALL_CORES)}
PACE_TICK_S = 0.005


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_bench", description=__doc__)
    add = parser.add_argument
    add("--events", type=int, default=60_000, help="events drained per consumer setup")
    add("--duration", type=int, default=10, help="seconds per measured point (wrk, paced)")
    add("--warmup", type=int, default=3, help="seconds of wrk warm-up before each point")
    add("--connections", type=int, default=64, help="wrk connections for /predict")
    add("--batch-size", type=int, default=256, help="STREAM_BATCH_SIZE of the consumers")
    add("--out", type=Path, default=RESULTS, help="results directory")
    return parser.parse_args(argv)


@contextlib.contextmanager
def cores(chosen: set[int] | frozenset[int]) -> Iterator[None]:
    """Processes started inside inherit `chosen` as their CPU affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, chosen)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pinned(count: int) -> bool:
    return count == 1 and len(ALL_CORES) >= 2


def http_point(home: Path, tag: str, workers: int, body: Path, args, work: Path) -> dict:
    script = wrk.post_script(work / "predict.lua", body)
    with cores(SUT_CORE if pinned(workers) else ALL_CORES):
        server = Server(home, work / f"http-{workers}.log", MODEL_TAG=tag, WORKERS=str(workers))
    try:
        server.wait_ready(180)
        url = f"{server.url}/predict"
        wrk.run(url, script, connections=args.connections, duration_s=args.warmup)
        cpu_before = processes.cpu_seconds([server.process.pid])
        result = wrk.run(url, script, connections=args.connections, duration_s=args.duration)
        cpu = processes.cpu_seconds([server.process.pid]) - cpu_before
    finally:
        processes.stop(server)
    if result.non_2xx or any(result.socket_errors.values()):
        raise SystemExit(f"/predict answered errors: {result}")
    rows_per_s = result.ok_requests / result.duration_s
    return {
        "system": "http",
        "workers": workers,
        "pinned_to_one_core": pinned(workers),
        "connections": args.connections,
        "rows_per_s": rows_per_s,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "cpu_s": cpu,
        "rows_per_cpu_s": result.ok_requests / cpu if cpu else None,
        "load_1min": os.getloadavg()[0],
    }


def produce(client: redis.Redis, bodies: list[bytes], count: int, start: int = 0) -> None:
    pipe = client.pipeline(transaction=False)
    for number in range(start, start + count):
        pipe.xadd(INPUT, {"instance": bodies[number % len(bodies)]})
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()


def wait_results(client: redis.Redis, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while client.xlen(OUTPUT) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {client.xlen(OUTPUT)} of {count} results after {timeout}s")
        time.sleep(0.005)
    return time.monotonic()


def latencies_ms(client: redis.Redis, after: bytes) -> np.ndarray:
    """Result id minus input id, in ms (Redis's clock for both), of results after `after`."""

    def ms(entry_id: bytes) -> int:
        return int(entry_id.split(b"-", 1)[0])

    entries = client.xrange(OUTPUT, b"(" + after, "+")
    return np.array([ms(rid) - ms(f[b"input_id"]) for rid, f in entries], dtype=float)


def paced(client: redis.Redis, bodies: list[bytes], rate: float, seconds: int) -> int:
    """`rate` events per second for `seconds`, sent every few milliseconds."""
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * elapsed) - sent
        if due > 0:
            produce(client, bodies, due, sent)
            sent += due
        time.sleep(PACE_TICK_S)
    return sent


def stream_point(
    server: RedisServer, home: Path, tag: str, consumers: int, rate: float, bodies, args, work
) -> dict:
    client = server.client()
    client.flushall()
    env = {
        "BENTOML_HOME": str(home),
        "MODEL_TAG": tag,
        "REDIS_URL": server.url,
        "STREAM_INPUT": INPUT,
        "STREAM_OUTPUT": OUTPUT,
        "STREAM_BATCH_SIZE": str(args.batch_size),
        "STREAM_BLOCK_MS": "500",
        "STREAM_METRICS_PORT": "0",
        "STREAM_OUTPUT_MAXLEN": "0",
        "PAYLOAD_LOG_DIR": str(work / "payloads"),
    }
    with cores(SUT_CORE if pinned(consumers) else ALL_CORES):
        started = [ConsumerProcess(f"c{n}", work, env) for n in range(consumers)]
    try:
        for consumer in started:
            consumer.wait_reading()
        pids = [c.process.pid for c in started]
        cpu_before = processes.cpu_seconds(pids)
        redis_before = processes.cpu_seconds([server.process.pid])
        began = time.monotonic()
        produce(client, bodies, args.events)
        finished = wait_results(client, args.events, 600)
        cpu = processes.cpu_seconds(pids) - cpu_before
        redis_cpu = processes.cpu_seconds([server.process.pid]) - redis_before
        drain_s = finished - began
        last_drained = client.xrevrange(OUTPUT, count=1)[0][0]
        sent = paced(client, bodies, rate, args.duration)
        wait_results(client, args.events + sent, 120)
        latency = latencies_ms(client, last_drained)
    finally:
        codes = [consumer.stop() for consumer in started]
    assert codes == [0] * consumers, codes
    return {
        "system": "stream",
        "consumers": consumers,
        "pinned_to_one_core": pinned(consumers),
        "batch_size": args.batch_size,
        "events": args.events,
        "rows_per_s": args.events / drain_s,
        "cpu_s": cpu,
        "redis_cpu_s": redis_cpu,
        "rows_per_cpu_s": args.events / cpu if cpu else None,
        "paced_rate": rate,
        "paced_events": int(sent),
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
        "max_ms": float(latency.max()),
        "load_1min": os.getloadavg()[0],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from model import store

    with tempfile.TemporaryDirectory(prefix="stream-bench-") as temp:
        work = Path(temp)
        with cores(LOAD_CORE):
            tag, home = prepare_model(None, work, name="bench")
            loaded = store.load(tag)
            rows = sample_rows(store.load_reference(tag), loaded.schema.names, 1000)
            bodies = [json.dumps(list(row)).encode() for row in rows.tolist()]
            body = work / "predict.json"
            body.write_text(json.dumps({"instances": [rows[0].tolist()]}))
            points = []
            for count in (1, 2):
                http = http_point(home, tag, count, body, args, work)
                print(json.dumps(http), flush=True)
                points.append(http)
                redis_server = RedisServer(
                    work / f"redis-{count}", appendonly=True, fsync="everysec"
                )
                try:
                    stream = stream_point(
                        redis_server, home, tag, count, http["rows_per_s"], bodies, args, work
                    )
                finally:
                    redis_server.stop()
                print(json.dumps(stream), flush=True)
                points.append(stream)
    return {
        "produced_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": tag,
        "machine": machine_info(),
        "settings": vars(args) | {"out": _shown(args.out)},
        "points": points,
        "ratios": ratios(points),
    }


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(p["system"], p.get("workers") or p.get("consumers")): p for p in points}
    compared = []
    for count in (1, 2):
        http, stream = by.get(("http", count)), by.get(("stream", count))
        if http and stream:
            compared.append(
                {
                    "processes": count,
                    "rows_per_s_ratio": stream["rows_per_s"] / http["rows_per_s"],
                    "rows_per_cpu_s_ratio": (
                        stream["rows_per_cpu_s"] / http["rows_per_cpu_s"]
                        if stream["rows_per_cpu_s"] and http["rows_per_cpu_s"]
                        else None
                    ),
                    # redis-server's CPU counted on the stream's side too
                    "rows_per_cpu_s_with_redis_ratio": (
                        stream["events"]
                        / (stream["cpu_s"] + stream["redis_cpu_s"])
                        / http["rows_per_cpu_s"]
                        if http["rows_per_cpu_s"]
                        else None
                    ),
                }
            )
    return compared


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    settings = result["settings"]
    lines = [
        "# Stream scoring against HTTP /predict",
        "",
        f"Produced by `python -m bench.stream_bench` at {result['produced_at']} on "
        f"`{result['model']}` (30 numeric features), every point in the same run.",
        "",
        f"- Machine: {machine['cores']} cores, {machine['cpu_model']}; "
        f"load average (1, 5, 15 min) at start {machine['load_average_start']}",
        f"- /predict: wrk, {settings['connections']} connections, one-row JSON bodies, "
        f"{settings['duration']} s after {settings['warmup']} s of warm-up",
        f"- Stream: {settings['events']:,} events drained (STREAM_BATCH_SIZE "
        f"{settings['batch_size']}); latency with events produced for {settings['duration']} s "
        "at the rate /predict reached with as many processes; redis-server with AOF "
        "(appendfsync everysec)",
        "- One process: the system measured is pinned to one core, wrk, redis-server and "
        "the producer to the other. Two: all share both cores.",
        "",
        "| processes | path | rows/s | p50 ms | p99 ms | CPU s | rows per CPU s | redis CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result["points"]:
        count = p.get("workers") or p.get("consumers")
        path = (
            f"`/predict` (WORKERS={count})"
            if p["system"] == "http"
            else f"stream ({count} consumer{'s' if count > 1 else ''}; latency at "
            f"{p['paced_rate']:,.0f} events/s)"
        )
        redis_cpu = f"{p['redis_cpu_s']:.1f}" if "redis_cpu_s" in p else "-"
        lines.append(
            f"| {count} | {path} | {p['rows_per_s']:,.0f} | {p['p50_ms']:.1f} | "
            f"{p['p99_ms']:.1f} | {p['cpu_s']:.1f} | {p['rows_per_cpu_s'] or 0:,.0f} | "
            f"{redis_cpu} |"
        )
    lines += [
        "",
        "| processes | stream rows/s ÷ /predict rows/s | per CPU second | per CPU second, "
        "redis-server's counted |",
        "|---:|---:|---:|---:|",
    ]

    def times(value: float | None) -> str:
        return f"{value:.2f}x" if value else "n/a"

    for r in result["ratios"]:
        lines.append(
            f"| {r['processes']} | {times(r['rows_per_s_ratio'])} | "
            f"{times(r['rows_per_cpu_s_ratio'])} | "
            f"{times(r.get('rows_per_cpu_s_with_redis_ratio'))} |"
        )
    lines += [
        "",
        "Rows per CPU second count the measured processes only (the server's tree, the "
        "consumers); redis-server's CPU is listed apart. Latency of the stream is from the "
        "Redis id of an event to the Redis id of its result (milliseconds, Redis's clock): "
        "queueing in the stream included, the producer's own time not. wrk's latency is a "
        "closed loop's at the given connections. Other jobs may share the machine (see the "
        "load average): compare the paths within one run, not with other runs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "stream.md").write_text(markdown(result))
    for r in result["ratios"]:
        print(f"{r['processes']} process(es): stream {r['rows_per_s_ratio']:.2f}x /predict rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
