"""Scheduler benchmark: many tiny jobs in many lanes, Slidelane vs Celery, one script.

    python -m bench.scheduler.run [--tenants 10 --branches 3 --chain 60 --size 64 --rounds 3]

Shape: every (tenant, branch) lane gets one workflow that is a chain of `--chain`
tissue_mask jobs on a tiny slide, so scheduling overhead dominates; every lane submits
at once, as its own client. Celery runs the same shape (a chain per lane, the lanes as
a group) doing the same work through the same code (the worker's tissue mask and
storage's result files, see celery_app.py), with the Redis broker at 127.0.0.1:6379. Reported
for each: throughput (jobs/s, first submit to the last job's recorded end), dispatch
latency (a dependency's end to its dependent's start, p50/p99; Slidelane's start is the
dispatch, after which the job may wait for a free planner: that wait is reported beside it)
and the CPU each part spent per job, for Slidelane on SQLite and on PostgreSQL. With --rounds N the systems
run N times, interleaved, and each one's median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.measure import CpuMeter
from services.common.api.slidelane.v1 import types_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from services.common.settings import METRICS_OFFSET
from tests.cluster import Cluster, start_cluster
from tests.databases import POSTGRES
from tests.slides import write_test_slide

ROOT = Path(__file__).resolve().parents[2]
FINAL = {types_pb2.WORKFLOW_STATE_SUCCEEDED, types_pb2.WORKFLOW_STATE_FAILED, types_pb2.WORKFLOW_STATE_CANCELLED}


@dataclass
class Result:
    system: str
    jobs: int
    seconds: float
    jobs_per_second: float
    dispatch_p50_ms: float
    dispatch_p99_ms: float
    failed: int
    # First submit to the first job's start: what the submit burst costs before any work runs.
    first_start_ms: float = 0.0
    # First submit to the start of the last lane's first job: when every lane is at work.
    all_started_ms: float = 0.0
    # Slidelane only: a dispatched (RUNNING) job's wait in the DISPATCH stream until a planner
    # took it up (job_dispatch_wait_seconds, read off the replicas' histograms, so to bucket
    # precision). Celery's dispatch latency holds its queue wait: its next task is published
    # as the previous one ends.
    queue_wait_p50_ms: float = float("nan")
    queue_wait_p99_ms: float = float("nan")
    # CPU (user + system) each part spent per job during the run, in ms: where the time goes.
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def redis_pids() -> dict[str, int]:
    """The local Redis server (Celery's broker and backend), when this user can see it."""
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "redis-server":
            return {"redis": process.pid}
    return {}


def postgres_pids() -> dict[str, int]:
    """The local PostgreSQL server (its postmaster; the meter adds every backend under it):
    its CPU is the database's share of the run, on the same two cores."""
    names = {process.pid: process.info["name"] for process in psutil.process_iter(["name"])}
    for process in psutil.process_iter(["name", "ppid"]):
        if process.info["name"] == "postgres" and names.get(process.info["ppid"]) != "postgres":
            return {"postgresql": process.pid}
    return {}


def dispatch_wait_buckets(cluster: Cluster) -> dict[float, float]:
    """Cumulative counts of job_dispatch_wait_seconds (tissue_mask) by upper bound, summed
    over the inference replicas."""
    buckets: dict[float, float] = {}
    for name in cluster.services:
        if not name.startswith("inference-"):
            continue
        url = f"http://127.0.0.1:{cluster.service_port(name) + METRICS_OFFSET}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "job_dispatch_wait_seconds_bucket" and sample.labels.get("job_type") == "tissue_mask":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus' histogram_quantile over the observations between two scrapes (linear
    within the bucket), in ms."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    if not counts or counts[-1][1] == 0:
        return float("nan")
    rank, lower, below = q * counts[-1][1], 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower * 1000
            return (lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-9)) * 1000
        lower, below = bound, cumulative
    return lower * 1000


def lanes(tenants: int, branches: int) -> list[tuple[str, str]]:
    return [(f"bench{t}", f"b{b}") for t in range(tenants) for b in range(branches)]


