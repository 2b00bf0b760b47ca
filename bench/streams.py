"""Concurrent StreamMetrics streams one `florist-grpc serve` process holds, and its memory while holding them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import load_process, read_json_line
from bench.stats import record
from florist_grpc.api.convert import dict_to_struct
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing.history import create_finished

GOAL_STREAMS = 2000
GOAL_RSS_MIB = 1024
# A finished 400-round job (issue 18): its whole history is replayed to every stream at once.
LONG_JOB_EVENTS = 1376
REPO = Path(__file__).resolve().parent.parent
GRPC_JS = REPO / "clients" / "node" / "node_modules" / "@grpc"


def holder_process(holder: str, address: str, job_id: str, count: int) -> subprocess.Popen[str]:
    """A process holding `count` streams: grpc-python (bench.load hold) or grpc-js (bench/hold.js)."""
    if holder == "python":
        return load_process("hold", address, job_id, str(count))
    env = {**os.environ, "NODE_PATH": str(REPO / "clients" / "node" / "node_modules")}
    return subprocess.Popen(
        ["node", str(REPO / "bench" / "hold.js"), address, job_id, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@contextmanager
def serve_process(directory: str, *flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`florist-grpc serve` on a free port of its own and the address it listens on; stopped (SIGTERM) after the
    block, whatever happened in it."""
    serve = subprocess.Popen(
        [str(Path(sys.executable).parent / "florist-grpc"), "serve", "--port", "0", "--data-dir", directory, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert serve.stdout is not None
        yield serve, serve.stdout.readline().strip().rsplit(" ", 1)[-1]
    finally:
        _stop(serve)


@contextmanager
def holding(holders: list[subprocess.Popen[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """The holder processes, ended after the block if something went wrong before they finished."""
    try:
        yield holders
    finally:
        for process in holders:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def streams(count: int, processes: int = 4, holder: str = "python") -> None:
    with (
        tempfile.TemporaryDirectory(prefix="florist-bench-") as directory,
        serve_process(directory) as (serve, address),
    ):
        server = psutil.Process(serve.pid)
        idle_mib = server.memory_info().rss / 2**20
        with grpc.insecure_channel(address) as channel:
            # A one-round job on a small synthetic set: starting it sends every stream its few events and ends it.
            # (It used to be a job whose data was missing, which failed at once; StartTraining now checks the data
            # first and launches nothing, so no stream would ever get an event.)
            data = write_synthetic(Path(directory) / "data", 1, samples_per_client=64)[0]
            job = job_pb2.Job(
                model="MLP",
                strategy="FEDAVG",
                optimizer="SGD",
                client_type="FEDAVG",
                server_config=dict_to_struct({"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1}),
                clients=[job_pb2.ClientInfo(data_path=str(data))],
            )
            created = (
                job_service_pb2_grpc.JobServiceStub(channel)
                .CreateJob(job_service_pb2.CreateJobRequest(job=job), timeout=10)
                .job
            )
            # Several client processes: one Python gRPC client process is itself the limit long before the server.
            started = [holder_process(holder, address, created.id, count // processes) for _ in range(processes)]
            with holding(started) as holders:
                for process in holders:
                    assert process.stdout is not None and process.stdout.readline().strip() == "open"
                holding_mib = server.memory_info().rss / 2**20
                training = pb_grpc.TrainingServiceStub(channel)
                training.StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=60)
                results = [read_json_line(holder) for holder in holders]
                for process in holders:
                    process.wait(60)
    record(
        "streams",
        impl="florist-grpc",
        holder=holder,
        streams=count,
        rss_idle_mib=idle_mib,
        rss_holding_mib=holding_mib,
        kib_per_stream=(holding_mib - idle_mib) * 1024 / count,
        all_received=min(r["min_events"] for r in results) >= 2,
        events=max(r["min_events"] for r in results),
        resumed=sum(r["resumed"] for r in results),
        cut_after=_merged([r["cut_after"] for r in results]),
        why=_merged([r.get("why", {}) for r in results]),
    )


class PeakRss:
    """The highest RSS of a process, sampled every 50 ms on a thread while the block runs."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process
        self.peak_mib = process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mib = max(self.peak_mib, self._process.memory_info().rss / 2**20)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def stream_calls(metrics_port: int) -> dict[str, int]:
    """StreamMetrics calls by status code, as the control plane's Prometheus endpoint counts them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "grpc_server_started_total" and labels.get("grpc_method") == "StreamMetrics":
                counts["started"] = int(sample.value)
            if sample.name == "grpc_server_handled_total" and labels.get("grpc_method") == "StreamMetrics":
                counts[labels["grpc_code"]] = int(sample.value)
    return counts


def replay(count: int, events: int = LONG_JOB_EVENTS, processes: int = 4, waves: int = 2) -> None:
    """`count` streams opened at once on a finished job of `events` events: each replays the whole history.

    Twice (`waves`) on the same server: what the first wave leaves behind in RSS is either reused by the second
    (bounded) or added to (a leak)."""
    with tempfile.TemporaryDirectory(prefix="florist-bench-") as directory:
        store = SqliteStore(Path(directory) / "florist.sqlite3")
        job_id = create_finished(store, events)
        store.close()
        metrics_port = free_service_port()
        with serve_process(directory, "--metrics-port", str(metrics_port)) as (serve, address):
            _replay_waves(psutil.Process(serve.pid), address, metrics_port, job_id, count, events, processes, waves)


def _replay_waves(
    server: psutil.Process,
    address: str,
    metrics_port: int,
    job_id: str,
    count: int,
    events: int,
    processes: int,
    waves: int,
) -> None:
    idle_mib = server.memory_info().rss / 2**20
    for wave in range(1, waves + 1):
        began = time.monotonic()
        started = [load_process("hold", address, job_id, str(count // processes)) for _ in range(processes)]
        with PeakRss(server) as peak, holding(started) as holders:
            for process in holders:
                assert process.stdout is not None and process.stdout.readline().strip() == "open"
            confirmed = time.monotonic() - began  # every call accepted and confirmed (initial metadata)
            results = [read_json_line(holder) for holder in holders]
            for process in holders:
                process.wait(60)
        seconds = time.monotonic() - began
        time.sleep(2)  # let the server's allocator settle before reading what it kept, not synchronisation
        record(
            "streams",
            case="replay",
            wave=wave,
            streams=count,
            events=events,
            seconds_to_confirm_all=confirmed,
            holder_seconds_to_open=max(r.get("seconds_to_open", 0.0) for r in results),
            seconds=seconds,
            every_stream_complete=min(r["min_events"] for r in results) == events,
            cut=sum(r["resumed"] for r in results),
            cut_after=_merged([r["cut_after"] for r in results]),
            why=_merged([r.get("why", {}) for r in results]),
            calls_counted=stream_calls(metrics_port),  # cumulative over the waves
            rss_idle_mib=idle_mib,
            rss_peak_mib=peak.peak_mib,
            rss_after_mib=server.memory_info().rss / 2**20,
            loadavg_1m=os.getloadavg()[0],
        )


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            out[str(key)] = out.get(str(key), 0) + n
    return out


def run(quick: bool = False) -> None:
    replay(500 if quick else GOAL_STREAMS)
    streams(1000 if quick else GOAL_STREAMS)
    # The same streams held by grpc-js: tells whether cut streams come from grpc-python's client.
    if (GRPC_JS / "grpc-js").is_dir():
        streams(1000 if quick else GOAL_STREAMS, holder="node")
    else:
        record("streams", holder="node", skipped=f"@grpc/grpc-js is not installed under {GRPC_JS.parent.parent}")
    if not quick:
        streams(5000)
