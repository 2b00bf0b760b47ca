"""Server reflection under both names clients ask for: `grpc.reflection.v1` (buf curl, grpcurl >= 1.8.8, Postman,
grpc-java's deprecation of v1alpha) and `grpc.reflection.v1alpha` (grpcurl 1.8.6, grpc-requests).

grpcio-reflection serves v1alpha only (grpc/grpc#38576). The two protocols are wire-identical (same messages, same
field numbers; only the package differs), so v1 is the same servicer registered under the v1 service name, and
its schema, so that `describe grpc.reflection.v1.ServerReflection` answers too, is v1alpha's file renamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"  # its name upstream (grpc-proto)
SERVICES = (V1_SERVICE, V1ALPHA_SERVICE)


def _renamed(type_name: str) -> str:
    old = f".{v1alpha.DESCRIPTOR.package}."
    return f".{V1_PACKAGE}.{type_name.removeprefix(old)}" if type_name.startswith(old) else type_name


def add_v1_schema(pool: descriptor_pool.DescriptorPool) -> None:
    """Put grpc/reflection/v1/reflection.proto into `pool` (once), built from the v1alpha file."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.ClearField("options")
    for message in proto.message_type:  # the v1alpha messages have no nested types
        for field in message.field:
            if field.HasField("type_name"):  # descriptor.proto is proto2: assigning "" would set it
                field.type_name = _renamed(field.type_name)
    for method in proto.service[0].method:
        method.input_type, method.output_type = _renamed(method.input_type), _renamed(method.output_type)
    pool.AddSerializedFile(proto.SerializeToString())


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `service_names` and both reflection services."""
    add_v1_schema(descriptor_pool.Default())
    names = (*service_names, *SERVICES)
    reflection.enable_server_reflection(names, server)  # v1alpha, with grpcio-reflection's own servicer
    servicer = cast(Any, reflection).aio.ReflectionServicer(names)  # public (reflection.__all__); not in the stubs
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha.ServerReflectionRequest.FromString,
        response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),))
