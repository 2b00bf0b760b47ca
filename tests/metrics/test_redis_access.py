"""The embedded Redis is closed: a password for the control plane, and FL runs that may only touch their own key.

After a job ends, its runs' keys expire and their users are dropped.
"""

from __future__ import annotations

import json
import socket
import stat
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from florist_grpc.config import Limits, Timeouts
from florist_grpc.fl.reporter import RedisReporter, ReportFailed
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for


def port_of(plane: ControlPlaneThread) -> int:
    return urlparse(plane.plane.redis_url).port or 0


def admin_url(plane: ControlPlaneThread) -> str:
    embedded = plane.plane.embedded_redis
    assert embedded is not None
    return embedded.admin_url


def inspector(plane: ControlPlaneThread) -> redis.Redis:
    """A connection that may look at any key's TTL (made by the user manager; neither of ours may)."""
    admin = redis.Redis.from_url(admin_url(plane))
    admin.acl_setuser("inspector", enabled=True, passwords=["+inspect"], keys=["*"], commands=["+ttl", "+ping"])
    admin.close()
    return redis.Redis(port=port_of(plane), username="inspector", password="inspect")


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
    for name in ("secret", "admin-secret", "users.acl"):
        assert stat.S_IMODE((redis_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(redis_dir.stat().st_mode) == 0o700
    assert urlparse(plane.plane.redis_url).password == (redis_dir / "secret").read_text().strip()
    assert urlparse(admin_url(plane)).password == (redis_dir / "admin-secret").read_text().strip()
    for secret in ("secret", "admin-secret"):
        assert (redis_dir / secret).read_text().strip() not in (redis_dir / "users.acl").read_text()  # hashed


def test_a_run_may_only_set_get_and_publish_its_own_key_and_channel(plane: ControlPlaneThread) -> None:
    users = RunUsers(plane.plane.redis_url, 3600, admin_url(plane))
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


def test_the_control_user_cannot_make_a_user_or_read_outside_the_runs_keys(plane: ControlPlaneThread) -> None:
    # The connection that reads what sites wrote has no path to a full-power user, and sees run keys only.
    job = simulation.create_running(plane.plane, n_clients=1)
    simulation.play_rounds(job, 1)
    control = redis.Redis.from_url(plane.plane.redis_url)
    assert control.get(job.server.uuid) is not None  # what it is for: reading reports (by run uuid)
    refused = [
        lambda: control.execute_command("ACL", "SETUSER", "mallory", "on", ">pw", "~*", "&*", "+@all"),
        lambda: control.execute_command("ACL", "SETUSER", "florist", "+@all"),
        lambda: control.execute_command("ACL", "LOAD"),
        control.acl_list,
        lambda: control.config_get("*"),
        lambda: control.get("florist-secret"),
        lambda: control.set("not-a-run", "x"),
        lambda: control.keys("*"),
        control.scan,
        control.flushall,
        lambda: control.eval("return 1", 0),
        lambda: control.publish("not-a-run", "x"),
    ]
    for command in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()
    subscriber = control.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        subscriber.subscribe("not-a-run")
        subscriber.get_message(timeout=5)
    subscriber.close()
    admin = redis.Redis.from_url(admin_url(plane))
    assert admin.acl_getuser("mallory") is None  # nothing was made
    control.close()
    admin.close()


def test_the_user_manager_reads_and_writes_no_report(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    simulation.play_rounds(job, 1)
    admin = redis.Redis.from_url(admin_url(plane))
    for command in (lambda: admin.get(job.server.uuid), lambda: admin.set(job.server.uuid, "{}"), admin.flushall):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()
    admin.close()


def test_the_embedded_redis_bounds_its_memory_and_refuses_rather_than_evicts(plane: ControlPlaneThread) -> None:
    admin = redis.Redis.from_url(admin_url(plane))
    limits = plane.settings.limits
    assert admin.config_get("maxmemory")["maxmemory"] == str(limits.redis_max_memory_bytes)
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert admin.config_get("proto-max-bulk-len")["proto-max-bulk-len"] == str(limits.redis_max_value_bytes)
    admin.close()


def test_a_report_that_does_not_fit_in_redis_fails_its_writer_and_evicts_nothing(tmp_path: Path) -> None:
    small = Limits(redis_max_memory_bytes=8 * 1024 * 1024)
    embedded = EmbeddedRedis(tmp_path, Timeouts(), small)
    url = embedded.start()
    users = RunUsers(url, 3600, embedded.admin_url)
    runs = [uuid.uuid4().hex for _ in range(40)]
    credentials = users.create(runs)
    written: list[str] = []
    try:
        with pytest.raises(ReportFailed, match=r"used memory > 'maxmemory'"):
            for run in runs:  # ~0.5 MiB each: past 8 MiB well before the last
                reporter = RedisReporter(
                    f"127.0.0.1:{embedded.port}", run, credentials[run].username, credentials[run].password, 1.0
                )
                reporter.report_values(blob="x" * 500_000)
                written.append(run)
        control = redis.Redis.from_url(url)
        assert written and all(control.strlen(run) > 500_000 for run in written)  # every earlier report is kept
        control.close()
    finally:
        users.close()
        embedded.stop()


def test_a_report_over_the_largest_value_redis_takes_fails_its_writer_at_once_saying_how_large(
    tmp_path: Path,
) -> None:
    embedded = EmbeddedRedis(tmp_path, Timeouts(), Limits(redis_max_value_bytes=2 * 1024 * 1024))
    url = embedded.start()
    users = RunUsers(url, 3600, embedded.admin_url)
    run = uuid.uuid4().hex
    credentials = users.create([run])[run]
    reporter = RedisReporter(f"127.0.0.1:{embedded.port}", run, credentials.username, credentials.password, 5.0)
    try:
        with pytest.raises(ReportFailed, match="could not report 3000012 bytes"):
            reporter.report_values(blob="x" * 3_000_000)
        reporter.report_values(blob="small")  # the next report that fits is stored
        control = redis.Redis.from_url(url)
        assert control.get(run) == b'{"blob": "small"}'
        control.close()
    finally:
        users.close()
        embedded.stop()


def test_a_redis_left_by_an_older_version_is_adopted_with_todays_users(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path, Timeouts())
    url = first.start()
    pid = json.loads((first.dir / "redis.json").read_text())["pid"]
    # As an older version left it: a control user that may run ACL, no user manager (and no admin secret).
    admin = redis.Redis.from_url(first.admin_url)
    admin.execute_command("ACL", "SETUSER", "florist", "+@all", "-@dangerous", "+acl")
    admin.close()
    legacy = redis.Redis.from_url(url)
    legacy.execute_command("ACL", "DELUSER", "florist-admin")
    legacy.execute_command("ACL", "SAVE")
    legacy.close()
    (first.dir / "admin-secret").unlink()
    adopted = EmbeddedRedis(tmp_path, Timeouts())
    assert adopted.start() == url
    assert json.loads((adopted.dir / "redis.json").read_text())["pid"] == pid  # the same process, adopted
    control = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        control.execute_command("ACL", "SETUSER", "mallory", "on", ">pw", "+@all")
    control.close()
    users = RunUsers(url, 3600, adopted.admin_url)
    assert users.create([uuid.uuid4().hex])  # the new user manager works
    users.close()
    adopted.stop()


def test_a_redis_adopted_from_the_last_version_lets_the_control_user_read_as_this_one_does(tmp_path: Path) -> None:
    """The last version's control user read with STRLEN and MGET; this one reads with GETRANGE."""
    first = EmbeddedRedis(tmp_path, Timeouts())
    url = first.start()
    admin = redis.Redis.from_url(first.admin_url)
    admin.execute_command("ACL", "SETUSER", "florist", "-getrange", "+mget")  # as the last version loaded it
    admin.close()
    run = uuid.uuid4().hex
    control = redis.Redis.from_url(url)
    control.set(run, b"{}")
    with pytest.raises(redis.exceptions.NoPermissionError):
        control.getrange(run, 0, 10)
    adopted = EmbeddedRedis(tmp_path, Timeouts())
    assert adopted.start() == url
    assert control.getrange(run, 0, 10) == b"{}"
    with pytest.raises(redis.exceptions.NoPermissionError):
        control.mget([run])  # today's rules exactly, not the last version's plus today's
    control.close()
    adopted.stop()


def test_an_ended_jobs_keys_expire_and_its_run_users_are_dropped(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    users = RunUsers(plane.plane.redis_url, 3600, admin_url(plane))
    uuids = [r.uuid for r in job.reporters.values()]
    users.create(uuids)
    simulation.play_rounds(job, 1)
    looking, admin = inspector(plane), redis.Redis.from_url(admin_url(plane))
    assert all(looking.ttl(u) == -1 for u in uuids)  # kept while the job runs
    simulation.finish(plane.plane, job)
    ttl = plane.settings.timeouts.report_key_ttl_seconds
    wait_for(lambda: all(0 < looking.ttl(u) <= ttl for u in uuids), 10, "the keys to have a TTL")
    wait_for(lambda: all(admin.acl_getuser(f"run-{u}") is None for u in uuids), 10, "the users to be dropped")
    # The reports themselves were persisted before: the store has them all.
    stored = plane.get(job.job_id)
    assert stored.server_metrics["fit_end"] == "end"
    looking.close()
    admin.close()
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
