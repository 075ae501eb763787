"""Nucleus segmentation of planned tiles with an InstanSeg TorchScript module.

Per batch: normalise each tile with its slide's percentiles (one contrast for the
whole slide, so no seams), resize to the model's pixel size, pad to a common shape
and run batched forwards (the whole batch at once on a GPU, one tile at a time on a
CPU, where that is faster). Labels become polygons in level-0 pixels; a tile keeps
only nuclei whose centroid lies in its core, so each nucleus is reported once and
whole by exactly one tile (the overlap is wider than any nucleus).

Pixel convention (shared with SlideCache.read_tile): a tile's pixel array covers its
read_region; array pixel (i, j) has its centre at level-0
(read.x + (j + 0.5) * read.width / w, read.y + (i + 0.5) * read.height / h).
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage import measure

from services.common.api.slidelane.internal.v1 import messaging_pb2

log = logging.getLogger(__name__)
# Tiles a worker pulls and acks together. On a CPU a tile takes seconds and a pull a
# millisecond: pulling one at a time keeps a job's last tiles spread over every replica
# instead of leaving one replica with a batch of four while the others idle.
CPU_BATCH = 1
CUDA_BATCH = 16
# Tiles per forward pass. On a CPU one tile at a time is faster per tile than a batch
# (InstanSeg UNet, 512 px tiles, 1 thread: ~1.7-2.1 s vs ~3.0-3.6 s per tile at batch 4:
# bigger activations fall out of cache), so forwards are batched on a GPU only.
CPU_FORWARD_BATCH = 1
PAD_MULTIPLE = 32  # UNet downsampling: keep every tile on the same pooling grid


@dataclass(frozen=True)
class _Prepared:
    tensor: torch.Tensor  # 3 x H x W, normalised, at model pixel size
    sx: float  # level-0 px per model px (x)
    sy: float


class Segmenter:
    def __init__(self, model_path: Path, device: str = "auto", label: str = "") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA device")
        self.device = device
        self.label = label or Path(model_path).parent.name
        self.model = torch.jit.load(str(model_path), map_location=device).eval()
        self.pixel_size = float(self.model.pixel_size)
        self.batch_size = CUDA_BATCH if device == "cuda" else CPU_BATCH
        self.forward_batch = CUDA_BATCH if device == "cuda" else CPU_FORWARD_BATCH
        self._lock = threading.Lock()  # one forward at a time per module (GPU memory, CPU threads)

    # -- public -------------------------------------------------------------------------
    def segment_tiles(self, pixels: list[np.ndarray], tasks: list[messaging_pb2.TileTask]) -> list[list[messaging_pb2.Cell]]:
        if len(pixels) != len(tasks):
            raise ValueError("pixels and tasks differ in length")
        prepared = [self._prepare(p, t) for p, t in zip(pixels, tasks, strict=True)]
        results: list[list[messaging_pb2.Cell]] = []
        start = 0
        while start < len(prepared):
            chunk = prepared[start : start + self.forward_batch]
            try:
                labels = self._forward([p.tensor for p in chunk])
            except torch.OutOfMemoryError:
                if self.device != "cuda" or self.forward_batch == 1:
                    raise
                torch.cuda.empty_cache()
                self.forward_batch = max(1, self.forward_batch // 2)  # adapt for the rest of this worker's life
                log.warning("CUDA out of memory; batch size now %d", self.forward_batch)
                continue
            for offset, label_image in enumerate(labels):
                index = start + offset
                results.append(_cells_from_labels(label_image, tasks[index], prepared[index]))
            start += len(chunk)
        return results

    # -- steps ----------------------------------------------------------------------------
    def _prepare(self, pixels: np.ndarray, task: messaging_pb2.TileTask) -> _Prepared:
        read = task.read_region
        h, w = pixels.shape[:2]
        low = np.asarray(task.norm_low or [0.0, 0.0, 0.0], np.float32)
        high = np.asarray(task.norm_high or [255.0, 255.0, 255.0], np.float32)
        x = torch.from_numpy(np.ascontiguousarray(pixels[..., :3])).permute(2, 0, 1).float()
        x = (x - torch.from_numpy(low)[:, None, None]) / torch.from_numpy(np.maximum(high - low, 1e-3))[:, None, None]
        scale = task.scale or 1.0
        out_w = max(1, int(round(read.width * scale)))
        out_h = max(1, int(round(read.height * scale)))
        if (out_h, out_w) != (h, w):
            # antialias: downsampling without it aliases chromatin texture into fake edges
            x = F.interpolate(x[None], size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)[0]
        return _Prepared(x, read.width / out_w, read.height / out_h)

    def _forward(self, tensors: list[torch.Tensor]) -> list[np.ndarray]:
        height = max(t.shape[1] for t in tensors)
        width = max(t.shape[2] for t in tensors)
        height += (-height) % PAD_MULTIPLE
        width += (-width) % PAD_MULTIPLE
        batch = torch.zeros((len(tensors), 3, height, width))
        for i, t in enumerate(tensors):
            # Padding = the edge pixels repeated: no artificial glass/tissue border.
            batch[i] = F.pad(t[None], (0, width - t.shape[2], 0, height - t.shape[1]), mode="replicate")[0]
        with self._lock, torch.inference_mode(), warnings.catch_warnings():
            # InstanSeg's post-processing uses sparse CSR tensors, and torch warns on every call.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            batch = batch.to(self.device)
            if self.device == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.model(batch)
            else:
                out = self.model(batch)
            out = out.detach().to("cpu")
        return [out[i, 0, : t.shape[1], : t.shape[2]].numpy().astype(np.int32) for i, t in enumerate(tensors)]


def _cells_from_labels(labels: np.ndarray, task: messaging_pb2.TileTask, prep: _Prepared) -> list[messaging_pb2.Cell]:
    read, core = task.read_region, task.core_region
    cells: list[messaging_pb2.Cell] = []
    # Model ids are not contiguous (and may be large): relabel 1..N, report the model's id.
    ids, inverse = np.unique(labels, return_inverse=True)
    dense = inverse.reshape(labels.shape).astype(np.int32)
    if ids[0] != 0:
        dense += 1  # no background in this tile: keep 0 free
        ids = np.concatenate([[0], ids])
    objects = ndi.find_objects(dense)
    for index, box in enumerate(objects, start=1):
        if box is None:
            continue
        mask = dense[box] == index
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        # centroid of pixel centres, in level-0 coordinates
        cx = read.x + (xs.mean() + box[1].start + 0.5) * prep.sx
        cy = read.y + (ys.mean() + box[0].start + 0.5) * prep.sy
        if not (core.x <= cx < core.x + core.width and core.y <= cy < core.y + core.height):
            continue  # another tile's core owns it
        contours = measure.find_contours(np.pad(mask, 1).astype(np.uint8), 0.5)
        if not contours:
            continue
        contour = max(contours, key=len)
        rows = contour[:, 0] - 1 + box[0].start
        cols = contour[:, 1] - 1 + box[1].start
        cells.append(
            messaging_pb2.Cell(
                polygon_x=(read.x + (cols + 0.5) * prep.sx).tolist(),
                polygon_y=(read.y + (rows + 0.5) * prep.sy).tolist(),
                area=float(len(ys) * prep.sx * prep.sy),
                centroid_x=float(cx),
                centroid_y=float(cy),
                label_id=int(ids[index]),
            )
        )
    return cells
