"""A StopTraining that arrives while StartTraining is still launching: the stop wins, never both.

StartTraining answers ABORTED, the job ends CANCELLED, and every process the start launched is stopped. The stop
is issued at an exact step of the start (the trainer's step hook), so the race is reproduced, not hoped for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import grpc
import pytest

from florist_grpc.jobs.starting import Start
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, no_fl_process_left


def stop_at(plane: ControlPlaneThread, step: str) -> concurrent.futures.Future[pb.StopTrainingResponse]:
    """Issue StopTraining (from another thread, through gRPC) when the start reaches `step`, and let the start go
    on once the stop has reached it."""
    stopped: concurrent.futures.Future[pb.StopTrainingResponse] = concurrent.futures.Future()

    def stop(job_id: str) -> None:
        try:
            stopped.set_result(plane.training.StopTraining(pb.StopTrainingRequest(job_id=job_id), timeout=60))
        except grpc.RpcError as exc:
            stopped.set_exception(exc)

    async def hook(start: Start, name: str) -> None:
        if name == step and not stopped.done():
            threading.Thread(target=stop, args=(start.job_id,), daemon=True).start()
            await asyncio.wait_for(start.stop_requested.wait(), 30)

    plane.plane.trainer.starts.step_hook = hook
    return stopped


@pytest.mark.parametrize("step", ["attached", "server launched"])
def test_a_stop_during_start_aborts_the_start_and_cancels_the_job(
    plane: ControlPlaneThread, demo_data: list[str], step: str
) -> None:
    job = plane.create(job_message(demo_data, rounds=2))
    stopped = stop_at(plane, step)
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job.id)
    assert raised.value.code() == grpc.StatusCode.ABORTED
    assert "stopped" in (raised.value.details() or "")
    # The stop answers with the job as the start left it: CANCELLED, by the stop.
    assert stopped.result(60).job.state == job_pb2.JOB_STATE_CANCELLED
    final = plane.get(job.id)
    assert final.state == job_pb2.JOB_STATE_CANCELLED
    assert "StopTraining" in final.error_message
    events = plane.events(job.id)
    assert [e.job_state for e in events].count(job_pb2.JOB_STATE_CANCELLED) == 1
    assert events[-1].job_state == job_pb2.JOB_STATE_CANCELLED
    no_fl_process_left()  # what was launched is stopped, nothing trains on
