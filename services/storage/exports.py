"""Result file formats.

- `{workflow_id}_{job_id}_segmentation.json`: the original README's format, strict
  JSON: cells[] with cell_id, label_id, polygon as [y, x] pairs (level-0 pixels),
  area (px), centroid as [x, y]; total_cells, tiles_processed, method; plus the
  model and its version so no one mistakes the shipped synthetic model for another.
- `{workflow_id}_{job_id}_cells.geojson`: a QuPath-compatible FeatureCollection of
  the same cells (objectType "detection", classification, measurements as a map).

Both are written as a stream, one cell at a time, so a slide with half a million
cells never holds its documents (gigabytes as Python objects) in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from services.common.api.slidelane.internal.v1 import messaging_pb2

NUCLEUS_CLASS = {"name": "Nucleus", "color": [0, 90, 255]}


def segmentation_name(workflow_id: str, job_id: str) -> str:
    return f"{workflow_id}_{job_id}_segmentation.json"


def geojson_name(workflow_id: str, job_id: str) -> str:
    return f"{workflow_id}_{job_id}_cells.geojson"


def _round(value: float) -> float:
    return round(float(value), 2)


def cell_area(cell: messaging_pb2.Cell) -> float:
    """The area as both result files and the manifest's histogram give it."""
    return _round(cell.area)


def write_cell_results(
    plan: messaging_pb2.JobPlan,
    cells: Iterable[messaging_pb2.Cell],
    total_cells: int,
    tiles_processed: int,
    segmentation_file: BinaryIO,
    geojson_file: BinaryIO,
) -> None:
    """Both cell result files, one cell at a time: memory holds one cell, not all of them.

    `total_cells` comes first in the segmentation file, so the caller counts the cells
    beforehand; a different count here raises rather than write a file that lies.
    """
    mpp = plan.mpp or None
    head = {
        "workflow_id": plan.workflow_id,
        "job_id": plan.workflow_job_id,
        "image": {"width": plan.slide_width, "height": plan.slide_height, "mpp": mpp},
        "method": "instanseg",
        "model": plan.model,
        "total_cells": total_cells,
        "tiles_processed": tiles_processed,
    }
    segmentation = JsonListWriter(segmentation_file, head, "cells")
    geojson = JsonListWriter(geojson_file, {"type": "FeatureCollection"}, "features")
    written = 0
    for written, cell in enumerate(cells, start=1):
        record = _cell_record(written, cell)
        segmentation.add(record)
        geojson.add(_geojson_feature(record, mpp, plan.model))
    if written != total_cells:
        raise ValueError(f"{written} cells were written where {total_cells} were counted")
    segmentation.close()
    geojson.close()


def _cell_record(cell_id: int, cell: messaging_pb2.Cell) -> dict[str, Any]:
    return {
        "cell_id": cell_id,
        "label_id": cell.label_id,
        "polygon": [[_round(y), _round(x)] for x, y in zip(cell.polygon_x, cell.polygon_y, strict=True)],
        "area": cell_area(cell),
        "centroid": [_round(cell.centroid_x), _round(cell.centroid_y)],
    }


def _geojson_feature(record: dict[str, Any], mpp: float | None, model: str) -> dict[str, Any]:
    ring = [[x, y] for y, x in record["polygon"]]
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    measurements = {
        "Area px^2": record["area"],
        "Centroid X px": record["centroid"][0],
        "Centroid Y px": record["centroid"][1],
    }
    if mpp:
        measurements["Area um^2"] = _round(record["area"] * mpp * mpp)
    return {
        "type": "Feature",
        "id": f"cell-{record['cell_id']}",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "detection",
            "classification": NUCLEUS_CLASS,
            "measurements": measurements,
            "cell_id": record["cell_id"],
            "model": model,
        },
    }


class JsonListWriter:
    """Writes `{**head, key: [item, ...]}` to a file one item at a time: byte for byte
    what `dumps` gives for the whole document, without ever holding it."""

    def __init__(self, handle: BinaryIO, head: dict[str, Any], key: str) -> None:
        self._handle = handle
        handle.write(dumps({**head, key: []})[: -len(b"]}")])
        self._separator = b""

    def add(self, item: dict[str, Any]) -> None:
        self._handle.write(self._separator + dumps(item))
        self._separator = b","

    def close(self) -> None:
        self._handle.write(b"]}")


def dumps(document: dict[str, Any]) -> bytes:
    """Strict JSON: NaN or Infinity raise instead of producing invalid JSON."""
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def area_histogram(areas: Sequence[float], bins: int = 20) -> list[tuple[float, float, int]]:
    if not areas:
        return []
    low, high = min(areas), max(areas)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for area in areas:
        counts[min(int((area - low) / width), bins - 1)] += 1
    return [(low + i * width, low + (i + 1) * width, counts[i]) for i in range(bins)]
