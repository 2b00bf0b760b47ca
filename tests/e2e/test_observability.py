"""`serve --log-format json --metrics-port N` and `agent --log-format json`, as an operator runs them: every line
either process writes is a JSON object (the ready lines, audit lines with who and role, grpc's own C-core lines and
a failed start included), and Prometheus text is served."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc

from florist_grpc.cli.log_setup import JsonFormatter
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_service_pb2, job_service_pb2_grpc
from florist_grpc.testing.plane import ControlPlaneThread
from tests.e2e.conftest import BIN, serve, stop
from tests.e2e.sites import start_agent
from tests.helpers import job_message


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as one JSON object (fails on the first line that is not)."""
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def test_json_logs_with_a_ready_line_an_audit_line_and_a_metrics_endpoint(tmp_path: Path) -> None:
    port = free_service_port()
    served = serve(tmp_path / "florist", "--log-format", "json", "--metrics-port", str(port))
    ready = json.loads(served.ready_line)
    assert ready["message"] == f"florist-grpc listening on {served.address}" and ready["level"] == "INFO"
    with grpc.insecure_channel(served.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        job = stub.CreateJob(job_service_pb2.CreateJobRequest(job=job_message(["/d"])), timeout=10).job
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    handled = 'grpc_server_handled_total{grpc_code="OK",grpc_method="CreateJob",grpc_service="florist.v1.JobService",'
    assert handled + 'grpc_type="unary"} 1.0' in text
    assert 'florist_jobs{state="NOT_STARTED"} 1.0' in text
    assert stop(served) == 0
    assert served.process.stdout is not None
    assert json_lines(served.process.stdout.read()) == []  # nothing else on stdout
    entries = json_lines((tmp_path / "florist-serve.log").read_text())
    audit = [e for e in entries if e["logger"] == "florist_grpc.audit"]
    assert len(audit) == 1
    assert (audit[0]["who"], audit[0]["role"]) == ("anonymous", "none")
    assert audit[0]["job_id"] == job.id and audit[0]["code"] == "OK"
    assert audit[0]["method"] == "/florist.v1.JobService/CreateJob" and audit[0]["level"] == "INFO"


def test_a_failed_start_is_json_too_grpc_core_lines_included(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve_json = ["serve", "--port", str(port), "--data-dir", str(tmp_path), "--log-format", "json"]
        done = subprocess.run(
            [str(BIN / "florist-grpc"), *serve_json],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            # The port in use is found before gRPC tries it (and logs about it); at this verbosity gRPC's C core
            # still says a line of its own: `W1205 ... log.cc:110] Log level DEBUG is not suitable ...`.
            env={**os.environ, "GRPC_VERBOSITY": "debug"},
        )
    assert done.returncode != 0 and done.stdout == ""
    entries = json_lines(done.stderr)
    core = [e for e in entries if e["logger"] == "florist_grpc.stderr" and "log.cc" in e["message"]]
    assert core and core[0]["level"] == "WARNING", done.stderr
    assert any(str(port) in e["message"] and e["level"] == "ERROR" for e in entries if e not in core), done.stderr


def test_the_agents_connected_line_is_json(tmp_path: Path) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist")
    root = tmp_path / "site"
    root.mkdir()
    try:
        agent = start_agent(plane.address, "site-j", root, "--log-format", "json", "--no-launcher-pool", wait=False)
        line = agent.wait_line("connected to")
        assert agent.stop() == 0
    finally:
        plane.stop()
    entry = json.loads(line)
    assert entry["message"] == f"florist-grpc agent site-j connected to {plane.address}"
    assert entry["agent"] == "site-j" and entry["logger"] == "florist_grpc.ready"
    json_lines((tmp_path / "site-j-agent.log").read_text())


def test_warnings_uncaught_exceptions_and_raw_stderr_writes_become_json_objects(tmp_path: Path) -> None:
    program = """
import os, threading, warnings
from florist_grpc.cli.log_setup import announce, configure
configure("json")
announce("ready now", port=1)
warnings.warn("careful")
thread = threading.Thread(target=lambda: 1 / 0, name="worker")
thread.start()
thread.join()
os.write(2, b"W0101 00:00:00.000000 1 core.cc:1] from C\\nplain\\n")
raise RuntimeError("the end")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False, env=os.environ
    )
    assert done.returncode == 1
    [ready] = json_lines(done.stdout)
    assert (ready["message"], ready["port"]) == ("ready now", 1)
    entries = {(e["logger"], e["level"], e["message"].splitlines()[0]): e for e in json_lines(done.stderr)}
    assert set(entries) >= {
        ("py.warnings", "WARNING", next(k[2] for k in entries if "UserWarning: careful" in k[2])),
        ("florist_grpc", "ERROR", "uncaught ZeroDivisionError in thread worker"),
        ("florist_grpc.stderr", "WARNING", "W0101 00:00:00.000000 1 core.cc:1] from C"),
        ("florist_grpc.stderr", "WARNING", "plain"),
        ("florist_grpc", "CRITICAL", "uncaught RuntimeError"),
    }
    assert "RuntimeError: the end" in entries[("florist_grpc", "CRITICAL", "uncaught RuntimeError")]["exception"]


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("job1",), exc_info=sys.exc_info())
    record.job_id = "job1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed job1" and entry["job_id"] == "job1" and entry["level"] == "ERROR"
    assert "ValueError: bad" in entry["exception"]
