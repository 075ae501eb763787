from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetVisualizationRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class HistogramBin(_message.Message):
    __slots__ = ("lower", "upper", "count")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    lower: float
    upper: float
    count: int
    def __init__(self, lower: _Optional[float] = ..., upper: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class GetVisualizationResponse(_message.Message):
    __slots__ = ("job_id", "job_type", "slide_width", "slide_height", "mpp", "total_cells", "tissue_fraction", "area_histogram", "model")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    SLIDE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SLIDE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MPP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CELLS_FIELD_NUMBER: _ClassVar[int]
    TISSUE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    AREA_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_type: str
    slide_width: int
    slide_height: int
    mpp: float
    total_cells: int
    tissue_fraction: float
    area_histogram: _containers.RepeatedCompositeFieldContainer[HistogramBin]
    model: str
    def __init__(self, job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., slide_width: _Optional[int] = ..., slide_height: _Optional[int] = ..., mpp: _Optional[float] = ..., total_cells: _Optional[int] = ..., tissue_fraction: _Optional[float] = ..., area_histogram: _Optional[_Iterable[_Union[HistogramBin, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...
