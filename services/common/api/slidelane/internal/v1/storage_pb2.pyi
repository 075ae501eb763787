from google.api import httpbody_pb2 as _httpbody_pb2
from services.common.api.slidelane.v1 import visualization_service_pb2 as _visualization_service_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSlideTileRequest(_message.Message):
    __slots__ = ("tenant_id", "request")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    request: _visualization_service_pb2.GetSlideTileRequest
    def __init__(self, tenant_id: _Optional[str] = ..., request: _Optional[_Union[_visualization_service_pb2.GetSlideTileRequest, _Mapping]] = ...) -> None: ...

class ListCellsRequest(_message.Message):
    __slots__ = ("tenant_id", "request")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    request: _visualization_service_pb2.ListCellsRequest
    def __init__(self, tenant_id: _Optional[str] = ..., request: _Optional[_Union[_visualization_service_pb2.ListCellsRequest, _Mapping]] = ...) -> None: ...

class ListCellsResponse(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _visualization_service_pb2.ListCellsResponse
    def __init__(self, cells: _Optional[_Union[_visualization_service_pb2.ListCellsResponse, _Mapping]] = ...) -> None: ...

class GetJobResultsRequest(_message.Message):
    __slots__ = ("tenant_id", "job_id", "format")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    job_id: str
    format: str
    def __init__(self, tenant_id: _Optional[str] = ..., job_id: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class GetVisualizationRequest(_message.Message):
    __slots__ = ("tenant_id", "job_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    job_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class GetVisualizationResponse(_message.Message):
    __slots__ = ("visualization",)
    VISUALIZATION_FIELD_NUMBER: _ClassVar[int]
    visualization: _visualization_service_pb2.GetVisualizationResponse
    def __init__(self, visualization: _Optional[_Union[_visualization_service_pb2.GetVisualizationResponse, _Mapping]] = ...) -> None: ...
