"""An in-process control plane on its own event-loop thread, for synchronous programs (tests, benchmarks,
notebooks): one class, with a gRPC channel to it and the calls tests and benchmarks make most."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil

from florist_grpc.config import Settings, Timeouts
from florist_grpc.domain.model import JobState
from florist_grpc.launch.process import terminate
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.server import ControlPlane
from florist_grpc.store.base import JobStore

T = TypeVar("T")

# A test's processes stop or fail within seconds; the defaults wait as long as a real deployment needs.
TEST_TIMEOUTS = Timeouts(process_stop_grace_seconds=3.0, client_exit_grace_seconds=10.0)


def wait_for(predicate: Callable[[], T | None], timeout: float = 30.0, message: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)


class ControlPlaneThread:
    """A ControlPlane serving on its own event-loop thread, with a channel to it (`jobs` and `training` stubs).
    `stop()` shuts it down like SIGTERM would, then ends what a service leaves running for its restart (FL
    processes, the embedded Redis): an embedded plane's data dir is never served again."""

    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="control-plane-loop", daemon=True)
        self._thread.start()
        self.plane = ControlPlane(settings, store)
        self.run(self.plane.start())
        self.address = f"127.0.0.1:{self.plane.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.training = training_grpc.TrainingServiceStub(self.channel)

    @classmethod
    def in_dir(cls, data_dir: Path, store: JobStore | None = None, **settings: Any) -> ControlPlaneThread:
        """A plane on `data_dir` with the rest of `settings` as given, else on a free port with TEST_TIMEOUTS."""
        settings.setdefault("port", 0)
        settings.setdefault("timeouts", TEST_TIMEOUTS)
        return cls(Settings(data_dir=data_dir, **settings), store)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the plane's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace: float = 1.0) -> None:
        self.channel.close()
        leftovers = [
            ref
            for job in self.plane.store.jobs_in_state(JobState.IN_PROGRESS)
            for ref in [job.server_process, *(c.process for c in job.clients)]
            if ref.pid
        ]
        self.run(self.plane.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        terminate(leftovers, grace=2.0)
        redis_state = self.settings.data_dir / "redis" / "redis.json"
        if redis_state.exists():
            with contextlib.suppress(psutil.Error, ValueError, KeyError):
                psutil.Process(json.loads(redis_state.read_text())["pid"]).kill()

    # --- the calls tests make most ---

    def create(self, job: job_pb2.Job, request_id: str = "") -> job_pb2.Job:
        return self.jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job, request_id=request_id), timeout=30).job

    def get(self, job_id: str) -> job_pb2.Job:
        return self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=30).job

    def start(self, job_id: str) -> training_pb.StartTrainingResponse:
        return self.training.StartTraining(training_pb.StartTrainingRequest(job_id=job_id), timeout=60)

    def events(self, job_id: str, after: int = 0, timeout: float = 120) -> list[training_pb.MetricsEvent]:
        request = training_pb.StreamMetricsRequest(job_id=job_id, after_sequence=after)
        return [r.event for r in self.training.StreamMetrics(request, timeout=timeout)]

    def wait_state(self, job_id: str, states: set[int], timeout: float = 60) -> job_pb2.Job:
        def reached() -> job_pb2.Job | None:
            job = self.get(job_id)
            return job if job.state in states else None

        return wait_for(reached, timeout, f"job {job_id} in {states}")


@contextlib.contextmanager
def embedded_plane(
    store: JobStore | None = None, launcher_pool: bool = True, timeouts: Timeouts | None = None
) -> Iterator[ControlPlaneThread]:
    """A plane on a scratch data dir (removed afterwards), with the service's own timeouts unless given."""
    with tempfile.TemporaryDirectory(prefix="florist-embedded-") as directory:
        plane = ControlPlaneThread.in_dir(
            Path(directory) / "florist", store, launcher_pool=launcher_pool, timeouts=timeouts or Timeouts()
        )
        try:
            yield plane
        finally:
            plane.stop()
