"""An FL process gets its run (with its Redis password) in its environment, never on its command line."""

from __future__ import annotations

from pathlib import Path

import psutil

from florist_grpc.domain.training import training_config
from florist_grpc.fl.run_config import RUN_ENV, ServerRun
from florist_grpc.launch.handles import start_local
from florist_grpc.launch.process import terminate
from tests.helpers import wait_for


def test_the_run_and_its_password_are_not_on_the_command_line(tmp_path: Path) -> None:
    training = training_config("FEDAVG", {"n_server_rounds": 1, "batch_size": 1, "local_epochs": 1})
    run = ServerRun("127.0.0.1:1", "127.0.0.1:1", "u" * 32, "MLP", "FEDAVG", 1, training, "run-u", "s3cret-password")
    handle = start_local("server", run.to_json(), tmp_path / "server.log")
    try:
        process = psutil.Process(handle.ref.pid)
        assert not any("s3cret-password" in arg for arg in process.cmdline())  # what `ps` shows everyone
        # /proc/<pid>/environ is readable by the process's own user only (and by root).
        environ = wait_for(process.environ, 10, "the environment")
        assert RUN_ENV in environ
    finally:
        terminate([handle.ref], grace=2.0)
