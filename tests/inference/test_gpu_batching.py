"""A GPU worker that runs out of memory halves its batch and loses no tile.

No GPU here: a fake device that raises CUDA's OutOfMemoryError for batches above a
limit and otherwise runs the forward on the CPU (the one thing faked is the GPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.inference import segmentation
from services.inference.segmentation import Segmenter
from tests.inference.test_seam import DarkBlobLabeller


class FakeGpu:
    """Fits `limit` tiles per forward; records the batch sizes it was asked for."""

    def __init__(self, cpu: Segmenter, limit: int) -> None:
        self.cpu = cpu
        self.limit = limit
        self.asked: list[int] = []

    def forward(self, tensors: list[torch.Tensor]) -> list[np.ndarray]:
        self.asked.append(len(tensors))
        if len(tensors) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (fake device)")
        return self.cpu._forward(tensors)


def _tiles(count: int) -> tuple[list[np.ndarray], list[messaging_pb2.TileTask]]:
    rng = np.random.default_rng(3)
    pixels, tasks = [], []
    for index in range(count):
        image = np.full((128, 128, 3), 230, np.uint8)
        for _ in range(4):  # dark round blobs: the stub model's nuclei
            cy, cx = rng.integers(16, 112, size=2)
            yy, xx = np.ogrid[:128, :128]
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 40
        rect = messaging_pb2.Rect(x=index * 128, y=0, width=128, height=128)
        pixels.append(image)
        tasks.append(messaging_pb2.TileTask(tile_index=index, read_region=rect, core_region=rect, level=0, scale=1.0))
    return pixels, tasks


@pytest.fixture
def stub_model(tmp_path: Path) -> Path:
    path = tmp_path / "instanseg.pt"
    torch.jit.save(torch.jit.script(DarkBlobLabeller()), str(path))
    return path


def test_out_of_memory_halves_the_batch_for_good_and_every_tile_is_segmented(stub_model: Path, monkeypatch) -> None:
    cpu = Segmenter(stub_model, "cpu", "stub")
    gpu = Segmenter(stub_model, "cpu", "stub")
    gpu.device, gpu.forward_batch = "cuda", segmentation.CUDA_BATCH  # as a CUDA worker starts
    fake = FakeGpu(cpu, limit=4)
    monkeypatch.setattr(gpu, "_forward", fake.forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    pixels, tasks = _tiles(10)

    cells = gpu.segment_tiles(pixels, tasks)

    expected = cpu.segment_tiles(pixels, tasks)
    assert [len(c) for c in cells] == [len(c) for c in expected] and sum(map(len, expected)) >= 20
    assert [[(c.centroid_x, c.centroid_y) for c in tile] for tile in cells] == [
        [(c.centroid_x, c.centroid_y) for c in tile] for tile in expected
    ]
    assert fake.asked[:3] == [10, 8, 4]  # all 10 (batch 16), then 8, then 4 tiles per forward: it fits
    assert gpu.forward_batch == 4
    fake.asked.clear()
    gpu.segment_tiles(pixels, tasks)  # the smaller batch stays: no OOM again
    assert fake.asked == [4, 4, 2]


def test_a_cpu_worker_does_not_hide_out_of_memory(stub_model: Path, monkeypatch) -> None:
    cpu = Segmenter(stub_model, "cpu", "stub")
    monkeypatch.setattr(cpu, "_forward", FakeGpu(cpu, limit=0).forward)
    pixels, tasks = _tiles(1)
    # The batch fails (and is redelivered) rather than shrinking below one tile forever.
    with pytest.raises(torch.OutOfMemoryError):
        cpu.segment_tiles(pixels, tasks)
