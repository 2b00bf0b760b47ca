"""`serve --log-format json --metrics-port N`: every log line is a JSON object, audit lines included, and
Prometheus text is served, as an operator would run it."""

from __future__ import annotations

import json
import logging
import sys
import urllib.request
from pathlib import Path

import grpc

from florist_grpc.cli.log_setup import JsonFormatter
from florist_grpc.net import free_port
from florist_grpc.proto.florist.v1 import job_service_pb2, job_service_pb2_grpc
from tests.e2e.conftest import serve, stop
from tests.helpers import job_message


def test_json_logs_with_an_audit_line_and_a_metrics_endpoint(tmp_path: Path) -> None:
    port = free_port()
    served = serve(tmp_path / "florist", "--log-format", "json", "--metrics-port", str(port))
    with grpc.insecure_channel(served.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        job = stub.CreateJob(job_service_pb2.CreateJobRequest(job=job_message(["/d"])), timeout=10).job
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    handled = 'grpc_server_handled_total{grpc_code="OK",grpc_method="CreateJob",grpc_service="florist.v1.JobService",'
    assert handled + 'grpc_type="unary"} 1.0' in text
    assert 'florist_jobs{state="NOT_STARTED"} 1.0' in text
    assert stop(served) == 0
    lines = (tmp_path / "florist-serve.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses
    audit = [e for e in entries if e["logger"] == "florist_grpc.audit"]
    assert len(audit) == 1
    assert audit[0]["who"] == "anonymous" and audit[0]["job_id"] == job.id and audit[0]["code"] == "OK"
    assert audit[0]["method"] == "/florist.v1.JobService/CreateJob" and audit[0]["level"] == "INFO"


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("job1",), exc_info=sys.exc_info())
    record.job_id = "job1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed job1" and entry["job_id"] == "job1" and entry["level"] == "ERROR"
    assert "ValueError: bad" in entry["exception"]
