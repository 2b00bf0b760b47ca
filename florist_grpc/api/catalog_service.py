"""florist.v1.CatalogService."""

from __future__ import annotations

from typing import Any

import grpc

from florist_grpc.api import convert
from florist_grpc.api.errors import unary
from florist_grpc.domain.catalog import DEFAULT_CATALOG, Catalog
from florist_grpc.proto.florist.v1 import catalog_service_pb2 as pb
from florist_grpc.proto.florist.v1 import catalog_service_pb2_grpc as pb_grpc


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog = DEFAULT_CATALOG) -> None:
        self._catalog = convert.catalog_to_proto(catalog)  # fixed once the plugins are discovered at startup

    @unary
    async def GetCatalog(
        self, request: pb.GetCatalogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCatalogResponse:
        return self._catalog
