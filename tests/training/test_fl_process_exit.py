"""An FL process that fails ends, even with Flower's gRPC threads still running: a spawned FL server whose run
failed while one client was still connected used to stay alive forever (the interpreter joins those threads at
exit), so its job never learned it had failed."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from florist_grpc.config import Timeouts
from florist_grpc.domain.training import training_config
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.fl.probe import probe
from florist_grpc.fl.run_config import ClientRun, ServerRun, run_environment
from florist_grpc.launch.process import spawn
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import free_service_port
from tests.helpers import wait_for


@pytest.mark.slow
def test_a_spawned_fl_server_that_fails_with_a_client_connected_exits_with_1(tmp_path: Path) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", Timeouts())
    redis_url = redis_server.start()
    redis_address = f"127.0.0.1:{redis_server.port}"
    (data,) = write_synthetic(tmp_path / "data", 1)
    summary = probe(str(data))
    shape = {"input_shape": summary["input_shape"], "num_classes": summary["label_max"] + 1}
    # Two clients expected, one started: once that one has long connected (a spawned client needs a few seconds to
    # import, and it is started first, retrying until the server listens), the server gives up waiting for the
    # second and fails its run.
    config = training_config(
        "FEDAVG", {"n_server_rounds": 1, "batch_size": 32, "local_epochs": 1, "client_wait_seconds": 12}
    )
    server_uuid, client_uuid = uuid.uuid4().hex, uuid.uuid4().hex
    users = RunUsers(redis_url, 3600, redis_server.admin_url)
    credentials = users.create([server_uuid, client_uuid])
    address = f"127.0.0.1:{free_service_port()}"
    server_run = ServerRun(
        address, redis_address, server_uuid, "MLP", "FEDAVG", 2, config, **shape,
        redis_username=credentials[server_uuid].username, redis_password=credentials[server_uuid].password,
    )  # fmt: skip
    client_run = ClientRun(
        address, redis_address, client_uuid, "MLP", "SGD", "FEDAVG", str(data), config, **shape,
        redis_username=credentials[client_uuid].username, redis_password=credentials[client_uuid].password,
    )  # fmt: skip
    client, _ = spawn("florist_grpc.fl.client", [], tmp_path / "client.log", run_environment(client_run.to_json()))
    server, _ = spawn("florist_grpc.fl.server", [], tmp_path / "server.log", run_environment(server_run.to_json()))
    try:
        log = tmp_path / "server.log"
        assert wait_for(lambda: "FL clients connected within" in log.read_text(), 120)
        assert "only 1 of 2 FL clients connected" in log.read_text(), log.read_text()[-2000:]
        assert server.wait(30) == 1, "the failed server ended, its connected client's stream notwithstanding"
        assert client.wait(120) != 0  # its server went away mid-run: the client fails too, and ends
    finally:
        for process in (server, client):
            if process.poll() is None:
                process.kill()
                process.wait(10)
        users.close()
        redis_server.stop()
