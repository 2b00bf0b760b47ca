"""RPC metrics as one interceptor: count by method and code, latency histogram, open streams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from florist_grpc.api.call_observer import CallEnd, Handler, observe
from florist_grpc.api.prometheus import PlaneMetrics


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: PlaneMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        label = method.lstrip("/")
        metrics = self._metrics

        def started(streaming: bool) -> None:
            if streaming:
                metrics.active_streams.labels(label).inc()

        def ended(call: CallEnd) -> None:
            metrics.rpcs.labels(label, call.code.name).inc()
            metrics.rpc_seconds.labels(label).observe(call.seconds)
            if call.streaming:
                metrics.active_streams.labels(label).dec()

        return observe(await continuation(handler_call_details), method, ended, started)
