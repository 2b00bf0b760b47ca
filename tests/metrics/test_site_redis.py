"""An agent's own Redis (agent/reports.py) has the control plane's bounds and users: maxmemory with noeviction, a
control user that cannot make users, and a report too large to relay is not even read."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import redis

from florist_grpc.agent.reports import SiteReports
from florist_grpc.config import Limits, Timeouts
from florist_grpc.fl.reporter import RedisReporter

KiB = 1024
MiB = 1024 * KiB


def test_a_sites_redis_is_bounded_and_its_reading_user_makes_no_users(tmp_path: Path) -> None:
    limits = Limits(redis_max_memory_bytes=300 * MiB, relayed_report_max_bytes=64 * KiB)

    async def check() -> None:
        site = SiteReports(tmp_path, Timeouts(), limits)
        await asyncio.to_thread(site.start, [])
        try:
            redis_dir = Path(site.redis_dir)
            port = json.loads((redis_dir / "redis.json").read_text())["port"]
            admin = redis.Redis(
                port=port, username="florist-admin", password=(redis_dir / "admin-secret").read_text().strip()
            )
            assert admin.config_get("maxmemory") == {"maxmemory": str(300 * MiB)}
            assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            admin.close()
            control = redis.Redis(port=port, username="florist", password=(redis_dir / "secret").read_text().strip())
            with pytest.raises(redis.exceptions.NoPermissionError):
                control.execute_command("ACL", "SETUSER", "mallory", "on", ">pw", "~*", "+@all")
            control.close()
            # A client reports as its own user, as on the control plane; what it reports is relayed up to the bound.
            small, large = uuid.uuid4().hex, uuid.uuid4().hex
            for run, size in ((small, 10 * KiB), (large, 100 * KiB)):
                credentials = await asyncio.to_thread(site.credentials, run)
                reporter = RedisReporter(site.address, run, credentials.username, credentials.password, 5.0)
                await asyncio.to_thread(reporter.report_values, blob="x" * size)
            assert json.loads(await site.read(small))["blob"] == "x" * 10 * KiB
            assert await site.read(large) == ""  # over what an agent relays: not read, logged
        finally:
            site.stop()

    asyncio.run(check())
