"""florist.v1.TrainingService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from florist_grpc.api import convert
from florist_grpc.api.callers import Callers
from florist_grpc.api.encoded_responses import sending_encoded
from florist_grpc.api.errors import abort, status_of_exception, streaming, unary
from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import MetricsEvent
from florist_grpc.jobs.artifacts import download
from florist_grpc.jobs.logs import JobLogs
from florist_grpc.jobs.registry import JobRegistry
from florist_grpc.jobs.training import Trainer
from florist_grpc.metrics.stream import MetricsFeed, job_frames
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
STREAM_METRICS = "/florist.v1.TrainingService/StreamMetrics"


def _require_job_id(job_id: str) -> None:
    if not job_id:
        raise InvalidArgument([FieldViolation("job_id", "is required")])


def add_to_server(servicer: TrainingServicer, server: grpc.aio.Server) -> None:
    """Register the servicer with the generated code, StreamMetrics sending the bytes it yields as they are."""
    pb_grpc.add_TrainingServiceServicer_to_server(servicer, sending_encoded(server, {STREAM_METRICS}))


def _stream_response(event: MetricsEvent) -> bytes:
    return pb.StreamMetricsResponse(event=convert.event_to_proto(event)).SerializeToString()


class TrainingServicer(pb_grpc.TrainingServiceServicer):
    """Register with `add_to_server`: StreamMetrics yields each event's response already encoded."""

    def __init__(
        self, trainer: Trainer, registry: JobRegistry, feed: MetricsFeed, logs: JobLogs, callers: Callers
    ) -> None:
        self._callers = callers
        self._logs = logs
        self._trainer = trainer
        self._registry = registry
        self._feed = feed

    @unary
    async def StartTraining(self, request: pb.StartTrainingRequest, context: Context) -> pb.StartTrainingResponse:
        _require_job_id(request.job_id)
        await self._registry.get(request.job_id, self._callers.of(context))
        started = await self._trainer.start(request.job_id)
        return pb.StartTrainingResponse(
            server_uuid=started.server_uuid, client_uuids=started.client_uuids, queued=started.queued
        )

    @unary
    async def StopTraining(self, request: pb.StopTrainingRequest, context: Context) -> pb.StopTrainingResponse:
        _require_job_id(request.job_id)
        caller = self._callers.of(context)
        await self._registry.get(request.job_id, caller)
        await self._trainer.stop(request.job_id)
        return pb.StopTrainingResponse(job=convert.job_to_proto(await self._registry.get(request.job_id, caller)))

    # Not @streaming: the same error mapping, written out, so that each message passes one async generator less
    # (a message per subscriber per event: 1,000 subscribers make an event 1,000 passes through every layer).
    async def StreamMetrics(  # type: ignore[override]
        self, request: pb.StreamMetricsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        async def confirm() -> None:
            # Confirm the stream once it is subscribed, not with the first event: a client may open streams,
            # wait until they are established (initial metadata), and only then start the job.
            await context.send_initial_metadata(())

        try:
            _require_job_id(request.job_id)
            await self._registry.get(request.job_id, self._callers.of(context))
            async for frame in job_frames(self._feed, request.job_id, request.after_sequence, confirm):
                yield frame.encoded(_stream_response)
            return
        except Exception as exc:
            status = status_of_exception(exc)
        await abort(context, status)

    @streaming
    async def StreamLogs(self, request: pb.StreamLogsRequest, context: Context) -> AsyncIterator[pb.StreamLogsResponse]:
        _require_job_id(request.job_id)
        source = convert.log_source_from_proto(request)
        chunks = self._logs.read(request.job_id, source, request.offset, request.follow, self._callers.of(context))
        async for text, next_offset in chunks:
            yield pb.StreamLogsResponse(text=text, next_offset=next_offset)

    @streaming
    async def DownloadModel(
        self, request: pb.DownloadModelRequest, context: Context
    ) -> AsyncIterator[pb.DownloadModelResponse]:
        job = await self._registry.get(request.job_id, self._callers.of(context))
        async for part in download(job, self._trainer.model_dir(job.id), request.round):
            yield convert.download_part(part)
