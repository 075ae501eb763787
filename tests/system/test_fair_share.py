"""Fair share of worker throughput among active tenants, measured end to end.

Three tenants each submit one equal, big cell_segmentation job (56 tiles of the same
slide): tenant A first, B and C a second later, so A's tiles reach the queue first.
One inference replica is the bottleneck they share.

What "fair" means here, as a user sees it: equal work submitted close together takes
about equally long. Each job's turnaround (started_at to finished_at, as the API
reports them) must be within 20 % of the others' (longest / shortest <= 1.2); ideal
processor sharing gives (3W - d) / (3W - 2d) for jobs of W worker-seconds and a head
start d of A's tiles (planning B and C takes ~3 s), about 1.1 here, while FIFO gives
about W : 2W : 3W. And nobody is starved until another's job ends: just before the
first job ends, every job has done at least half its tiles (~80 % when shared fairly).

The test can fail: with the planner's TILE_WINDOW set to 100,000 (each job's tiles all
published at once, so the TILES queue is FIFO) it measured turnarounds of 22.7, 39.4
and 55.8 s (ratio 2.46) with B and C at 0 % when A ended; as shipped (window 12) it
measured 46.0, 47.0 and 49.5 s (ratio 1.08) with B and C at 80 % (2026-11-28, the
2-core machine shared with other work).

Only the model is faked: a TorchScript stand-in with InstanSeg's interface that spends
fixed compute per tile and finds no nuclei, loaded through
SLIDELANE_INSTANSEG_MODEL like any model file. The shipped model costs ~1.6 s a tile
on CPU, which would make this test take minutes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from services.common.api.slidelane.v1 import types_pb2, workflow_service_pb2
from tests.system.helpers import as_user, create, job, seconds, slide, workflows_stub

pytestmark = pytest.mark.timeout(300)

TENANTS = ("tenant-a", "tenant-b", "tenant-c")
STAGGER_SECONDS = 1.0
JOB_FINAL = {
    types_pb2.JOB_STATE_SUCCEEDED,
    types_pb2.JOB_STATE_FAILED,
    types_pb2.JOB_STATE_UPSTREAM_FAILED,
    types_pb2.JOB_STATE_CANCELLED,
}


class FixedCostModel(torch.nn.Module):
    """InstanSeg's interface (pixel_size, images in, label image out), fixed compute per tile, no nuclei."""

    def __init__(self, rounds: int, pixel_size: float = 0.5) -> None:
        super().__init__()
        self.pixel_size = pixel_size
        self.rounds = rounds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=1, keepdim=True)
        for _ in range(self.rounds):
            y = torch.nn.functional.avg_pool2d(y, 3, 1, 1)
        return (y * 0).to(torch.int32)


TILE_SECONDS = 0.25  # the stand-in's compute per tile, whatever the machine


def _calibrated_rounds(tile_px: int = 512, probe_rounds: int = 20) -> int:
    """Rounds that cost ~TILE_SECONDS per tile on this machine. A fixed count made each job's
    work W shrink on a faster host while A's head start d (the stagger, planning B and C, ~2
    s) did not, and even ideal sharing then exceeds the bound: (3W - d) / (3W - 2d) was ~1.2
    at W ~4-6 s. At W ~14 s it is ~1.07. The fastest of three probes: a probe slowed by
    another process would make the tiles too cheap."""
    probe, tile = FixedCostModel(probe_rounds), torch.rand(1, 3, tile_px, tile_px)
    probe(tile)  # warm
    took = []
    for _ in range(3):
        started = time.perf_counter()
        probe(tile)
        took.append(time.perf_counter() - started)
    return max(1, round(probe_rounds * TILE_SECONDS / min(took)))


def _stub_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "instanseg.pt"
    torch.jit.save(torch.jit.script(FixedCostModel(rounds=_calibrated_rounds())), str(path))
    return path


def _jobs(stub, user: str) -> list[types_pb2.Job]:
    listed = stub.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), metadata=as_user(user))
    return [j for w in listed.workflows for j in w.jobs]


def test_three_tenants_with_equal_big_jobs_share_the_worker_fairly(cluster_factory, tmp_path):
    model = _stub_model(tmp_path / "fixed_cost_stub")
    slides = tmp_path / "slides"
    slides.mkdir()
    with ThreadPoolExecutor(1) as pool:
        # 4096 x 2048 at 0.5 um/px with a 70 % tissue ellipse: 56 tiles a job. Its 2x level
        # keeps planning short, which would otherwise add to A's head start. Written
        # (~5 s) while the cluster starts.
        written = pool.submit(
            slide, slides, "big.tif", width=4096, height=2048, tissue=0.7, seed=3, nuclei_per_mm2=500, downsamples=(1, 2, 8)
        )
        cluster = cluster_factory(
            env={
                "SLIDELANE_INSTANSEG_MODEL": str(model),
                "SLIDELANE_DEVICE": "cpu",
                "SLIDELANE_INFERENCE_WORKERS": "1",
                "SLIDELANE_MAX_ACTIVE_USERS": "3",
                "SLIDELANE_SLIDE_ROOTS": str(slides),
            }
        )
        image = written.result()
    stub = workflows_stub(cluster.channel())

    first, *later = TENANTS
    create(stub, first, job("segment", image, job_type="cell_segmentation"))
    time.sleep(STAGGER_SECONDS)
    for user in later:
        create(stub, user, job("segment", image, job_type="cell_segmentation"))

    # Poll until every job is final, keeping each job's progress as last seen before the first ended.
    progress_before_first_end: dict[str, float] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        current = {user: _jobs(stub, user)[0] for user in TENANTS}
        if all(j.state in JOB_FINAL for j in current.values()):
            break
        if not any(j.state in JOB_FINAL for j in current.values()):
            progress_before_first_end = {u: j.progress.tiles_done / max(j.progress.tiles_total, 1) for u, j in current.items()}
        time.sleep(0.25)
    jobs = {user: _jobs(stub, user)[0] for user in TENANTS}
    assert {j.state for j in jobs.values()} == {types_pb2.JOB_STATE_SUCCEEDED}, jobs
    assert len({j.progress.tiles_total for j in jobs.values()}) == 1, "the jobs must be equal"

    turnaround = {u: seconds(j.finished_at) - seconds(j.started_at) for u, j in jobs.items()}
    ratio = max(turnaround.values()) / min(turnaround.values())
    shares = {u: round(p, 2) for u, p in progress_before_first_end.items()}
    makespan = max(seconds(j.finished_at) for j in jobs.values()) - min(seconds(j.started_at) for j in jobs.values())
    rounded = {u: round(t, 1) for u, t in turnaround.items()}
    summary = f"turnarounds (s) {rounded}, all three in {makespan:.1f} s, share of tiles done before the first end {shares}"
    print(summary)
    assert ratio <= 1.2, f"unfair: longest / shortest turnaround {ratio:.2f} > 1.2; {summary}"
    assert min(progress_before_first_end.values(), default=0) >= 0.5, f"a tenant was starved until another's job ended; {summary}"
