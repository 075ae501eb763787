import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetDashboardRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LaneDepth(_message.Message):
    __slots__ = ("branch", "queued", "running")
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    branch: str
    queued: int
    running: int
    def __init__(self, branch: _Optional[str] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ...) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("worker_id", "device", "tiles_per_second", "model", "last_seen")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TILES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    device: str
    tiles_per_second: float
    model: str
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, worker_id: _Optional[str] = ..., device: _Optional[str] = ..., tiles_per_second: _Optional[float] = ..., model: _Optional[str] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecentFailure(_message.Message):
    __slots__ = ("id", "job_id", "workflow_id", "error", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    workflow_id: str
    error: str
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., error: _Optional[str] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetDashboardResponse(_message.Message):
    __slots__ = ("active_users", "max_active_users", "admission_queue_length", "my_queue_position", "lanes", "workers", "recent_failures")
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MY_QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    RECENT_FAILURES_FIELD_NUMBER: _ClassVar[int]
    active_users: int
    max_active_users: int
    admission_queue_length: int
    my_queue_position: int
    lanes: _containers.RepeatedCompositeFieldContainer[LaneDepth]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStatus]
    recent_failures: _containers.RepeatedCompositeFieldContainer[RecentFailure]
    def __init__(self, active_users: _Optional[int] = ..., max_active_users: _Optional[int] = ..., admission_queue_length: _Optional[int] = ..., my_queue_position: _Optional[int] = ..., lanes: _Optional[_Iterable[_Union[LaneDepth, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[WorkerStatus, _Mapping]]] = ..., recent_failures: _Optional[_Iterable[_Union[RecentFailure, _Mapping]]] = ...) -> None: ...
