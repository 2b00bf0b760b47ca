"""RPC metrics as one interceptor: go-grpc-prometheus's series for every call of every service (florist's, health,
reflection), plus the streams open now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from florist_grpc.api.call_observer import CallEnd, CallHooks, CallKind, Handler, observe
from florist_grpc.api.prometheus import PlaneMetrics


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: PlaneMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED before any interceptor sees a call
            return handler
        method = handler_call_details.method
        service, _, name = method.lstrip("/").rpartition("/")
        kind = CallKind.of(handler)
        labels = (kind.value, service, name)
        series = self._metrics.grpc
        active = self._metrics.active_streams.labels(method.lstrip("/")) if kind is not CallKind.UNARY else None

        def started() -> None:
            series.started.labels(*labels).inc()
            if active is not None:
                active.inc()

        def ended(call: CallEnd) -> None:
            series.handled.labels(*labels, call.code.name).inc()
            if active is not None:
                active.dec()
            else:  # unary only, as py-grpc-prometheus: a stream lasts as long as its job, which is no latency
                series.handling_seconds.labels(*labels).observe(call.seconds)

        received = series.received.labels(*labels)
        sent = series.sent.labels(*labels)
        return observe(handler, method, CallHooks(ended, started, received.inc, sent.inc))
