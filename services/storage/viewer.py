"""What the browser's slide viewer needs: Deep Zoom tiles and cells per region.

- Tiles: `openslide.deepzoom.DeepZoomGenerator` (254 px tiles, 1 px overlap, JPEG)
  over the slide named in the job's manifest, read through the shared slide reader
  (OpenSlide, else tifffile). Open slides and their generators are
  kept in a small LRU, so a viewer panning around does not reopen the file per tile.
- Cells: the job's segmentation JSON is loaded lazily, once, into a spatial grid
  index (numpy arrays sorted by grid bucket of the centroid). A region query
  touches only the buckets it overlaps, so it stays fast with 100k+ cells; it
  returns polygons when the region holds at most `max_polygons` cells, else only
  centroids (the viewer draws dots when zoomed out).

Both run blocking work (file reads, JSON parsing, JPEG encoding) in a thread, so the
storage service's event loop keeps serving while a big result loads.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

TILE_SIZE = 254
OVERLAP = 1
JPEG_QUALITY = 80
GRID_PX = 512  # grid bucket edge, level-0 pixels
DEFAULT_MAX_POLYGONS = 5000
HARD_MAX_POLYGONS = 20000  # polygons per answer at most, whatever the client asks
MAX_CENTROIDS = 50_000  # centroids per answer at most (beyond it an even sample of the region)


class _LRU:
    """A tiny thread-safe LRU of expensive objects, built once per key."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Any, threading.Lock] = {}

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:  # one builder per key; the others wait for its result
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = build()
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
                self._building.pop(key, None)
            return value

    def drop(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)


# ---------------------------------------------------------------- slides and tiles


