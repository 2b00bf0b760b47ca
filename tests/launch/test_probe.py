"""The data probe's own failures: what the caller hears, and what only the control plane's log keeps."""

from __future__ import annotations

import logging

import pytest

from florist_grpc.launch import probe
from florist_grpc.launch.probe import ProbeFailed, probe_files


def test_a_failed_probe_says_how_it_ended_without_quoting_its_output_which_stays_in_the_log_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(probe, "PROBE_MODULE", "tests.launch.failing_probe")
    caplog.set_level(logging.DEBUG, logger="florist_grpc.launch.probe")
    with pytest.raises(ProbeFailed) as raised:
        probe_files([("/data/c0.pt", "")], timeout=60)
    assert "TOPSECRET" not in str(raised.value)
    assert str(raised.value).startswith("the data probe exited with code 3")
    (logged,) = [r for r in caplog.records if "TOPSECRET" in r.getMessage()]
    assert logged.levelno == logging.DEBUG
