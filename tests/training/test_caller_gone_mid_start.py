"""A StartTraining whose caller goes away (its deadline, Ctrl-C) while the start launches: the start goes on.

The job was committed IN_PROGRESS before the launch began; cut there, it kept a half-launched federation, and the
processes a launch thread was starting were known to nobody. The call is cancelled at an exact step of the start
(the trainer's step hook), and the hook lets the start go on only once the server has seen the caller leave.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import pytest

from florist_grpc.jobs.starting import Start
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, no_fl_process_left


@pytest.mark.parametrize("step", ["attached", "server launched"])
def test_a_start_whose_caller_left_launches_every_process_and_the_job_trains_to_its_end(
    plane: ControlPlaneThread, demo_data: list[str], step: str
) -> None:
    job = plane.create(job_message(demo_data, rounds=2))
    calls: list[grpc.Future] = []
    called = threading.Event()
    seen: list[str] = []

    async def hook(start: Start, name: str) -> None:
        seen.append(name)
        if name == step:
            assert await asyncio.to_thread(called.wait, 30)  # the call's future is in `calls`
            calls[0].cancel()
            await asyncio.wait_for(start.caller_gone.wait(), 30)

    plane.plane.trainer.starts.step_hook = hook
    calls.append(plane.training.StartTraining.future(pb.StartTrainingRequest(job_id=job.id), timeout=120))
    called.set()
    with pytest.raises(grpc.FutureCancelledError):
        calls[0].result(60)
    done = plane.wait_state(
        job.id, {job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, job_pb2.JOB_STATE_FINISHED_WITH_ERROR}, timeout=120
    )
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    assert "ready" in seen  # the start went through every step after the caller left
    assert done.server_uuid and all(c.uuid for c in done.clients)
    rounds = dict(done.server_metrics.fields["rounds"].struct_value.fields)
    assert set(rounds) == {"1", "2"}
    no_fl_process_left()


def test_a_shutdown_cancels_a_start_still_launching_and_is_not_held_by_it(tmp_path: Path, demo_data: list[str]) -> None:
    """Trainer.close: a start that outlived its caller is cancelled by the control plane's shutdown (its exit stack)
    rather than left pending on a loop that is going away."""
    plane = ControlPlaneThread.in_dir(tmp_path / "florist")
    stopped = False
    try:
        job = plane.create(job_message(demo_data, rounds=2))
        reached = threading.Event()
        outcome: list[str] = []

        async def hook(start: Start, name: str) -> None:
            if name == "attached":
                reached.set()
                try:
                    await asyncio.Event().wait()  # a launch that does not end on its own
                except asyncio.CancelledError:
                    outcome.append("cancelled")
                    raise

        plane.plane.trainer.starts.step_hook = hook
        call = plane.training.StartTraining.future(pb.StartTrainingRequest(job_id=job.id), timeout=120)
        assert reached.wait(60)
        call.cancel()  # the caller leaves: the start goes on, held at "attached"
        start = plane.plane.trainer.starts.of(job.id)
        assert start is not None
        plane.run(start.caller_gone.wait(), timeout=30)
        began = time.monotonic()
        plane.stop()
        stopped = True
        took = time.monotonic() - began
        assert outcome == ["cancelled"]
        assert took < 20, f"the shutdown took {took:.1f}s"
        no_fl_process_left()
    finally:
        if not stopped:
            plane.stop()
