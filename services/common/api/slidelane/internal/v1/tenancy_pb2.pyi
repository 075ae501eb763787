from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AdmitRequest(_message.Message):
    __slots__ = ("tenant_id", "workflow_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class AdmitResponse(_message.Message):
    __slots__ = ("admitted", "queue_position")
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    admitted: bool
    queue_position: int
    def __init__(self, admitted: _Optional[bool] = ..., queue_position: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("tenant_id", "workflow_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("admitted_tenant_ids",)
    ADMITTED_TENANT_IDS_FIELD_NUMBER: _ClassVar[int]
    admitted_tenant_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, admitted_tenant_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAdmissionRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetAdmissionResponse(_message.Message):
    __slots__ = ("admitted", "queue_position")
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    admitted: bool
    queue_position: int
    def __init__(self, admitted: _Optional[bool] = ..., queue_position: _Optional[int] = ...) -> None: ...

class GetAdmissionSummaryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAdmissionSummaryResponse(_message.Message):
    __slots__ = ("active_tenant_ids", "waiting_tenant_ids", "max_active_users")
    ACTIVE_TENANT_IDS_FIELD_NUMBER: _ClassVar[int]
    WAITING_TENANT_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    active_tenant_ids: _containers.RepeatedScalarFieldContainer[str]
    waiting_tenant_ids: _containers.RepeatedScalarFieldContainer[str]
    max_active_users: int
    def __init__(self, active_tenant_ids: _Optional[_Iterable[str]] = ..., waiting_tenant_ids: _Optional[_Iterable[str]] = ..., max_active_users: _Optional[int] = ...) -> None: ...
