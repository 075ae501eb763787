from google.protobuf import struct_pb2 as _struct_pb2
from services.common.api.slidelane.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobDispatch(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "id", "job_id", "job_type", "image_path", "branch", "params", "attempt")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    id: str
    job_id: str
    job_type: str
    image_path: str
    branch: str
    params: _struct_pb2.Struct
    attempt: int
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., image_path: _Optional[str] = ..., branch: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., attempt: _Optional[int] = ...) -> None: ...

class Rect(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class TileTask(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "job_id", "attempt", "tile_index", "image_path", "read_region", "core_region", "level", "scale", "norm_low", "norm_high", "tiles_total")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TILE_INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    READ_REGION_FIELD_NUMBER: _ClassVar[int]
    CORE_REGION_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    NORM_LOW_FIELD_NUMBER: _ClassVar[int]
    NORM_HIGH_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    job_id: str
    attempt: int
    tile_index: int
    image_path: str
    read_region: Rect
    core_region: Rect
    level: int
    scale: float
    norm_low: _containers.RepeatedScalarFieldContainer[float]
    norm_high: _containers.RepeatedScalarFieldContainer[float]
    tiles_total: int
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., tile_index: _Optional[int] = ..., image_path: _Optional[str] = ..., read_region: _Optional[_Union[Rect, _Mapping]] = ..., core_region: _Optional[_Union[Rect, _Mapping]] = ..., level: _Optional[int] = ..., scale: _Optional[float] = ..., norm_low: _Optional[_Iterable[float]] = ..., norm_high: _Optional[_Iterable[float]] = ..., tiles_total: _Optional[int] = ...) -> None: ...

class Cell(_message.Message):
    __slots__ = ("polygon_x", "polygon_y", "area", "centroid_x", "centroid_y", "label_id")
    POLYGON_X_FIELD_NUMBER: _ClassVar[int]
    POLYGON_Y_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    CENTROID_X_FIELD_NUMBER: _ClassVar[int]
    CENTROID_Y_FIELD_NUMBER: _ClassVar[int]
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    polygon_x: _containers.RepeatedScalarFieldContainer[float]
    polygon_y: _containers.RepeatedScalarFieldContainer[float]
    area: float
    centroid_x: float
    centroid_y: float
    label_id: int
    def __init__(self, polygon_x: _Optional[_Iterable[float]] = ..., polygon_y: _Optional[_Iterable[float]] = ..., area: _Optional[float] = ..., centroid_x: _Optional[float] = ..., centroid_y: _Optional[float] = ..., label_id: _Optional[int] = ...) -> None: ...

class TileResult(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "job_id", "attempt", "tile_index", "tiles_total", "cells", "model", "worker_id", "inference_seconds")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TILE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    job_id: str
    attempt: int
    tile_index: int
    tiles_total: int
    cells: _containers.RepeatedCompositeFieldContainer[Cell]
    model: str
    worker_id: str
    inference_seconds: float
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., tile_index: _Optional[int] = ..., tiles_total: _Optional[int] = ..., cells: _Optional[_Iterable[_Union[Cell, _Mapping]]] = ..., model: _Optional[str] = ..., worker_id: _Optional[str] = ..., inference_seconds: _Optional[float] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "job_id", "attempt", "planned", "progress", "succeeded", "failed")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    job_id: str
    attempt: int
    planned: JobPlanned
    progress: JobTileProgress
    succeeded: JobSucceeded
    failed: JobFailed
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., planned: _Optional[_Union[JobPlanned, _Mapping]] = ..., progress: _Optional[_Union[JobTileProgress, _Mapping]] = ..., succeeded: _Optional[_Union[JobSucceeded, _Mapping]] = ..., failed: _Optional[_Union[JobFailed, _Mapping]] = ...) -> None: ...

class JobPlanned(_message.Message):
    __slots__ = ("tiles_total",)
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    tiles_total: int
    def __init__(self, tiles_total: _Optional[int] = ...) -> None: ...

class JobTileProgress(_message.Message):
    __slots__ = ("tiles_done", "tiles_total")
    TILES_DONE_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    tiles_done: int
    tiles_total: int
    def __init__(self, tiles_done: _Optional[int] = ..., tiles_total: _Optional[int] = ...) -> None: ...

class JobSucceeded(_message.Message):
    __slots__ = ("result_files", "total_cells")
    RESULT_FILES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CELLS_FIELD_NUMBER: _ClassVar[int]
    result_files: _containers.RepeatedScalarFieldContainer[str]
    total_cells: int
    def __init__(self, result_files: _Optional[_Iterable[str]] = ..., total_cells: _Optional[int] = ...) -> None: ...

class JobFailed(_message.Message):
    __slots__ = ("message", "permanent")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    message: str
    permanent: bool
    def __init__(self, message: _Optional[str] = ..., permanent: _Optional[bool] = ...) -> None: ...

class JobPlan(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "job_id", "attempt", "workflow_job_id", "job_type", "tiles_total", "slide_width", "slide_height", "mpp", "model", "tissue_fraction", "image_path")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SLIDE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SLIDE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MPP_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TISSUE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    job_id: str
    attempt: int
    workflow_job_id: str
    job_type: str
    tiles_total: int
    slide_width: int
    slide_height: int
    mpp: float
    model: str
    tissue_fraction: float
    image_path: str
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., workflow_job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., tiles_total: _Optional[int] = ..., slide_width: _Optional[int] = ..., slide_height: _Optional[int] = ..., mpp: _Optional[float] = ..., model: _Optional[str] = ..., tissue_fraction: _Optional[float] = ..., image_path: _Optional[str] = ...) -> None: ...

class TissueMaskResult(_message.Message):
    __slots__ = ("plan", "mask_png", "geojson", "mask_downsample")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    MASK_DOWNSAMPLE_FIELD_NUMBER: _ClassVar[int]
    plan: JobPlan
    mask_png: bytes
    geojson: str
    mask_downsample: float
    def __init__(self, plan: _Optional[_Union[JobPlan, _Mapping]] = ..., mask_png: _Optional[bytes] = ..., geojson: _Optional[str] = ..., mask_downsample: _Optional[float] = ...) -> None: ...

class ResultEnvelope(_message.Message):
    __slots__ = ("plan", "tile", "tissue_mask")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    TISSUE_MASK_FIELD_NUMBER: _ClassVar[int]
    plan: JobPlan
    tile: TileResult
    tissue_mask: TissueMaskResult
    def __init__(self, plan: _Optional[_Union[JobPlan, _Mapping]] = ..., tile: _Optional[_Union[TileResult, _Mapping]] = ..., tissue_mask: _Optional[_Union[TissueMaskResult, _Mapping]] = ...) -> None: ...

class WorkflowEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.WorkflowEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.WorkflowEvent, _Mapping]]] = ...) -> None: ...
