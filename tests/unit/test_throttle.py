"""The per-source read throttle: at most one read per interval, deferred (never dropped) when too early; the interval
grows with a job's subscribers and with the sources reporting."""

from __future__ import annotations

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
    assert not throttle.admit("a", "busy", now=0.05)  # 1,000 subscribers: 10x the interval
    assert throttle.admit("b", "quiet", now=0.02)  # 2 sources reporting: 2x
    assert throttle.admit("a", "busy", now=0.1)


def test_the_sources_reporting_share_one_read_budget() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.01)
    sources = [f"s{i}" for i in range(5)]
    assert all(throttle.admit(s, "j", now=0.0) for s in sources)  # a source's first report is read at once
    assert not throttle.admit("s0", "j", now=0.049)  # 5 sources: each at most every 5 x 10 ms
    assert throttle.next_due() == 0.05
    assert throttle.admit("s1", "j", now=0.05)
    throttle.forget(sources[2:])  # their job ended: the two left share the budget
    assert throttle.admit("s1", "j", now=0.07)
    assert not throttle.admit("s1", "j", now=0.089)


def test_forgotten_sources_leave_nothing_deferred() -> None:
    throttle = ReadThrottle(subscribers=lambda job_id: 0, min_interval=1.0)
    throttle.admit("u", "j", now=0.0)
    throttle.admit("u", "j", now=0.5)
    throttle.forget(["u"])
    assert throttle.next_due() is None
    assert throttle.admit("u", "j", now=0.6)
