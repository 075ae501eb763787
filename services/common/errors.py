"""One exception hierarchy for domain errors, mapped to gRPC status in one place.

    SlidelaneError
    ├── InvalidArgument      -> INVALID_ARGUMENT (names the field)
    ├── NotFound             -> NOT_FOUND (also for another tenant's ids: no existence leak)
    ├── FailedPrecondition   -> FAILED_PRECONDITION
    ├── ResourceExhausted    -> RESOURCE_EXHAUSTED
    ├── Unauthenticated      -> UNAUTHENTICATED
    └── Unavailable          -> UNAVAILABLE (a dependency is down; retrying may help)

Servicers raise these; `ErrorMappingInterceptor` turns them into statuses with a
google.rpc.BadRequest detail when a field is named. Errors coming back from a
downstream gRPC call are re-raised unchanged, so the gateway forwards them as is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)


class SlidelaneError(Exception):
    """Base of every domain error; `code` is the gRPC status it maps to."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(SlidelaneError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SlidelaneError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(SlidelaneError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(SlidelaneError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(SlidelaneError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(SlidelaneError):
    code = grpc.StatusCode.UNAVAILABLE


def to_status(error: SlidelaneError) -> grpc.Status:
    """A rich status: code, message and, when a field is named, a BadRequest detail."""
    status = status_pb2.Status(code=getattr(code_pb2, error.code.name), message=error.message)
    if error.field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """field -> description from a status's BadRequest detail (for clients and tests)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, str] = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Maps SlidelaneError raised by any handler (unary or streaming) to its status."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


async def _abort(context: grpc.aio.ServicerContext, error: SlidelaneError) -> None:
    await context.abort_with_status(to_status(error))


async def _forward(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError) -> None:
    """Pass a downstream service's status (and its details) on to our caller unchanged."""
    details = tuple((k, v) for k, v in (error.trailing_metadata() or ()) if k == "grpc-status-details-bin")
    await context.abort(error.code(), error.details() or "", details)


def _wrap_unary(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behaviour(request, context)
        except SlidelaneError as error:
            log.info("request refused", extra={"method": method, "code": error.code.name, "reason": error.message})
            await _abort(context, error)
        except grpc.aio.AioRpcError as error:
            await _forward(context, error)

    return wrapper


def _wrap_stream(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for response in behaviour(request, context):
                yield response
        except SlidelaneError as error:
            log.info("stream refused", extra={"method": method, "code": error.code.name, "reason": error.message})
            await _abort(context, error)
        except grpc.aio.AioRpcError as error:
            await _forward(context, error)

    return wrapper
