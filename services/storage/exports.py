"""Result file formats.

- `{workflow_id}_{job_id}_segmentation.json`: the original README's format, strict
  JSON: cells[] with cell_id, label_id, polygon as [y, x] pairs (level-0 pixels),
  area (px), centroid as [x, y]; total_cells, tiles_processed, method; plus the
  model and its version so no one mistakes the shipped synthetic model for another.
- `{workflow_id}_{job_id}_cells.geojson`: a QuPath-compatible FeatureCollection of
  the same cells (objectType "detection", classification, measurements as a map).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from services.common.api.slidelane.internal.v1 import messaging_pb2

NUCLEUS_CLASS = {"name": "Nucleus", "color": [0, 90, 255]}


def segmentation_name(workflow_id: str, job_id: str) -> str:
    return f"{workflow_id}_{job_id}_segmentation.json"


def geojson_name(workflow_id: str, job_id: str) -> str:
    return f"{workflow_id}_{job_id}_cells.geojson"


def _round(value: float) -> float:
    return round(float(value), 2)


def segmentation_document(
    plan: messaging_pb2.JobPlan, cells: Iterable[messaging_pb2.Cell], tiles_processed: int
) -> dict[str, Any]:
    records = [
        {
            "cell_id": index,
            "label_id": cell.label_id,
            "polygon": [[_round(y), _round(x)] for x, y in zip(cell.polygon_x, cell.polygon_y, strict=True)],
            "area": _round(cell.area),
            "centroid": [_round(cell.centroid_x), _round(cell.centroid_y)],
        }
        for index, cell in enumerate(cells, start=1)
    ]
    return {
        "workflow_id": plan.workflow_id,
        "job_id": plan.workflow_job_id,
        "image": {"width": plan.slide_width, "height": plan.slide_height, "mpp": plan.mpp or None},
        "method": "instanseg",
        "model": plan.model,
        "total_cells": len(records),
        "tiles_processed": tiles_processed,
        "cells": records,
    }


def geojson_document(segmentation: dict[str, Any]) -> dict[str, Any]:
    mpp = segmentation["image"]["mpp"]
    features = []
    for cell in segmentation["cells"]:
        ring = [[x, y] for y, x in cell["polygon"]]
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        measurements = {
            "Area px^2": cell["area"],
            "Centroid X px": cell["centroid"][0],
            "Centroid Y px": cell["centroid"][1],
        }
        if mpp:
            measurements["Area um^2"] = _round(cell["area"] * mpp * mpp)
        features.append(
            {
                "type": "Feature",
                "id": f"cell-{cell['cell_id']}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "classification": NUCLEUS_CLASS,
                    "measurements": measurements,
                    "cell_id": cell["cell_id"],
                    "model": segmentation["model"],
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def dumps(document: dict[str, Any]) -> bytes:
    """Strict JSON: NaN or Infinity raise instead of producing invalid JSON."""
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def area_histogram(areas: list[float], bins: int = 20) -> list[tuple[float, float, int]]:
    if not areas:
        return []
    low, high = min(areas), max(areas)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for area in areas:
        counts[min(int((area - low) / width), bins - 1)] += 1
    return [(low + i * width, low + (i + 1) * width, counts[i]) for i in range(bins)]