async def _slidelane(
    cluster: Cluster, slide: Path, tenants: int, branches: int, chain: int, name: str, meter: CpuMeter
) -> Result:
    async with grpc.aio.insecure_channel(cluster.grpc_target) as channel:
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)

        async def submit(tenant: str, branch: str, chain: int = chain) -> tuple[str, str]:
            jobs = [
                types_pb2.JobSpec(
                    job_id=f"j{i}",
                    job_type="tissue_mask",
                    image_path=str(slide),
                    branch=branch,
                    depends_on=[f"j{i - 1}"] if i else [],
                )
                for i in range(chain)
            ]
            reply = await stub.CreateWorkflow(
                workflow_service_pb2.CreateWorkflowRequest(name=f"{tenant}-{branch}", jobs=jobs),
                metadata=(("x-user-id", tenant),),
            )
            return tenant, reply.workflow.workflow_id

        async def wait(tenant: str, workflow_id: str) -> types_pb2.Workflow:
            while True:
                reply = await stub.GetWorkflow(
                    workflow_service_pb2.GetWorkflowRequest(workflow_id=workflow_id), metadata=(("x-user-id", tenant),)
                )
                if reply.workflow.state in FINAL:
                    return reply.workflow
                # Polled gently: the end time comes from the jobs' own timestamps, and a
                # busy poll would take CPU from the system being measured.
                await asyncio.sleep(0.25)

        # Warm-up, not measured: one short chain through every service (first statements
        # compiled, channels open), as Celery's warm-up chain in run_celery.
        await wait(*(await submit("warmup", "b0", chain=2)))
        waits_before = dispatch_wait_buckets(cluster)
        meter.start()
        # Every lane is its own client submitting at once, as Celery's group publishes
        # every chain in one call.
        started = time.time()
        submitted = await asyncio.gather(*(submit(tenant, branch) for tenant, branch in lanes(tenants, branches)))
        workflows = [await wait(tenant, workflow_id) for tenant, workflow_id in submitted]
        waits = dispatch_wait_buckets(cluster)
    latencies, failed, finish_times, start_times = [], 0, [], []
    for workflow in workflows:
        jobs = {j.job_id: j for j in workflow.jobs}
        for job in workflow.jobs:
            failed += job.state != types_pb2.JOB_STATE_SUCCEEDED
            finish_times.append(job.finished_at.ToMicroseconds() / 1e6)
            start_times.append(job.started_at.ToMicroseconds() / 1e6)
            for dep in job.depends_on:
                gap = (job.started_at.ToMicroseconds() - jobs[dep].finished_at.ToMicroseconds()) / 1e6
                latencies.append(gap * 1000)
    total = len(finish_times)
    seconds = max(finish_times) - started  # first submit to the last job's end, as recorded by the scheduler
    first_start_ms = (min(start_times) - started) * 1000
    all_started_ms = (max(min(j.started_at.ToMicroseconds() for j in w.jobs) / 1e6 for w in workflows) - started) * 1000
    return Result(
        name,
        total,
        seconds,
        total / seconds,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        failed,
        first_start_ms,
        all_started_ms,
        histogram_quantile(0.5, waits_before, waits),
        histogram_quantile(0.99, waits_before, waits),
    )


