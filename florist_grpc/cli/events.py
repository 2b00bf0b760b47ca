"""A job's event stream that survives a dropped connection: reconnect with after_sequence = the last event seen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc

from florist_grpc.cli.options import Connection
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc

# How long to keep trying to get a lost connection back before giving up, and the pause between tries.
RECONNECT_SECONDS = 120.0
RETRY_PAUSE_SECONDS = 1.0
# Codes a control plane going away produces; anything else is an answer and ends the watch.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def stream_events(
    conn: Connection,
    job_id: str,
    after: int = 0,
    on_reconnect: Callable[[int, grpc.RpcError], None] = lambda after, exc: None,
    reconnect_seconds: float = RECONNECT_SECONDS,
) -> Iterator[pb.MetricsEvent]:
    """Every event of the job after `after`, in order, without gaps or duplicates across reconnects."""
    channel = conn.channel()
    lost_since: float | None = None
    try:
        while True:
            stub = pb_grpc.TrainingServiceStub(channel)
            request = pb.StreamMetricsRequest(job_id=job_id, after_sequence=after)
            try:
                for response in stub.StreamMetrics(request, metadata=conn.metadata):
                    lost_since = None
                    after = response.event.sequence
                    yield response.event
                return
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                now = time.monotonic()
                lost_since = now if lost_since is None else lost_since
                if code not in RETRYABLE or now - lost_since > reconnect_seconds:
                    raise
                on_reconnect(after, exc)
                time.sleep(RETRY_PAUSE_SECONDS)  # back-off between attempts against a server that is down
                channel.close()
                channel = conn.channel()
    finally:
        channel.close()
