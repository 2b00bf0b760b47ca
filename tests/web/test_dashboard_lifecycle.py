"""The dashboard's server lives and dies with the control plane: a browser that leaves ends its streams' work,
SIGTERM ends open browser streams and `serve` exits 0, a stop ends them at once (UNAVAILABLE, for the page to
resume from), and the page's files are served with their types."""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from florist_grpc.api.connect_calls import STOPPING
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_service_connect
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_connect as training_connect
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing import simulation
from florist_grpc.testing.certificates import issue_pki
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.tls_files import TLSConfig
from tests.e2e.conftest import serve
from tests.helpers import job_message, wait_for
from tests.web.conftest import Dashboard, headers, write_auth_file


def test_a_browser_that_leaves_ends_its_subscription(dashboard: Dashboard) -> None:
    job = simulation.create_running(dashboard.plane.plane, n_clients=1)
    hub = dashboard.plane.plane.hub
    client = training_connect.TrainingServiceClientSync(dashboard.url)
    stream = client.stream_metrics(training_pb.StreamMetricsRequest(job_id=job.job_id), headers=headers("viewer"))
    next(stream)  # the job's first event: the stream is subscribed
    assert hub.subscriber_count(job.job_id) == 1
    stream.close()  # type: ignore[attr-defined]
    client.close()
    wait_for(lambda: hub.subscriber_count(job.job_id) == 0, 10, "the subscription to end")


@pytest.mark.timeout(120)
def test_sigterm_ends_browser_streams_and_serve_exits_zero(tmp_path: Path) -> None:
    port = free_service_port()
    served = serve(tmp_path / "florist", "--http-port", str(port))
    url = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{url}/", timeout=10) as page:
        assert page.headers["content-type"].startswith("text/html")
    job = job_service_connect.JobServiceClientSync(url).create_job(job_pb.CreateJobRequest(job=job_message(["/d"]))).job
    ended = threading.Event()

    def follow() -> None:
        # The job never starts: this stream would follow it forever.
        client = training_connect.TrainingServiceClientSync(url)
        with contextlib.suppress(ConnectError):  # ended by the shutdown, as it must be
            list(client.stream_metrics(training_pb.StreamMetricsRequest(job_id=job.id)))
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    server = psutil.Process(served.process.pid)

    def stream_connected() -> bool:
        return any(c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in server.net_connections())

    wait_for(stream_connected, 10, "the browser's stream to be connected")
    began = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(30) == 0
    assert time.monotonic() - began < 15
    assert ended.wait(10)


def test_with_tls_the_dashboard_speaks_https_with_the_same_certificate(tmp_path: Path) -> None:
    pki = issue_pki(tmp_path)
    port = free_service_port()
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key), http_port=port, launcher_pool=False
    )
    try:
        trusted = ssl.create_default_context(cafile=str(pki.ca))
        with urllib.request.urlopen(f"https://localhost:{port}/", context=trusted, timeout=10) as page:
            assert page.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plaintext HTTP is not served
            urllib.request.urlopen(f"http://localhost:{port}/", timeout=10)
    finally:
        plane.stop()


@pytest.mark.timeout(60)
def test_a_stop_ends_open_browser_streams_at_once_as_unavailable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", auth_file=write_auth_file(tmp_path / "tokens"), http_port=free_service_port()
    )
    url = f"http://127.0.0.1:{plane.settings.http_port}"
    client = job_service_connect.JobServiceClientSync(url)
    watch = client.watch_jobs(job_pb.WatchJobsRequest(), headers=headers("viewer"))
    assert next(watch).change.type == job_pb.JOB_CHANGE_TYPE_BOOKMARK  # open, and never ending by itself
    ended: list[ConnectError] = []

    def follow() -> None:
        try:
            list(watch)
        except ConnectError as exc:
            ended.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    began = time.monotonic()
    plane.stop()
    # Not the 5 s grace a unary call in flight would get: a watch would only be cut at its end, with an error.
    assert time.monotonic() - began < plane.settings.timeouts.shutdown_grace_seconds
    reader.join(10)
    assert [(e.code, e.message) for e in ended] == [(Code.UNAVAILABLE, STOPPING)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a stream cut mid-response"
