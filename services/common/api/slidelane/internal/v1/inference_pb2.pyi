from services.common.api.slidelane.v1 import metrics_service_pb2 as _metrics_service_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetWorkerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWorkerStatusResponse(_message.Message):
    __slots__ = ("status", "gpu_present")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GPU_PRESENT_FIELD_NUMBER: _ClassVar[int]
    status: _metrics_service_pb2.WorkerStatus
    gpu_present: bool
    def __init__(self, status: _Optional[_Union[_metrics_service_pb2.WorkerStatus, _Mapping]] = ..., gpu_present: _Optional[bool] = ...) -> None: ...