class _DeepZoomSource:
    """The OpenSlide surface DeepZoomGenerator uses, over the shared SlideReader.

    The shared reader (services/common/slides.py) opens everything OpenSlide reads
    and falls back to tifffile for OME-TIFF and plain TIFF, so the viewer shows every
    slide a job can run on.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.dimensions = (reader.width, reader.height)
        self.level_count = reader.level_count
        self.level_dimensions = reader.level_dimensions
        self.level_downsamples = reader.level_downsamples
        self.properties: dict[str, str] = {}

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return self._reader.best_level_for_downsample(downsample)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Any:
        from PIL import Image

        rgb = self._reader.read_region(level, location[0], location[1], size[0], size[1])
        return Image.fromarray(rgb, mode="RGB").convert("RGBA")


def _deepzoom(path: str) -> Any:
    from openslide.deepzoom import DeepZoomGenerator

    from services.common.slides import SlideError, open_slide

    try:
        reader = open_slide(path)
    except SlideError as error:
        raise FailedPrecondition(f"the job's slide cannot be shown: {error}", field="job_id") from None
    return DeepZoomGenerator(_DeepZoomSource(reader), tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=False)


_generators = _LRU(capacity=16)


def deepzoom_levels(width: int, height: int) -> int:
    """Deep Zoom level count for a slide (what OpenSeadragon computes from width/height)."""
    return max(int(np.ceil(np.log2(max(width, height, 1)))), 0) + 1


def render_tile(image_path: str, level: int, col: int, row: int) -> bytes:
    """One JPEG Deep Zoom tile of the slide (blocking)."""
    generator = _generators.get(image_path, lambda: _deepzoom(image_path))
    if not 0 <= level < generator.level_count:
        raise InvalidArgument(
            f"level {level} is out of range: this slide has levels 0-{generator.level_count - 1}", field="level"
        )
    cols, rows = generator.level_tiles[level]
    if not 0 <= col < cols:
        raise InvalidArgument(f"col {col} is out of range: level {level} has columns 0-{cols - 1}", field="col")
    if not 0 <= row < rows:
        raise InvalidArgument(f"row {row} is out of range: level {level} has rows 0-{rows - 1}", field="row")
    try:
        tile = generator.get_tile(level, (col, row))
    except Exception as error:  # SlideError and OpenSlideError: the file went bad under us
        _generators.drop(image_path)
        raise FailedPrecondition(f"the job's slide cannot be read: {error}", field="job_id") from None
    out = io.BytesIO()
    tile.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


async def slide_tile(image_path: str, level: int, col: int, row: int) -> bytes:
    return await asyncio.to_thread(render_tile, image_path, level, col, row)


# ---------------------------------------------------------------- cells


@dataclass
class CellIndex:
    """Cells bucketed by centroid on a GRID_PX grid; arrays sorted by bucket key."""

    cell_ids: np.ndarray  # int64 (N,)
    cx: np.ndarray  # float64 (N,)
    cy: np.ndarray  # float64 (N,)
    keys: np.ndarray  # int64 (N,), sorted: bucket row * grid_cols + bucket col
    grid_cols: int
    grid_rows: int
    poly_offsets: np.ndarray  # int64 (N+1,): polygon i is coords[off[i]:off[i+1]] (x, y interleaved)
    poly_coords: np.ndarray  # float32

    @property
    def size(self) -> int:
        return len(self.cell_ids)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> CellIndex:
        cells = document.get("cells") or []
        n = len(cells)
        ids = np.fromiter((c.get("cell_id", i + 1) for i, c in enumerate(cells)), dtype=np.int64, count=n)
        cx = np.fromiter((c["centroid"][0] for c in cells), dtype=np.float64, count=n)
        cy = np.fromiter((c["centroid"][1] for c in cells), dtype=np.float64, count=n)
        lengths = np.fromiter((2 * len(c.get("polygon") or ()) for c in cells), dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        coords = np.empty(int(offsets[-1]), dtype=np.float32)
        for i, c in enumerate(cells):
            polygon = c.get("polygon") or ()
            if polygon:
                yx = np.asarray(polygon, dtype=np.float32)  # the file stores [y, x] pairs
                coords[offsets[i] : offsets[i + 1]] = yx[:, ::-1].reshape(-1)
        image = document.get("image") or {}
        width = max(float(image.get("width") or 0), float(cx.max(initial=0)) + 1)
        height = max(float(image.get("height") or 0), float(cy.max(initial=0)) + 1)
        grid_cols = int(width // GRID_PX) + 1
        grid_rows = int(height // GRID_PX) + 1
        gx = np.clip((cx // GRID_PX).astype(np.int64), 0, grid_cols - 1)
        gy = np.clip((cy // GRID_PX).astype(np.int64), 0, grid_rows - 1)
        keys = gy * grid_cols + gx
        order = np.argsort(keys, kind="stable")
        # Polygons are reordered lazily through `order`: keep offsets/coords in file order.
        index = cls(
            cell_ids=ids[order],
            cx=cx[order],
            cy=cy[order],
            keys=keys[order],
            grid_cols=grid_cols,
            grid_rows=grid_rows,
            poly_offsets=offsets,
            poly_coords=coords,
        )
        index._order = order  # type: ignore[attr-defined]
        return index

    def query(self, x: float, y: float, width: float, height: float) -> np.ndarray:
        """Positions (into the sorted arrays) of the cells whose centroid lies in the region."""
        if self.size == 0 or width <= 0 or height <= 0:
            return np.empty(0, dtype=np.int64)
        x1, y1 = x + width, y + height
        gx0 = max(int(x // GRID_PX), 0)
        gx1 = min(int(x1 // GRID_PX), self.grid_cols - 1)
        gy0 = max(int(y // GRID_PX), 0)
        gy1 = min(int(y1 // GRID_PX), self.grid_rows - 1)
        if gx0 > gx1 or gy0 > gy1:
            return np.empty(0, dtype=np.int64)
        rows = np.arange(gy0, gy1 + 1, dtype=np.int64) * self.grid_cols
        starts = np.searchsorted(self.keys, rows + gx0, side="left")
        ends = np.searchsorted(self.keys, rows + gx1, side="right")
        spans = [np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends, strict=True) if e > s]
        if not spans:
            return np.empty(0, dtype=np.int64)
        candidates = np.concatenate(spans)
        cx, cy = self.cx[candidates], self.cy[candidates]
        inside = (cx >= x) & (cx < x1) & (cy >= y) & (cy < y1)
        return candidates[inside]

    def polygon(self, position: int) -> np.ndarray:
        original = int(self._order[position])  # type: ignore[attr-defined]
        return self.poly_coords[self.poly_offsets[original] : self.poly_offsets[original + 1]]


_indexes = _LRU(capacity=4)


def load_index(key: Any, read_document: Callable[[], bytes]) -> CellIndex:
    return _indexes.get(key, lambda: CellIndex.from_document(json.loads(read_document())))


def list_cells(index: CellIndex, x: float, y: float, width: float, height: float, max_polygons: int) -> dict[str, Any]:
    """The region's cells as plain data: {cells: [(id, cx, cy, polygon|None)], centroids_only, total}."""
    if width < 0 or height < 0:
        raise InvalidArgument("width and height must not be negative", field="width" if width < 0 else "height")
    if max_polygons < 0:
        raise InvalidArgument("max_polygons must not be negative", field="max_polygons")
    limit = min(max_polygons or DEFAULT_MAX_POLYGONS, HARD_MAX_POLYGONS)
    positions = index.query(x, y, width, height)
    total = len(positions)
    centroids_only = total > limit
    if total > MAX_CENTROIDS:  # an even sample keeps the density picture and the answer small
        positions = positions[np.linspace(0, total - 1, MAX_CENTROIDS).astype(np.int64)]
    cells = [
        (
            int(index.cell_ids[p]),
            float(index.cx[p]),
            float(index.cy[p]),
            None if centroids_only else index.polygon(int(p)),
        )
        for p in positions
    ]
    return {"cells": cells, "centroids_only": centroids_only, "total": total}


async def region_cells(
    key: Any, read_document: Callable[[], bytes], x: float, y: float, width: float, height: float, max_polygons: int
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        return list_cells(load_index(key, read_document), x, y, width, height, max_polygons)

    return await asyncio.to_thread(work)


def require_manifest_slide(manifest: dict[str, Any]) -> str:
    path = manifest.get("image_path")
    if not path:
        raise NotFound("this job's results name no slide", field="job_id")
    return str(path)
