from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSlideTileRequest(_message.Message):
    __slots__ = ("job_id", "level", "col", "row")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    COL_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    level: int
    col: int
    row: int
    def __init__(self, job_id: _Optional[str] = ..., level: _Optional[int] = ..., col: _Optional[int] = ..., row: _Optional[int] = ...) -> None: ...

class ListCellsRequest(_message.Message):
    __slots__ = ("job_id", "x", "y", "width", "height", "max_polygons")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_POLYGONS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    x: float
    y: float
    width: float
    height: float
    max_polygons: int
    def __init__(self, job_id: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ..., max_polygons: _Optional[int] = ...) -> None: ...

class CellShape(_message.Message):
    __slots__ = ("cell_id", "centroid_x", "centroid_y", "polygon")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CENTROID_X_FIELD_NUMBER: _ClassVar[int]
    CENTROID_Y_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    cell_id: int
    centroid_x: float
    centroid_y: float
    polygon: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, cell_id: _Optional[int] = ..., centroid_x: _Optional[float] = ..., centroid_y: _Optional[float] = ..., polygon: _Optional[_Iterable[float]] = ...) -> None: ...

class ListCellsResponse(_message.Message):
    __slots__ = ("cells", "centroids_only", "total_in_region")
    CELLS_FIELD_NUMBER: _ClassVar[int]
    CENTROIDS_ONLY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_IN_REGION_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[CellShape]
    centroids_only: bool
    total_in_region: int
    def __init__(self, cells: _Optional[_Iterable[_Union[CellShape, _Mapping]]] = ..., centroids_only: _Optional[bool] = ..., total_in_region: _Optional[int] = ...) -> None: ...

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