def run_slidelane(database_kind: str, args: argparse.Namespace, name: str) -> Result:
    env = {
        "SLIDELANE_MAX_ACTIVE_USERS": str(args.tenants),
        "SLIDELANE_INFERENCE_WORKERS": str(args.workers),
        "SLIDELANE_LOG_FORMAT": "json",
    }

    # Kept until the benchmark ends (see main): deleting a run's files at once slows the next
    # run's file creation (ext4's inode allocator skips recently deleted inodes).
    tmp = tempfile.mkdtemp(dir=args.workdir)
    database = f"slidelane_bench_{uuid.uuid4().hex[:8]}"
    if database_kind == "postgresql":
        asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
        env["SLIDELANE_DATABASE_URL"] = f"postgresql+asyncpg://{POSTGRES}/{database}"
        args.databases.append(database)  # dropped at the end, as the files
    with start_cluster(Path(tmp) / "cluster", env=env) as cluster:
        slide = cluster.slide_root / "tiny.tif"
        write_test_slide(slide, width=args.size, height=args.size, seed=1)
        pids = {name: pid for name, pid in cluster.pids().items() if name != "launcher"}
        if database_kind == "postgresql":
            pids |= postgres_pids()
        meter = CpuMeter(pids)
        result = asyncio.run(_slidelane(cluster, slide, args.tenants, args.branches, args.chain, name, meter))
        result.cpu_ms_per_job = meter.per_job_ms(result.jobs)
        return result


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"postgresql://{POSTGRES}/test")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def run_celery(slide: Path, args: argparse.Namespace) -> Result:
    from celery import chain, group

    from bench.scheduler.celery_app import _store, app, tissue_mask

    results = tempfile.mkdtemp(dir=args.workdir)  # the tasks' result files, as storage's for Slidelane
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.scheduler.celery_app",
            "worker",
            "--concurrency",
            str(args.workers),
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_CELERY_RESULTS": results},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        app.control.purge()
        time.sleep(3)  # let the worker connect
        run = uuid.uuid4().hex
        # Warm-up, not measured, as Slidelane's: one short chain.
        chain(tissue_mask.s(None, run, "warmup-0", str(slide)), tissue_mask.s(run, "warmup-1", str(slide))).apply_async().get(
            timeout=60, disable_sync_subtasks=False
        )
        meter = CpuMeter({"celery workers": worker.pid, **redis_pids()})
        meter.start()
        started = time.time()
        flows = [
            chain(
                tissue_mask.s(None, run, f"{t}-{b}-0", str(slide)),
                *(tissue_mask.s(run, f"{t}-{b}-{i}", str(slide)) for i in range(1, args.chain)),
            )
            for t, b in lanes(args.tenants, args.branches)
        ]
        group(flows).apply_async().get(timeout=600, disable_sync_subtasks=False)
        latencies = []
        total = 0
        last_finish, first_start, all_started = started, float("inf"), started
        for t, b in lanes(args.tenants, args.branches):
            times = [_store.hgetall(f"bench:{run}:{t}-{b}-{i}") for i in range(args.chain)]
            total += len(times)
            last_finish = max([last_finish, *(float(x[b"finished"]) for x in times)])
            first_start = min([first_start, *(float(x[b"started"]) for x in times)])
            all_started = max(all_started, float(times[0][b"started"]))
            for prev, cur in zip(times, times[1:], strict=False):
                latencies.append((float(cur[b"started"]) - float(prev[b"finished"])) * 1000)
        seconds = last_finish - started  # first submit to the last task's end, as Slidelane's
        return Result(
            "celery+redis",
            total,
            seconds,
            total / seconds,
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            0,
            (first_start - started) * 1000,
            (all_started - started) * 1000,
            cpu_ms_per_job=meter.per_job_ms(total),
        )
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--branches", type=int, default=3)
    parser.add_argument("--chain", type=int, default=60, help="jobs per workflow (each lane's one workflow)")
    parser.add_argument("--workers", type=int, default=2, help="inference replicas / celery processes")
    parser.add_argument(
        "--size", type=int, default=64, help="the slide's side in pixels: the job's own work (~1.5 ms at 64, ~5 ms at 256)"
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument(
        "--workdir",
        default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
        help="where every run's files go (default: /dev/shm, memory, where there is one; see main)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["sqlite", "postgresql", "celery"])
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every system this many times, interleaved; report each one's median round"
    )
    args = parser.parse_args()
    runs: dict[str, list[Result]] = {}
    # Every run's files stay until the end: the rounds' deletions all come after the last
    # measurement, instead of each slowing the file creation of the run after it (ext4
    # scans recently deleted inodes when it allocates one: up to ~3 ms of kernel CPU per
    # job for storage's files and Celery's alike, measured with perf).
    # In memory by default: on ext4 a run's file creation slowed for minutes after the last
    # benchmark or test deleted its thousands of files, and rounds drifted with it.
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        args.workdir, args.databases = tmp, []
        slide = Path(tmp) / "slides" / "tiny.tif"
        slide.parent.mkdir()
        write_test_slide(slide, width=args.size, height=args.size, seed=1)
        try:
            # Interleaved rounds: a change in the machine's load touches every system alike.
            for _ in range(args.rounds):
                if "sqlite" not in args.skip:
                    runs.setdefault("slidelane sqlite", []).append(run_slidelane("sqlite", args, "slidelane sqlite"))
                if "postgresql" not in args.skip:
                    result = run_slidelane("postgresql", args, "slidelane postgresql")
                    runs.setdefault("slidelane postgresql", []).append(result)
                if "celery" not in args.skip:
                    runs.setdefault("celery+redis", []).append(run_celery(slide, args))
        finally:
            for database in args.databases:
                asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    results = [sorted(rounds, key=lambda r: r.jobs_per_second)[len(rounds) // 2] for rounds in runs.values()]
    print(json.dumps({name: [asdict(r) for r in rounds] for name, rounds in runs.items()}, indent=2))
    header = (
        f"{'system':<22}{'jobs':>6}{'s':>8}{'jobs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'1st start ms':>14}{'all started ms':>16}"
        f"{'wait p50 ms':>13}{'wait p99 ms':>13}"
    )
    print(f"\n{header}   (median of {args.rounds} round(s))")
    for r in results:
        print(
            f"{r.system:<22}{r.jobs:>6}{r.seconds:>8.1f}{r.jobs_per_second:>9.1f}{r.dispatch_p50_ms:>9.1f}{r.dispatch_p99_ms:>9.1f}"
            f"{r.first_start_ms:>14.1f}{r.all_started_ms:>16.1f}{r.queue_wait_p50_ms:>13.1f}{r.queue_wait_p99_ms:>13.1f}"
        )
    for r in results:
        print(f"{r.system} CPU ms per job: " + ", ".join(f"{name} {ms}" for name, ms in r.cpu_ms_per_job.items()))
    celery = next((r for r in results if r.system.startswith("celery")), None)
    if celery:
        for r in results:
            if r is not celery:
                print(f"{r.system}: {r.jobs_per_second / celery.jobs_per_second:.2f}x Celery's throughput")


if __name__ == "__main__":
    main()
