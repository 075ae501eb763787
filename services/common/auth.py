"""Dev-mode identity: the tenant is the caller's x-user-id metadata.

Tenant and branch ids become NATS subject tokens (tiles.<tenant>.<branch>...), so
they must be subject-safe; we accept a conservative alphabet rather than trying to
enumerate what NATS forbids.
"""

from __future__ import annotations

import re

import grpc

from services.common.errors import InvalidArgument, Unauthenticated

USER_HEADER = "x-user-id"
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_subject_safe(value: str) -> bool:
    """True when value can be one NATS subject token (letters, digits, '-', '_'; 1-64 chars)."""
    return bool(_SAFE_TOKEN.match(value))


def require_subject_safe(value: str, field: str) -> str:
    if not is_subject_safe(value):
        raise InvalidArgument(
            f"{field} {value!r} is not allowed: use 1-64 letters, digits, '-' or '_' (no '.', '*', '>' or spaces)",
            field=field,
        )
    return value


def tenant_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's tenant id from x-user-id metadata (UNAUTHENTICATED when absent)."""
    values = [v for k, v in context.invocation_metadata() or () if k == USER_HEADER]
    if not values or not values[0]:
        raise Unauthenticated("missing x-user-id: send your user id in the X-User-ID header (gRPC metadata x-user-id)")
    tenant = values[0] if isinstance(values[0], str) else values[0].decode()
    if not is_subject_safe(tenant):
        raise InvalidArgument(
            f"x-user-id {tenant!r} is not a valid user id: use 1-64 letters, digits, '-' or '_'",
            field="x-user-id",
        )
    return tenant
