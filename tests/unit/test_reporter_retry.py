"""The FL processes' report retries (redis-py Retry) give up within their budget, below the readiness timeout."""

from __future__ import annotations

import time

import pytest

from florist_grpc.config import Timeouts
from florist_grpc.fl.reporter import SOCKET_TIMEOUT_SECONDS, RedisReporter, ReportFailed, report_retry
from florist_grpc.net import free_service_port


def worst_case_seconds(budget: float) -> float:
    retry = report_retry(budget)
    backoff = retry._backoff
    retries = retry._retries
    return (retries + 1) * SOCKET_TIMEOUT_SECONDS + sum(backoff.compute(n) for n in range(1, retries + 1))


def test_the_retry_budget_is_below_the_readiness_timeout_and_covers_a_redis_restart() -> None:
    timeouts = Timeouts()
    assert timeouts.report_retry_seconds < timeouts.server_ready_seconds
    assert worst_case_seconds(timeouts.report_retry_seconds) <= timeouts.report_retry_seconds
    # Refused connections cost nothing: the waits alone outlast a few health checks (a supervisor restart).
    retry = report_retry(timeouts.report_retry_seconds)
    waits = sum(retry._backoff.compute(n) for n in range(1, retry._retries + 1))
    assert waits > 4 * timeouts.health_check_seconds


def test_a_reporter_whose_redis_is_gone_fails_with_the_cause_within_its_budget() -> None:
    port = free_service_port()
    reporter = RedisReporter(f"127.0.0.1:{port}", "u" * 32, retry_seconds=3.0)
    began = time.monotonic()
    with pytest.raises(ReportFailed, match=f"127.0.0.1:{port}"):
        reporter.report_values(fit_start="now")
    assert time.monotonic() - began <= 3.0 + 1.0
