"""Merging tile results into a job's result, idempotently and without pixels.

Each tile result is spooled as its own file, named by (job, attempt, tile index):
writing it twice is harmless, and the set of files IS the set of tiles counted, so
a restart or a redelivered message never counts a tile twice. When every planned
tile is there the job is finalised into the result files, streamed from the spool a
tile at a time: memory holds one tile's cells, not the job's.
"""

from __future__ import annotations

import json
import shutil
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.storage import exports
from services.storage.store import LocalDirectoryStore, ResultStore

PLAN_FILE = "plan.pb"
MANIFEST = "manifest.json"


@dataclass
class AttemptSpool:
    folder: Path
    plan: messaging_pb2.JobPlan | None = None
    tiles: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.plan is not None and len(self.tiles) >= self.plan.tiles_total

    @staticmethod
    def tile_file(index: int) -> str:
        return f"tile-{index}.pb"

    def cells(self) -> Iterator[messaging_pb2.Cell]:
        """Every spooled cell in tile order, reading one tile at a time from disk."""
        for index in sorted(self.tiles):
            tile = messaging_pb2.TileResult.FromString((self.folder / self.tile_file(index)).read_bytes())
            yield from tile.cells


class ResultMerger:
    def __init__(self, spool_root: Path, store: ResultStore) -> None:
        self.spool_root = spool_root
        self.store = store
        self._spools: dict[tuple[str, str, int], AttemptSpool] = {}

    def _spool(self, tenant: str, job_id: str, attempt: int) -> AttemptSpool:
        key = (tenant, job_id, attempt)
        spool = self._spools.get(key)
        if spool is None:
            folder = self.spool_root / tenant / job_id / str(attempt)
            folder.mkdir(parents=True, exist_ok=True)
            spool = AttemptSpool(folder)
            # After a restart the files on disk are the truth.
            if (folder / PLAN_FILE).is_file():
                spool.plan = messaging_pb2.JobPlan.FromString((folder / PLAN_FILE).read_bytes())
            spool.tiles = {int(p.stem.split("-")[1]) for p in folder.glob("tile-*.pb")}
            self._spools[key] = spool
        return spool

    def add_plan(self, plan: messaging_pb2.JobPlan) -> AttemptSpool:
        spool = self._spool(plan.tenant_id, plan.job_id, plan.attempt)
        LocalDirectoryStore(spool.folder).put(PLAN_FILE, plan.SerializeToString())
        spool.plan = plan
        return spool

    def add_tile(self, tile: messaging_pb2.TileResult) -> tuple[AttemptSpool, bool]:
        """Spool one tile; returns the spool and whether the tile was new."""
        spool = self._spool(tile.tenant_id, tile.job_id, tile.attempt)
        if tile.tile_index in spool.tiles:
            return spool, False
        LocalDirectoryStore(spool.folder).put(spool.tile_file(tile.tile_index), tile.SerializeToString())
        spool.tiles.add(tile.tile_index)
        return spool, True

    def finalise_segmentation(self, spool: AttemptSpool) -> messaging_pb2.JobSucceeded:
        """Streams the spool into the result files: one tile's cells in memory at a time."""
        plan = spool.plan
        assert plan is not None
        # The segmentation file names total_cells before its cells, so a first pass
        # counts them, keeping only their areas (8 bytes a cell) for the histogram.
        areas = array("d", (exports.cell_area(cell) for cell in spool.cells()))
        names = {
            "json": exports.segmentation_name(plan.workflow_id, plan.workflow_job_id),
            "geojson": exports.geojson_name(plan.workflow_id, plan.workflow_job_id),
        }
        prefix = f"{plan.tenant_id}/{plan.job_id}"
        with (
            self.store.writer(f"{prefix}/{names['json']}") as segmentation_file,
            self.store.writer(f"{prefix}/{names['geojson']}") as geojson_file,
        ):
            exports.write_cell_results(plan, spool.cells(), len(areas), len(spool.tiles), segmentation_file, geojson_file)
        self._write_manifest(plan, names, total_cells=len(areas), areas=areas)
        return messaging_pb2.JobSucceeded(result_files=list(names.values()), total_cells=len(areas))

    def finalise_tissue_mask(self, result: messaging_pb2.TissueMaskResult) -> messaging_pb2.JobSucceeded:
        plan = result.plan
        stem = f"{plan.workflow_id}_{plan.workflow_job_id}"
        names = {"json": f"{stem}_tissue.json", "geojson": f"{stem}_tissue.geojson", "mask": f"{stem}_tissue_mask.png"}
        prefix = f"{plan.tenant_id}/{plan.job_id}"
        summary = {
            "workflow_id": plan.workflow_id,
            "job_id": plan.workflow_job_id,
            "method": "otsu_saturation",
            "tissue_fraction": round(plan.tissue_fraction, 6),
            "mask_downsample": result.mask_downsample,
            "image": {"width": plan.slide_width, "height": plan.slide_height, "mpp": plan.mpp or None},
        }
        self.store.put(f"{prefix}/{names['mask']}", result.mask_png)
        self.store.put(f"{prefix}/{names['geojson']}", result.geojson.encode())
        self.store.put(f"{prefix}/{names['json']}", exports.dumps(summary))
        self._write_manifest(plan, names, total_cells=0, areas=[])
        return messaging_pb2.JobSucceeded(result_files=list(names.values()))

    def _write_manifest(
        self, plan: messaging_pb2.JobPlan, names: dict[str, str], total_cells: int, areas: Sequence[float]
    ) -> None:
        manifest = {
            "job_type": plan.job_type,
            "files": names,
            "model": plan.model,
            "total_cells": total_cells,
            "tissue_fraction": plan.tissue_fraction,
            "slide_width": plan.slide_width,
            "slide_height": plan.slide_height,
            "mpp": plan.mpp,
            "image_path": plan.image_path,
            "workflow_id": plan.workflow_id,
            "area_histogram": exports.area_histogram(areas),
        }
        self.store.put(f"{plan.tenant_id}/{plan.job_id}/{MANIFEST}", exports.dumps(manifest))

    def read_manifest(self, tenant: str, job_id: str) -> dict | None:
        key = f"{tenant}/{job_id}/{MANIFEST}"
        return json.loads(self.store.read(key)) if self.store.exists(key) else None

    def forget(self, tenant: str, job_id: str) -> None:
        """Drop a job's spool (after success, or when it was cancelled)."""
        for key in [k for k in self._spools if k[:2] == (tenant, job_id)]:
            del self._spools[key]
        shutil.rmtree(self.spool_root / tenant / job_id, ignore_errors=True)
