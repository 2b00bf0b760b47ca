"""Load generators that run in their own processes (so they do not share the server's GIL).

python -m bench.load subscribe ADDRESS JOB_ID STREAMS   -> prints "ready", then per stream the arrival time of
                                                           every report index seen in an event (JSON)
python -m bench.load report REDIS_URL RATE SECONDS UUID... -> paced SET+PUBLISH of {"t": ns, "i": n} reports;
                                                           prints every send time (JSON)
python -m bench.load waves REDIS_URL WAVES UUIDS_FILE   -> WAVES rounds of one distinct report per uuid, unpaced
python -m bench.load rounds REDIS_URL ROUNDS PAUSE SERVER_UUID CLIENT_UUID... -> the reports FL4Health writes for
                                                           ROUNDS rounds, one every PAUSE seconds
python -m bench.load hold ADDRESS JOB_ID STREAMS        -> opens STREAMS streams, prints "open" once the server
                                                           confirmed them all, then reads them to the end
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import grpc
import redis

from florist_grpc.fl.reporter import RedisReporter
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.testing.simulation import SimulatedJob, play_fl4health_rounds

STREAMS_PER_CHANNEL = 100


async def subscribe(address: str, job_id: str, streams: int) -> None:
    channels = [
        grpc.aio.insecure_channel(address) for _ in range((streams + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    arrivals: list[list[tuple[int, int]]] = [[] for _ in range(streams)]  # per stream: (report index, arrival ns)
    counts: list[int] = []
    gaps = 0
    first_event = asyncio.Event()
    opened = 0

    async def one(i: int) -> None:
        nonlocal opened, gaps
        stub = pb_grpc.TrainingServiceStub(channels[i // STREAMS_PER_CHANNEL])
        last, n = 0, 0
        async for response in stub.StreamMetrics(pb.StreamMetricsRequest(job_id=job_id)):
            now = time.time_ns()
            event = response.event
            gaps += event.sequence != last + 1
            last, n = event.sequence, n + 1
            if n == 1:
                opened += 1
                if opened == streams:
                    first_event.set()
            index = event.patch.fields.get("i")
            if index is not None:
                arrivals[i].append((int(index.number_value), now))
        counts.append(n)

    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    await first_event.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    summary = {"events_per_stream": min(counts), "events_per_stream_max": max(counts), "gaps": gaps}
    print(json.dumps({"arrivals": arrivals, **summary}), flush=True)
    for channel in channels:
        await channel.close(None)


def _core_reason(debug: str) -> str:
    """The grpc core description of why a call ended, without the per-call timestamps and addresses."""
    match = re.search(r'(grpc_message|description):"([^"]*)"', debug or "")
    return match.group(2) if match else (debug or "")[:120]


async def hold(address: str, job_id: str, streams: int) -> None:
    channels = [grpc.aio.insecure_channel(address) for _ in range(-(-streams // STREAMS_PER_CHANNEL))]
    stubs = [pb_grpc.TrainingServiceStub(channels[i // STREAMS_PER_CHANNEL]) for i in range(streams)]
    began = time.monotonic()
    calls = [stub.StreamMetrics(pb.StreamMetricsRequest(job_id=job_id)) for stub in stubs]
    await asyncio.gather(*(call.initial_metadata() for call in calls))
    seconds_to_open = time.monotonic() - began  # from the calls made to the server's last confirmation
    print("open", flush=True)
    resumed = 0
    cut_after: dict[int, int] = {}  # last sequence received when a call was cut -> how many
    why: dict[str, int] = {}  # what grpc core says cut a call (debug_error_string, trimmed) -> how many

    async def drain(i: int) -> int:
        """Read to the terminal event, resuming with after_sequence if the call is cut (as a real client does)."""
        nonlocal resumed
        call, last = calls[i], 0
        while True:
            try:
                async for response in call:
                    last = response.event.sequence
                return last
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                    raise
                resumed += 1
                cut_after[last] = cut_after.get(last, 0) + 1
                reason = f"{exc.code().name}: {exc.details()} | {_core_reason(exc.debug_error_string())}"
                why[reason] = why.get(reason, 0) + 1
                call = stubs[i].StreamMetrics(pb.StreamMetricsRequest(job_id=job_id, after_sequence=last))

    last_sequences = await asyncio.gather(*(drain(i) for i in range(streams)))
    print(
        json.dumps(
            {
                "streams": streams,
                "seconds_to_open": seconds_to_open,
                "min_events": min(last_sequences),
                "resumed": resumed,
                "cut_after": cut_after,
                "why": why,
            }
        ),
        flush=True,
    )
    for channel in channels:
        await channel.close(None)


def report(url: str, rate: float, seconds: float, uuids: list[str]) -> None:
    client = redis.Redis.from_url(url)
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    sent: list[int] = []
    while (elapsed := time.perf_counter() - start) < seconds:
        uuid = uuids[n % len(uuids)]
        sent.append(time.time_ns())
        body = json.dumps({"t": sent[-1], "i": n})
        pipe = client.pipeline(transaction=False)
        pipe.set(uuid, body)
        pipe.publish(uuid, uuid)
        pipe.execute()
        n += 1
        delay = n * interval - elapsed
        if delay > 0:
            time.sleep(delay)  # pacing the load generator, not synchronisation
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - start}), flush=True)


def waves(url: str, count: int, uuids: list[str]) -> None:
    client = redis.Redis.from_url(url)
    first = time.time()
    for wave in range(count):
        for start in range(0, len(uuids), 200):
            pipe = client.pipeline(transaction=False)
            for uuid in uuids[start : start + 200]:
                pipe.set(uuid, json.dumps({"wave": wave, "payload": {"val - loss": wave / 10}}))
                pipe.publish(uuid, uuid)
            pipe.execute()
    print(json.dumps({"first_report": first, "last_report": time.time()}), flush=True)


class PacedReporter(RedisReporter):
    """A reporter that waits `pause` seconds after each report, as an FL process does between its reports."""

    def __init__(self, url: str, run_uuid: str, pause: float) -> None:
        parsed = urlparse(url)
        super().__init__(
            f"{parsed.hostname}:{parsed.port}", run_uuid, unquote(parsed.username or ""), unquote(parsed.password or "")
        )
        self.pause = pause
        self.count = 0

    def _publish(self) -> None:
        super()._publish()
        self.count += 1
        time.sleep(self.pause)  # pacing the load generator, not synchronisation


def rounds(url: str, count: int, pause: float, server_uuid: str, client_uuids: list[str]) -> None:
    job = SimulatedJob("", PacedReporter(url, server_uuid, pause), [PacedReporter(url, u, pause) for u in client_uuids])
    began = time.perf_counter()
    play_fl4health_rounds(job, count)
    reports = sum(r.count for r in job.reporters.values() if isinstance(r, PacedReporter))
    print(json.dumps({"reports": reports, "seconds": time.perf_counter() - began}), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "subscribe":
        asyncio.run(subscribe(args[0], args[1], int(args[2])))
    elif command == "report":
        report(args[0], float(args[1]), float(args[2]), args[3:])
    elif command == "hold":
        asyncio.run(hold(args[0], args[1], int(args[2])))
    elif command == "rounds":
        rounds(args[0], int(args[1]), float(args[2]), args[3], args[4:])
    elif command == "waves":
        waves(args[0], int(args[1]), json.loads(Path(args[2]).read_text()))
    else:
        sys.exit(__doc__)
