"""The florist.v1 servicers, built once and served on both transports: the gRPC server registers them here, and the
dashboard's Connect adapters (connect_services.py) hand every browser call to the same instances."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from florist_grpc.api.agent_service import AgentServicer
from florist_grpc.api.catalog_service import CatalogServicer
from florist_grpc.api.job_service import JobServicer
from florist_grpc.api.job_service import add_to_server as add_job_service
from florist_grpc.api.training_service import TrainingServicer
from florist_grpc.api.training_service import add_to_server as add_training_service
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import catalog_service_pb2_grpc as catalog_grpc


@dataclass(frozen=True)
class Servicers:
    jobs: JobServicer
    training: TrainingServicer
    catalog: CatalogServicer
    agents: AgentServicer

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register every florist.v1 service with the gRPC server."""
        add_job_service(self.jobs, server)
        add_training_service(self.training, server)
        catalog_grpc.add_CatalogServiceServicer_to_server(self.catalog, server)
        agent_grpc.add_AgentServiceServicer_to_server(self.agents, server)
