"""StorageService: stream result files and summarise them for viewers."""

from __future__ import annotations

from google.api import httpbody_pb2

from services.common.api.slidelane.internal.v1 import storage_pb2, storage_pb2_grpc
from services.common.api.slidelane.v1 import visualization_service_pb2
from services.common.errors import InvalidArgument, NotFound
from services.storage import viewer
from services.storage.merge import ResultMerger
from services.storage.store import ResultStore

CONTENT_TYPES = {"json": "application/json", "geojson": "application/geo+json", "mask": "image/png"}


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, store: ResultStore, merger: ResultMerger) -> None:
        self.store = store
        self.merger = merger

    def _manifest(self, tenant: str, job_id: str) -> dict:
        manifest = self.merger.read_manifest(tenant, job_id)
        if manifest is None:
            raise NotFound(f"job {job_id} has no results yet: wait until it has SUCCEEDED", field="job_id")
        return manifest

    async def GetJobResults(self, request, context):  # type: ignore[no-untyped-def]
        fmt = request.format or "json"
        if fmt not in CONTENT_TYPES:
            raise InvalidArgument(f"format {fmt!r} is unknown: use json, geojson or mask", field="format")
        manifest = self._manifest(request.tenant_id, request.job_id)
        name = manifest["files"].get(fmt)
        if name is None:
            raise InvalidArgument(f"a {manifest['job_type']} job has no {fmt} result", field="format")
        for chunk in self.store.read_chunks(f"{request.tenant_id}/{request.job_id}/{name}"):
            yield httpbody_pb2.HttpBody(content_type=CONTENT_TYPES[fmt], data=chunk)

    async def GetVisualization(self, request, context):  # type: ignore[no-untyped-def]
        manifest = self._manifest(request.tenant_id, request.job_id)
        return storage_pb2.GetVisualizationResponse(
            visualization=visualization_service_pb2.GetVisualizationResponse(
                job_id=request.job_id,
                job_type=manifest["job_type"],
                slide_width=manifest["slide_width"],
                slide_height=manifest["slide_height"],
                mpp=manifest["mpp"],
                total_cells=manifest["total_cells"],
                tissue_fraction=manifest["tissue_fraction"],
                area_histogram=[
                    visualization_service_pb2.HistogramBin(lower=lo, upper=hi, count=n)
                    for lo, hi, n in manifest["area_histogram"]
                ],
                model=manifest["model"],
            )
        )

    async def GetSlideTile(self, request, context):  # type: ignore[no-untyped-def]
        wanted = request.request
        manifest = self._manifest(request.tenant_id, wanted.job_id)
        data = await viewer.slide_tile(viewer.require_manifest_slide(manifest), wanted.level, wanted.col, wanted.row)
        return httpbody_pb2.HttpBody(content_type="image/jpeg", data=data)

    async def ListCells(self, request, context):  # type: ignore[no-untyped-def]
        wanted = request.request
        tenant = request.tenant_id
        manifest = self._manifest(tenant, wanted.job_id)
        name = manifest["files"].get("json")
        if manifest["job_type"] != "cell_segmentation" or name is None:
            raise InvalidArgument(f"a {manifest['job_type']} job has no cells", field="job_id")
        key = f"{tenant}/{wanted.job_id}/{name}"
        found = await viewer.region_cells(
            key, lambda: self.store.read(key), wanted.x, wanted.y, wanted.width, wanted.height, wanted.max_polygons
        )
        return storage_pb2.ListCellsResponse(
            cells=visualization_service_pb2.ListCellsResponse(
                cells=[
                    visualization_service_pb2.CellShape(
                        cell_id=cell_id, centroid_x=cx, centroid_y=cy, polygon=() if polygon is None else polygon.tolist()
                    )
                    for cell_id, cx, cy, polygon in found["cells"]
                ],
                centroids_only=found["centroids_only"],
                total_in_region=found["total"],
            )
        )
