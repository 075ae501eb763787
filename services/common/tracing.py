"""OpenTelemetry tracing across gRPC, NATS and the DB.

W3C trace context travels in gRPC metadata (`traceparent`) and in NATS message
headers, so one trace runs from CreateWorkflow through dispatch and every tile to
the result file. Spans are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT
is set; otherwise they are created unrecorded (so trace ids reach the logs and the
headers) and cost little (SampleWhenExported). The
SDK's own variables apply (OTEL_TRACES_SAMPLER=parentbased_traceidratio and
OTEL_TRACES_SAMPLER_ARG keep a share of whole traces).

The spans of one workflow (service: span name [kind]):

  gateway    /slidelane.v1.WorkflowService/CreateWorkflow [server]
  scheduler  /slidelane.internal.v1.SchedulerService/CreateWorkflow [server]; its context
             is stored with the workflow (workflows.trace_context): jobs start later
  tenancy    /slidelane.internal.v1.TenancyService/Admit [server]
  scheduler  dispatch <job_type> [internal]: a job started; child of the stored context,
             its traceparent stored in the outbox row with the JobDispatch
  scheduler  publish dispatch [producer]: the outbox loop sends the row
  inference  process dispatch [consumer]: the planner; inside it plan tiles (or tissue
             mask) [internal], then publish results, publish status, and publish tiles
             [producer], one per tile, paced over the job
  inference  process tiles [consumer]: one per tile on whichever worker, then publish results
  storage    process results [consumer]: one per result, with publish status (throttled
             progress; for the job's last result, after finalise results [internal])
  scheduler  process status [consumer]
  and a [client] span per SQL statement (SELECT, INSERT, ...) run inside any of these.

Workflow events carry a context of their workflow's trace (publish events spans);
watchers fan them out without spans of their own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.trace.sampling import _get_from_env_or_default as _default_sampler
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine

from services.common import metrics

_provider: TracerProvider | None = None
MAX_STATEMENT_CHARS = 2000


class SampleWhenExported(Sampler):
    """The SDK's sampler (OTEL_TRACES_SAMPLER, default parent-based always-on) once an
    exporter is added; until then every span is dropped: still made, with valid ids for
    the logs and the traceparent, but not recorded. A recorded span that nothing exports
    cost a few times as much (attributes, events, the processor calls), on every message
    and SQL statement."""

    def __init__(self) -> None:
        self.exporting = False
        self._sampler = _default_sampler()

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):  # type: ignore[no-untyped-def]
        if self.exporting:
            return self._sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        parent = trace.get_current_span(parent_context).get_span_context()
        return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"SampleWhenExported({self._sampler.get_description()})"


def setup_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """The process's tracer provider, installed on the first call; each call's exporter
    (tests pass an in-memory one) is added to it."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(
            resource=Resource.create({"service.name": f"slidelane-{service}"}), sampler=SampleWhenExported()
        )
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _add_exporter(_provider, OTLPSpanExporter())
        trace.set_tracer_provider(_provider)
    if exporter is not None:
        _add_exporter(_provider, exporter)
    return _provider


def _add_exporter(provider: TracerProvider, exporter: SpanExporter) -> None:
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if isinstance(provider.sampler, SampleWhenExported):
        provider.sampler.exporting = True


@functools.cache
def tracer(name: str) -> trace.Tracer:
    """The tracer of a module (made once: the provider builds a new one on every get_tracer)."""
    return trace.get_tracer(name)


def inject(headers: Mapping[str, str] | None = None, context: otel_context.Context | None = None) -> dict[str, str]:
    """`headers` plus the trace context (the current one by default) as W3C headers,
    for NATS messages and gRPC metadata; nothing is added outside any span."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context that headers (NATS, gRPC metadata, a stored dict) carry."""
    return propagate.extract(dict(headers or {}))


def exporting() -> bool:
    """Whether this process's spans are recorded for an exporter (see SampleWhenExported)."""
    return _provider is not None and isinstance(_provider.sampler, SampleWhenExported) and _provider.sampler.exporting


