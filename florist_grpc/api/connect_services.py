"""The florist.v1 services for browsers (Connect protocol and gRPC-Web): one adapter per service, each method
handing the call to the gRPC servicer's own method (connect_calls.py), so both transports run one implementation
of every RPC with the same errors.

They subclass the classes protoc-gen-connectrpc generates: connectrpc resolves a service's endpoints from the
instance, and a plain object standing in for the generated Protocol made the first request of each service fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from florist_grpc.api.agent_service import AgentServicer
from florist_grpc.api.catalog_service import CatalogServicer
from florist_grpc.api.connect_calls import OpenStreams, stream_call, unary_call
from florist_grpc.api.job_service import JobServicer
from florist_grpc.api.training_service import TrainingServicer
from florist_grpc.proto.florist.v1 import agent_service_connect, catalog_service_connect, job_service_connect
from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import catalog_service_pb2 as catalog_pb
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_connect as training_connect
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb

Ctx = RequestContext[Any, Any]


class JobServiceAdapter(job_service_connect.JobService):
    def __init__(self, servicer: JobServicer, streams: OpenStreams) -> None:
        self._grpc = servicer
        self._streams = streams

    async def create_job(self, request: job_pb.CreateJobRequest, ctx: Ctx) -> job_pb.CreateJobResponse:
        return await unary_call(self._grpc.CreateJob, request, ctx)

    async def get_job(self, request: job_pb.GetJobRequest, ctx: Ctx) -> job_pb.GetJobResponse:
        return await unary_call(self._grpc.GetJob, request, ctx)

    async def list_jobs(self, request: job_pb.ListJobsRequest, ctx: Ctx) -> job_pb.ListJobsResponse:
        return await unary_call(self._grpc.ListJobs, request, ctx)

    async def delete_job(self, request: job_pb.DeleteJobRequest, ctx: Ctx) -> job_pb.DeleteJobResponse:
        return await unary_call(self._grpc.DeleteJob, request, ctx)

    def watch_jobs(self, request: job_pb.WatchJobsRequest, ctx: Ctx) -> AsyncIterator[job_pb.WatchJobsResponse]:
        # Like StreamMetrics, the servicer yields each change's response encoded once for every watch.
        return stream_call(self._grpc.WatchJobs, request, ctx, self._streams, job_pb.WatchJobsResponse.FromString)


class TrainingServiceAdapter(training_connect.TrainingService):
    def __init__(self, servicer: TrainingServicer, streams: OpenStreams) -> None:
        self._grpc = servicer
        self._streams = streams

    async def start_training(
        self, request: training_pb.StartTrainingRequest, ctx: Ctx
    ) -> training_pb.StartTrainingResponse:
        return await unary_call(self._grpc.StartTraining, request, ctx)

    async def stop_training(
        self, request: training_pb.StopTrainingRequest, ctx: Ctx
    ) -> training_pb.StopTrainingResponse:
        return await unary_call(self._grpc.StopTraining, request, ctx)

    def stream_metrics(
        self, request: training_pb.StreamMetricsRequest, ctx: Ctx
    ) -> AsyncIterator[training_pb.StreamMetricsResponse]:
        # The servicer yields each response encoded once for all its gRPC subscribers; a browser's codec (binary
        # or JSON) wants the message.
        decode = training_pb.StreamMetricsResponse.FromString
        return stream_call(self._grpc.StreamMetrics, request, ctx, self._streams, decode)

    def stream_logs(
        self, request: training_pb.StreamLogsRequest, ctx: Ctx
    ) -> AsyncIterator[training_pb.StreamLogsResponse]:
        return stream_call(self._grpc.StreamLogs, request, ctx, self._streams)

    def download_model(
        self, request: training_pb.DownloadModelRequest, ctx: Ctx
    ) -> AsyncIterator[training_pb.DownloadModelResponse]:
        return stream_call(self._grpc.DownloadModel, request, ctx, self._streams)


class CatalogServiceAdapter(catalog_service_connect.CatalogService):
    def __init__(self, servicer: CatalogServicer) -> None:
        self._grpc = servicer

    async def get_catalog(self, request: catalog_pb.GetCatalogRequest, ctx: Ctx) -> catalog_pb.GetCatalogResponse:
        return await unary_call(self._grpc.GetCatalog, request, ctx)


class AgentServiceAdapter(agent_service_connect.AgentService):
    def __init__(self, servicer: AgentServicer) -> None:
        self._grpc = servicer

    async def list_agents(self, request: agent_pb.ListAgentsRequest, ctx: Ctx) -> agent_pb.ListAgentsResponse:
        return await unary_call(self._grpc.ListAgents, request, ctx)

    async def connect(
        self, request: AsyncIterator[agent_pb.ConnectRequest], ctx: Ctx
    ) -> AsyncIterator[agent_pb.ConnectResponse]:
        # An agent's session is a bidirectional stream over HTTP/2: it stays on the gRPC port.
        raise ConnectError(Code.UNIMPLEMENTED, "agents connect to the gRPC port, not the dashboard's")
        yield  # pragma: no cover - makes this an async generator, as the endpoint expects

    async def tunnel(
        self, request: AsyncIterator[agent_pb.TunnelRequest], ctx: Ctx
    ) -> AsyncIterator[agent_pb.TunnelResponse]:
        # Like the session, an agent's tunnel is a bidirectional stream over HTTP/2: the gRPC port only.
        raise ConnectError(Code.UNIMPLEMENTED, "agents tunnel through the gRPC port, not the dashboard's")
        yield  # pragma: no cover - makes this an async generator, as the endpoint expects
