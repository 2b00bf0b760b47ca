"""florist.v1.TrainingService."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import grpc

from florist_grpc.api import convert
from florist_grpc.api.errors import streaming, unary
from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import MetricsEvent
from florist_grpc.jobs.artifacts import download
from florist_grpc.jobs.logs import JobLogs
from florist_grpc.jobs.registry import JobRegistry
from florist_grpc.jobs.training import Trainer
from florist_grpc.metrics.hub import EventHub
from florist_grpc.metrics.stream import job_events
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.store.base import JobStore

Context = grpc.aio.ServicerContext[Any, Any]
# Recent events' encoded responses: live subscribers all ask for the same few.
RESPONSE_CACHE_SIZE = 4096


def _require_job_id(job_id: str) -> None:
    if not job_id:
        raise InvalidArgument([FieldViolation("job_id", "is required")])


class TrainingServicer(pb_grpc.TrainingServiceServicer):
    def __init__(self, trainer: Trainer, registry: JobRegistry, store: JobStore, hub: EventHub, logs: JobLogs) -> None:
        self._logs = logs
        self._responses: OrderedDict[tuple[str, int], pb.StreamMetricsResponse] = OrderedDict()
        self._trainer = trainer
        self._registry = registry
        self._store = store
        self._hub = hub

    def _encoded(self, event: MetricsEvent) -> pb.StreamMetricsResponse:
        """The response for an event, built once and shared by every subscriber (they never modify it)."""
        key = (event.job_id, event.sequence)
        response = self._responses.get(key)
        if response is None:
            response = pb.StreamMetricsResponse(event=convert.event_to_proto(event))
            self._responses[key] = response
            if len(self._responses) > RESPONSE_CACHE_SIZE:
                self._responses.popitem(last=False)
        return response

    @unary
    async def StartTraining(self, request: pb.StartTrainingRequest, context: Context) -> pb.StartTrainingResponse:
        _require_job_id(request.job_id)
        server_uuid, client_uuids = await self._trainer.start(request.job_id)
        return pb.StartTrainingResponse(server_uuid=server_uuid, client_uuids=client_uuids)

    @unary
    async def StopTraining(self, request: pb.StopTrainingRequest, context: Context) -> pb.StopTrainingResponse:
        _require_job_id(request.job_id)
        await self._trainer.stop(request.job_id)
        return pb.StopTrainingResponse(job=convert.job_to_proto(await self._registry.get(request.job_id)))

    @streaming
    async def StreamMetrics(
        self, request: pb.StreamMetricsRequest, context: Context
    ) -> AsyncIterator[pb.StreamMetricsResponse]:
        _require_job_id(request.job_id)

        async def confirm() -> None:
            # Confirm the stream once it is subscribed, not with the first event: a client may open streams,
            # wait until they are established (initial metadata), and only then start the job.
            await context.send_initial_metadata(())

        events = job_events(self._store, self._hub, request.job_id, request.after_sequence, confirm)
        async for event in events:
            yield self._encoded(event)

    @streaming
    async def StreamLogs(self, request: pb.StreamLogsRequest, context: Context) -> AsyncIterator[pb.StreamLogsResponse]:
        _require_job_id(request.job_id)
        source = convert.log_source_from_proto(request)
        async for text, next_offset in self._logs.read(request.job_id, source, request.offset, request.follow):
            yield pb.StreamLogsResponse(text=text, next_offset=next_offset)

    @streaming
    async def DownloadModel(
        self, request: pb.DownloadModelRequest, context: Context
    ) -> AsyncIterator[pb.DownloadModelResponse]:
        job = await self._registry.get(request.job_id)
        async for part in download(job, self._trainer.model_dir(job.id), request.round):
            yield convert.download_part(part)
