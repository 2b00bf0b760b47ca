"""florist.v1.JobService."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc

from florist_grpc.api import convert
from florist_grpc.api.callers import Callers
from florist_grpc.api.encoded_responses import sending_encoded
from florist_grpc.api.errors import streaming, unary
from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import ChangeType, JobChange, JobState
from florist_grpc.jobs import job_filter
from florist_grpc.jobs.listing import without_metrics
from florist_grpc.jobs.registry import JobRegistry
from florist_grpc.jobs.watch_hub import WatchHub
from florist_grpc.jobs.watching import Watch, watch_changes
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as pb_grpc
from florist_grpc.store.base import JobStore

Context = grpc.aio.ServicerContext[Any, Any]
WATCH_JOBS = "/florist.v1.JobService/WatchJobs"
# Recent changes' encoded responses (BASIC view): every watch sends the same bytes for a change.
ENCODED_CHANGES = 4096


def add_to_server(servicer: JobServicer, server: grpc.aio.Server) -> None:
    """Register the servicer with the generated code, WatchJobs sending the bytes it yields as they are."""
    pb_grpc.add_JobServiceServicer_to_server(servicer, sending_encoded(server, {WATCH_JOBS}))


def _encoded(change: JobChange) -> bytes:
    return pb.WatchJobsResponse(change=convert.change_to_proto(change)).SerializeToString()


def job_state_of(value: int, field: str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise InvalidArgument([FieldViolation(field, f"unknown JobState {value}")]) from None


class JobServicer(pb_grpc.JobServiceServicer):
    def __init__(
        self, registry: JobRegistry, callers: Callers, store: JobStore, hub: WatchHub, bookmark_seconds: float
    ) -> None:
        self._registry = registry
        self._callers = callers
        self._changes: OrderedDict[tuple[int, ChangeType], bytes] = OrderedDict()
        self._store = store
        self._hub = hub
        self._bookmark_seconds = bookmark_seconds

    @unary
    async def CreateJob(self, request: pb.CreateJobRequest, context: Context) -> pb.CreateJobResponse:
        if not request.HasField("job"):
            raise InvalidArgument([FieldViolation("job", "is required")])
        job = convert.job_from_proto(request.job, "", datetime.now(UTC))
        caller = self._callers.of(context)
        created = await self._registry.create(job, request.request_id, request.validate_only, caller)
        return pb.CreateJobResponse(job=convert.job_to_proto(created))

    @unary
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        job = await self._registry.get(request.job_id, self._callers.of(context))
        return pb.GetJobResponse(job=convert.job_to_proto(job))

    @unary
    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        state, basic = job_state_of(request.state, "state"), request.view == pb.JOB_VIEW_BASIC
        after = convert.decode_page_token(request.page_token, state, request.filter)
        jobs, more, revision = await self._registry.list(
            request.page_size, after, state, job_filter.parse(request.filter), self._callers.of(context)
        )
        token = convert.encode_page_token(jobs[-1], state, request.filter) if more and jobs else ""
        shown = [convert.job_to_proto(without_metrics(j) if basic else j) for j in jobs]
        return pb.ListJobsResponse(jobs=shown, next_page_token=token, revision=revision)

    @streaming
    async def WatchJobs(  # type: ignore[override]
        self, request: pb.WatchJobsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        watch = Watch(
            self._callers.of(context),
            job_filter.parse(request.filter),
            request.after_revision,
            with_metrics=request.view == pb.JOB_VIEW_FULL,
        )

        async def confirm() -> None:
            # Confirmed once subscribed: a client may wait for the stream to be established before changing jobs.
            await context.send_initial_metadata(())

        async for change in watch_changes(self._store, self._hub, watch, self._bookmark_seconds, confirm):
            yield _encoded(change) if watch.with_metrics else self._shared(change)

    def _shared(self, change: JobChange) -> bytes:
        """A BASIC change's response, encoded once for every watch that sends it (its revision and type say all:
        the job is the log's snapshot)."""
        key = (change.revision, change.type)
        encoded = self._changes.get(key)
        if encoded is None:
            encoded = self._changes[key] = _encoded(change)
            if len(self._changes) > ENCODED_CHANGES:
                self._changes.popitem(last=False)
        return encoded

    @unary
    async def DeleteJob(self, request: pb.DeleteJobRequest, context: Context) -> pb.DeleteJobResponse:
        await self._registry.delete(request.job_id, self._callers.of(context))
        return pb.DeleteJobResponse()
