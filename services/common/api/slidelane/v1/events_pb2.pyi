import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from services.common.api.slidelane.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowEvent(_message.Message):
    __slots__ = ("workflow_id", "seq", "time", "snapshot", "workflow_state_changed", "job_state_changed", "job_progressed", "watch_lagged")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    JOB_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    JOB_PROGRESSED_FIELD_NUMBER: _ClassVar[int]
    WATCH_LAGGED_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    seq: int
    time: _timestamp_pb2.Timestamp
    snapshot: WorkflowSnapshot
    workflow_state_changed: WorkflowStateChanged
    job_state_changed: JobStateChanged
    job_progressed: JobProgressed
    watch_lagged: WatchLagged
    def __init__(self, workflow_id: _Optional[str] = ..., seq: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., snapshot: _Optional[_Union[WorkflowSnapshot, _Mapping]] = ..., workflow_state_changed: _Optional[_Union[WorkflowStateChanged, _Mapping]] = ..., job_state_changed: _Optional[_Union[JobStateChanged, _Mapping]] = ..., job_progressed: _Optional[_Union[JobProgressed, _Mapping]] = ..., watch_lagged: _Optional[_Union[WatchLagged, _Mapping]] = ...) -> None: ...

class WorkflowSnapshot(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: _types_pb2.Workflow
    def __init__(self, workflow: _Optional[_Union[_types_pb2.Workflow, _Mapping]] = ...) -> None: ...

class WorkflowStateChanged(_message.Message):
    __slots__ = ("state", "queue_position", "error", "progress")
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.WorkflowState
    queue_position: int
    error: str
    progress: _types_pb2.Progress
    def __init__(self, state: _Optional[_Union[_types_pb2.WorkflowState, str]] = ..., queue_position: _Optional[int] = ..., error: _Optional[str] = ..., progress: _Optional[_Union[_types_pb2.Progress, _Mapping]] = ...) -> None: ...

class JobStateChanged(_message.Message):
    __slots__ = ("id", "job_id", "state", "attempts", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    state: _types_pb2.JobState
    attempts: int
    error: str
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.JobState, str]] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class JobProgressed(_message.Message):
    __slots__ = ("id", "job_id", "job_progress", "workflow_progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    job_progress: _types_pb2.Progress
    workflow_progress: _types_pb2.Progress
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_progress: _Optional[_Union[_types_pb2.Progress, _Mapping]] = ..., workflow_progress: _Optional[_Union[_types_pb2.Progress, _Mapping]] = ...) -> None: ...

class WatchLagged(_message.Message):
    __slots__ = ("last_delivered_seq",)
    LAST_DELIVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    last_delivered_seq: int
    def __init__(self, last_delivered_seq: _Optional[int] = ...) -> None: ...
