"""OpenTelemetry tracing across gRPC and NATS.

W3C trace context travels in gRPC metadata (`traceparent`) and in NATS message
headers, so one trace runs from CreateWorkflow through dispatch and every tile to
the result file. Spans are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT
is set; otherwise they are created (so trace ids reach the logs) and dropped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from services.common import metrics

_configured = False


def setup_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the process's tracer provider (once); tests pass an in-memory exporter."""
    global _configured
    provider = TracerProvider(resource=Resource.create({"service.name": f"slidelane-{service}"}))
    if exporter is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if not _configured:
        trace.set_tracer_provider(provider)
        _configured = True
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as headers (for NATS messages and gRPC metadata)."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(headers or {}))


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


class ServerObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """A span per call (parented by the caller's traceparent) and the gRPC metrics."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full_method = handler_call_details.method
        service, _, method = full_method.lstrip("/").rpartition("/")
        incoming = {k: v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)}
        parent = extract(incoming)
        spans = tracer("grpc.server")

        def finish(context: grpc.aio.ServicerContext, started: float) -> None:
            code = context.code() if hasattr(context, "code") else None
            name = code.name if isinstance(code, grpc.StatusCode) else "OK"
            metrics.GRPC_REQUESTS.labels(service, method, name).inc()
            metrics.GRPC_LATENCY.labels(service, method).observe(time.perf_counter() - started)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                with spans.start_as_current_span(full_method, context=parent, kind=trace.SpanKind.SERVER):
                    try:
                        return await inner(request, context)
                    finally:
                        finish(context, started)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                with spans.start_as_current_span(full_method, context=parent, kind=trace.SpanKind.SERVER):
                    try:
                        async for response in inner_stream(request, context):
                            yield response
                    finally:
                        finish(context, started)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
            )
        return handler


class _ClientTracing:
    async def _call(self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        metadata = list(client_call_details.metadata or [])
        metadata.extend(inject().items())
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


class ClientTracingInterceptor(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):
    """Puts the current traceparent into outgoing unary calls."""

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await self._call(continuation, client_call_details, request)


class ClientStreamTracingInterceptor(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):
    """Puts the current traceparent into outgoing server-streaming calls."""

    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await self._call(continuation, client_call_details, request)


def internal_channel(address: str) -> grpc.aio.Channel:
    """A channel to a peer service that carries the trace context."""
    return grpc.aio.insecure_channel(address, interceptors=[ClientTracingInterceptor(), ClientStreamTracingInterceptor()])
