"""The per-source read throttle: at most one read per interval, deferred (never dropped) when too early; the interval
grows with a job's subscribers and with the sources reporting."""

from __future__ import annotations

import pytest

from florist_grpc.metrics.throttle import ReadThrottle


def test_a_source_is_read_at_once_then_deferred_until_its_interval_passed() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.01)
    assert throttle.admit("u", "j", now=100.0)
    assert not throttle.admit("u", "j", now=100.004)
    assert throttle.next_due() == 100.01
    assert throttle.release_due(now=100.005) == []
    assert throttle.release_due(now=100.01) == ["u"]
    assert throttle.next_due() is None
    assert throttle.admit("u", "j", now=100.01)


def test_sources_are_throttled_independently() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.01)
    assert throttle.admit("a", "j", now=1.0)
    assert throttle.admit("b", "j", now=1.001)


def test_the_interval_grows_with_a_jobs_subscribers_beyond_a_hundred() -> None:
    counts = {"busy": 1000, "quiet": 50}
    throttle = ReadThrottle(subscribers=counts.__getitem__, min_interval=0.01)
    assert throttle.admit("a", "busy", now=0.0) and throttle.admit("b", "quiet", now=0.0)
    assert throttle.admit("b", "quiet", now=0.011)  # b's first read does not count as reporting
    assert not throttle.admit("a", "busy", now=0.05)  # 1,000 subscribers: 10x the interval
    assert throttle.admit("a", "busy", now=0.101)


def test_the_sources_reporting_share_one_read_budget() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.01)
    sources = [f"s{i}" for i in range(5)]
    assert all(throttle.admit(s, "j", now=0.0) for s in sources)  # first reads (subscriptions): at once, not counted
    for i, s in enumerate(sources):  # read again one after the other: each one read again slows the next
        assert throttle.admit(s, "j", now=0.0101 * (i + 1))
    assert not throttle.admit("s0", "j", now=0.059)  # 5 sources reporting: each at most every 5 x 10 ms
    assert throttle.next_due() == pytest.approx(0.0101 + 0.05)
    assert throttle.admit("s0", "j", now=0.0602)
    throttle.forget(sources[2:])  # their job ended: the two left share the budget
    assert throttle.admit("s1", "j", now=0.061)  # read again at 0.0202: due at 0.0402 with 2 sources (5: 0.0702)
    assert not throttle.admit("s1", "j", now=0.07)
    assert throttle.admit("s1", "j", now=0.0811)


def test_a_source_no_longer_counts_once_it_was_not_read_again_for_a_second() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.01)
    for now in (0.0, 0.011):
        assert throttle.admit("quiet", "j", now=now) and throttle.admit("busy", "j", now=now)
    assert not throttle.admit("busy", "j", now=0.025)  # two reporting: every 20 ms
    assert throttle.admit("busy", "j", now=1.02)  # neither was read again in the last second
    assert throttle.next_due() is None  # busy's deferred read was made by this one
    assert throttle.admit("busy", "j", now=1.035)  # "quiet" was last read again at 0.011: only "busy" counts


def test_sources_read_only_once_do_not_slow_the_one_that_reports() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.01)
    assert all(throttle.admit(f"idle{i}", "j", now=0.0) for i in range(10))
    assert throttle.admit("busy", "j", now=0.0)
    assert all(throttle.admit("busy", "j", now=0.0101 * n) for n in range(1, 20))


def test_forgotten_sources_leave_nothing_deferred() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=1.0)
    throttle.admit("u", "j", now=0.0)
    throttle.admit("u", "j", now=0.5)
    throttle.forget(["u"])
    assert throttle.next_due() is None
    assert throttle.admit("u", "j", now=0.6)
