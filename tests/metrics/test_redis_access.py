"""The embedded Redis is closed: a password for the control plane, and FL runs that may only touch their own key.

After a job ends, its runs' keys expire and their users are dropped.
"""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for


def port_of(plane: ControlPlaneThread) -> int:
    return urlparse(plane.plane.redis_url).port or 0


def test_without_a_password_redis_answers_noauth(plane: ControlPlaneThread) -> None:
    with socket.create_connection(("127.0.0.1", port_of(plane)), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH")
    anonymous = redis.Redis(port=port_of(plane), protocol=2)
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("anything", "forged")
    anonymous.close()


def test_the_password_is_kept_in_the_data_dir_readable_by_the_owner_only(plane: ControlPlaneThread) -> None:
    redis_dir = plane.settings.data_dir / "redis"
    for name in ("secret", "users.acl"):
        assert stat.S_IMODE((redis_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(redis_dir.stat().st_mode) == 0o700
    assert urlparse(plane.plane.redis_url).password == (redis_dir / "secret").read_text().strip()
    assert (redis_dir / "secret").read_text().strip() not in (redis_dir / "users.acl").read_text()  # hashed


def test_a_run_may_only_set_get_and_publish_its_own_key_and_channel(plane: ControlPlaneThread) -> None:
    users = RunUsers(plane.plane.redis_url, 3600, per_run_users=True)
    mine, other = "a" * 32, "b" * 32
    credentials = users.create([mine, other])
    run = redis.Redis(port=port_of(plane), username=credentials[mine].username, password=credentials[mine].password)
    pipe = run.pipeline(transaction=True)  # exactly what the reporter does
    pipe.set(mine, "{}")
    pipe.publish(mine, mine)
    pipe.execute()
    assert run.get(mine) == b"{}"
    refused = [
        lambda: run.config_set("dir", "/tmp"),
        run.save,
        run.bgsave,
        lambda: run.execute_command("DEBUG", "SLEEP", "0"),
        run.flushall,
        lambda: run.set(other, '{"fit_end": "forged"}'),
        lambda: run.get(other),
        lambda: run.publish(other, other),
        lambda: run.keys("*"),
        lambda: run.execute_command("ACL", "SETUSER", credentials[mine].username, "+@all"),
    ]
    for command in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()
    run.close()
    users.close()


def test_the_control_plane_itself_cannot_write_files(plane: ControlPlaneThread) -> None:
    control = redis.Redis.from_url(plane.plane.redis_url)
    for command in (lambda: control.config_set("dir", "/tmp"), control.save):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()
    control.close()


def test_an_ended_jobs_keys_expire_and_its_run_users_are_dropped(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    users = RunUsers(plane.plane.redis_url, 3600, per_run_users=True)
    uuids = [r.uuid for r in job.reporters.values()]
    users.create(uuids)
    simulation.play_rounds(job, 1)
    control = redis.Redis.from_url(plane.plane.redis_url)
    assert all(control.ttl(u) == -1 for u in uuids)  # kept while the job runs
    simulation.finish(plane.plane, job)
    ttl = plane.settings.timeouts.report_key_ttl_seconds
    wait_for(lambda: all(0 < control.ttl(u) <= ttl for u in uuids), 10, "the keys to have a TTL")
    wait_for(lambda: all(control.acl_getuser(f"run-{u}") is None for u in uuids), 10, "the users to be dropped")
    # The reports themselves were persisted before: the store has them all.
    stored = plane.get(job.job_id)
    assert stored.server_metrics["fit_end"] == "end"
    control.close()
    users.close()


def test_with_a_redis_url_without_a_password_a_florist_tool_reads_and_follows_reports_until_they_expire(
    redis_url: str, tmp_path: Path
) -> None:
    # What FLorist's get_from_redis and get_subscriber do: connect by host and port alone, GET the run uuid,
    # SUBSCRIBE to the channel of the same name.
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", redis_url=redis_url)
    try:
        job = simulation.create_running(plane.plane, n_clients=1)
        florist = redis.Redis(port=urlparse(redis_url).port or 0)
        subscriber = florist.pubsub()
        subscriber.subscribe(job.server.uuid)
        simulation.play_fl4health_rounds(job, 1)
        assert json.loads(florist.get(job.server.uuid) or b"{}") == job.server.report
        assert json.loads(florist.get(job.clients[0].uuid) or b"{}") == job.clients[0].report
        confirmed, update = subscriber.get_message(timeout=5), subscriber.get_message(timeout=5)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        assert update is not None and (update["type"], update["channel"]) == ("message", job.server.uuid.encode())
        simulation.finish(plane.plane, job)
        ttl = plane.settings.timeouts.report_key_ttl_seconds
        wait_for(lambda: 0 < florist.ttl(job.server.uuid) <= ttl, 10, "the key to expire after the job")
        subscriber.close()
        florist.close()
    finally:
        plane.stop()