def in_span() -> bool:
    return trace.get_current_span().get_span_context().is_valid


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def record_step(name: str, parent: Mapping[str, str] | None, attributes: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A span for an instant decision, child of the context `parent` carries; returns the
    headers of the new span, for a message that leaves later (the outbox)."""
    span = tracer(__name__).start_span(name, context=extract(parent), attributes=attributes)
    span.end()
    return inject(context=trace.set_span_in_context(span))


# ----- NATS messages ---------------------------------------------------------------------


class Message(Protocol):
    """What the consume spans read of a NATS message (nats.aio.msg.Msg)."""

    subject: str
    headers: dict[str, str] | None


def _destination(subject: str) -> str:
    """The first subject token ("tiles", "results"): span names stay few, ids go in attributes."""
    return subject.split(".", 1)[0]


def _message_attributes(subject: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "nats",
        "messaging.operation.type": operation,
        "messaging.destination.name": subject,
    }


@contextlib.contextmanager
def publishing(
    subject: str, headers: Mapping[str, str] | None = None, parent: otel_context.Context | None = None
) -> Iterator[dict[str, str]]:
    """A producer span for one message (child of `parent`, else of the current span);
    yields `headers` plus the span's traceparent, to publish with."""
    with tracer(__name__).start_as_current_span(
        f"publish {_destination(subject)}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=_message_attributes(subject, "send"),
    ):
        yield inject(headers)


def _consume_span(message: Message) -> Span:
    attributes = _message_attributes(message.subject, "process")
    if message.headers and (message_id := message.headers.get("Nats-Msg-Id")):
        attributes["messaging.message.id"] = message_id
    return tracer(__name__).start_span(
        f"process {_destination(message.subject)}",
        context=extract(message.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    )


@contextlib.contextmanager
def consuming(message: Message) -> Iterator[Span]:
    """A consumer span for one message, child of the context its headers carry, current
    inside the block (so what the handler publishes or queries joins the trace)."""
    span = _consume_span(message)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


@contextlib.contextmanager
def consuming_each(messages: Sequence[Message]) -> Iterator[list[Span]]:
    """One consumer span per message of a batch handled as one (a worker's tile batch, the
    scheduler's status batch). Not made current, since the messages may belong to different
    traces: make one current with trace.use_span to publish on its behalf. All end on exit;
    if the block raises, each records the error (cancellation at shutdown is no error)."""
    spans = [_consume_span(message) for message in messages]
    try:
        yield spans
    except Exception as error:
        for span in spans:
            fail_span(span, error)
        raise
    finally:
        for span in spans:
            span.end()


def fail_span(span: Span, error: BaseException) -> None:
    """Mark a span failed (for errors handled without raising through it)."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error) or error.__class__.__name__))


# ----- SQL -------------------------------------------------------------------------------


def trace_queries(engine: Engine) -> None:
    """A client span per SQL statement, only inside a traced operation (the polling loops'
    idle queries, outside any span, would each make a trace of their own) and only while
    spans are exported: nothing else sees a statement's span (it is never made current),
    and an unrecorded one still cost ids, attributes and the sampler, on every statement."""
    spans = tracer("sqlalchemy")
    system = engine.dialect.name

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if context is None or not exporting() or not in_span():
            return
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        context._slidelane_span = spans.start_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": system,
                "db.operation.name": operation,
                # Statements hold placeholders, never the bound values.
                "db.query.text": statement[:MAX_STATEMENT_CHARS],
            },
        )

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        span = getattr(context, "_slidelane_span", None)
        if span is not None:
            span.end()
            context._slidelane_span = None

    @event.listens_for(engine, "handle_error")
    def _error(exception_context):  # type: ignore[no-untyped-def]
        context = exception_context.execution_context
        span = getattr(context, "_slidelane_span", None)
        if span is not None:
            fail_span(span, exception_context.original_exception)
            span.end()
            context._slidelane_span = None


# ----- gRPC ------------------------------------------------------------------------------


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


# gRPC's default reconnect backoff grows to 120 s: after a peer restarts (kill -9, a
# rolling update) calls would fail fast for that long although the peer is back.
# Peers are on the same network and restart in seconds, so retry at most every second.
RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))


def internal_channel(address: str) -> grpc.aio.Channel:
    """A channel to a peer service that carries the trace context."""
    return grpc.aio.insecure_channel(
        address,
        options=RECONNECT_OPTIONS,
        interceptors=[ClientTracingInterceptor(), ClientStreamTracingInterceptor()],
    )
