"""Event delivery benchmark: many concurrent WatchWorkflow streams through Envoy.

    python -m bench.events.run [--watchers 1000]

One cell_segmentation workflow per round; first 1 watcher (the baseline), then
`--watchers` at once, all native gRPC through Envoy from this process. So that
connecting 1000 streams is not measured as delivery latency, the watched workflow
waits for admission (limit 1, held by a blocker workflow) until every watcher has
its snapshot; then the blocker is cancelled and the watched workflow runs. Latency is
from the event's timestamp (stamped when the scheduler writes it, just before it is
published) to its arrival at the client: p50/p99 over every event at every watcher.
The gateway's CPU and memory are sampled with psutil while the watchers run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import psutil

from services.common.api.slidelane.v1 import types_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from tests.cluster import start_cluster
from tests.slides import write_test_slide

CHANNELS = 20  # HTTP/2 connections the watchers are spread over


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


async def watch_all(
    target: str, user: str, workflow_id: str, watchers: int, all_connected: asyncio.Event
) -> tuple[list[float], int]:
    channels = [grpc.aio.insecure_channel(target) for _ in range(min(CHANNELS, watchers))]
    latencies: list[float] = []
    lagged = 0
    connected = 0

    async def one(index: int) -> None:
        nonlocal lagged, connected
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(channels[index % len(channels)])
        stream = stub.WatchWorkflow(
            workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow_id), metadata=(("x-user-id", user),)
        )
        async for response in stream:
            event = response.event
            if event.HasField("watch_lagged"):
                lagged += 1
                return
            if event.HasField("snapshot"):
                connected += 1
                if connected == watchers:
                    all_connected.set()
            else:
                latencies.append((time.time() - (event.time.seconds + event.time.nanos / 1e9)) * 1000)

    await asyncio.gather(*(one(i) for i in range(watchers)))
    for channel in channels:
        await channel.close()
    return latencies, lagged


async def submit(stub: workflow_service_pb2_grpc.WorkflowServiceStub, user: str, image: Path) -> str:
    reply = await stub.CreateWorkflow(
        workflow_service_pb2.CreateWorkflowRequest(
            name="events bench",
            jobs=[types_pb2.JobSpec(job_id="segment", job_type="cell_segmentation", image_path=str(image))],
        ),
        metadata=(("x-user-id", user),),
    )
    return reply.workflow.workflow_id


def run_round(cluster, image: Path, watchers: int, user: str) -> dict:
    gateway = psutil.Process(cluster.pids()["gateway"])
    gateway.cpu_percent(None)
    samples: list[tuple[float, float]] = []
    stop = False

    async def sample() -> None:
        while not stop:
            await asyncio.sleep(0.5)
            samples.append((gateway.cpu_percent(None), gateway.memory_info().rss / 2**20))

    async def main() -> tuple[list[float], int]:
        nonlocal stop
        async with grpc.aio.insecure_channel(cluster.grpc_target) as channel:
            stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
            blocker = await submit(stub, f"{user}-blocker", image)
            workflow_id = await submit(stub, user, image)  # QUEUED behind the blocker
            all_connected = asyncio.Event()
            sampler = asyncio.create_task(sample())
            watching = asyncio.create_task(watch_all(cluster.grpc_target, user, workflow_id, watchers, all_connected))
            try:
                await all_connected.wait()
                await stub.CancelWorkflow(
                    workflow_service_pb2.CancelWorkflowRequest(workflow_id=blocker), metadata=(("x-user-id", f"{user}-blocker"),)
                )
                return await watching
            finally:
                stop = True
                await sampler

    started = time.perf_counter()
    latencies, lagged = asyncio.run(main())
    return {
        "watchers": watchers,
        "events_delivered": len(latencies),
        "lagged_watchers": lagged,
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "gateway_cpu_mean_pct": round(statistics.fmean(c for c, _ in samples), 1) if samples else None,
        "gateway_cpu_max_pct": round(max(c for c, _ in samples), 1) if samples else None,
        "gateway_rss_max_mib": round(max(m for _, m in samples), 1) if samples else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_cluster(Path(tmp), env={"SLIDELANE_INFERENCE_WORKERS": "1", "SLIDELANE_MAX_ACTIVE_USERS": "1"}) as cluster,
    ):
        image = cluster.slide_root / "events.tif"
        write_test_slide(image, width=2048, height=1536, seed=3)
        results = [run_round(cluster, image, 1, "baseline"), run_round(cluster, image, args.watchers, "crowd")]
    print(json.dumps(results, indent=2))
    base, crowd = results
    print(f"p99 with {crowd['watchers']} watchers: {crowd['p99_ms']} ms ({crowd['p99_ms'] / base['p99_ms']:.1f}x one watcher's)")


if __name__ == "__main__":
    main()
