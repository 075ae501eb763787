"""Inference benchmark: Slidelane end to end, 1 and 2 replicas, against InstanSeg's own run.

    python -m bench.inference.run [--model PATH] [--threads 1] [--baseline auto|wsi|medium]
                                  [--size 2688] [--rounds 3] [--out bench-inference.json]

Same TorchScript model file and the same generated slides (tests/slides.py, at the
model's pixel size) for every configuration:

- InstanSeg's own: `InstanSeg(model).eval_whole_slide_image` when tiffslide and zarr
  import, else `eval_medium_image` (see bench/inference/instanseg_own.py and the
  README for the difference), in a subprocess of its own with `--threads` torch threads;
- Slidelane: a real cluster (tests/cluster.py: launcher, NATS, Envoy, every service)
  with SLIDELANE_INFERENCE_WORKERS = 1, then 2, each replica pinned to `--threads`
  torch threads (SLIDELANE_TORCH_THREADS); one cell_segmentation workflow per slide
  submitted through Envoy's gRPC, timed from CreateWorkflow to the workflow's
  SUCCEEDED (its result file is written by then), then the result JSON is read back
  through JobService.GetJobResults.

Slides: "full" (tissue everywhere) and "half" (left half tissue, right half glass).
Per configuration: wall time, ratio to InstanSeg's own, tiles (model windows) per
second, peak RSS (the inference replicas' process trees for Slidelane, the
subprocess for InstanSeg; VmHWM reset just before the job, so it is the peak during
the job with the model already loaded), cells, and agreement: F1 of a one-to-one
centroid matching (training/evaluate.py's match/prf) between Slidelane's cells and
InstanSeg's own within --match-um, and of each against the nuclei the generator drew.
Also the CPU seconds every process of the cluster spent during the job (psutil), so
what the replicas and the rest of the system cost is visible.
No warm-up run in either: the first forward of this model costs no more than later ones.
With --rounds N, the Slidelane configurations run N times, interleaved (1 worker, 2
workers, 1 worker, ...), and the targets are judged on each configuration's median
time; InstanSeg's own runs once (its time varies by a few per cent between runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from bench.measure import CpuMeter
from services.common.api.slidelane.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    types_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from services.inference.models import SHIPPED_MODEL, choose_model
from tests.cluster import Cluster, start_cluster
from tests.procmem import peak_rss_bytes, reset_peak_rss
from tests.slides import SyntheticSlide, write_test_slide
from training.evaluate import MATCH_UM, match, prf

ROOT = Path(__file__).resolve().parents[2]
FINAL = {types_pb2.WORKFLOW_STATE_SUCCEEDED, types_pb2.WORKFLOW_STATE_FAILED, types_pb2.WORKFLOW_STATE_CANCELLED}
SLIDES = {"full": 1.0, "half": np.array([[True, False]])}  # tissue: everywhere / left half only


def make_slides(folder: Path, size: int, mpp: float) -> dict[str, SyntheticSlide]:
    return {
        name: write_test_slide(folder / f"{name}.tif", size, size, mpp=mpp, tissue=tissue, seed=40 + index)
        for index, (name, tissue) in enumerate(SLIDES.items())
    }


class PeakRss:
    """Peak RSS of some process trees while a job runs: VmHWM reset at the start (exact),
    else psutil samples every 0.1 s (a floor)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [p for pid in pids for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]]
        self.exact = all(reset_peak_rss(p.pid) for p in self.procs)
        self.sampled = {p.pid: p.memory_info().rss for p in self.procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for p in self.procs:
                try:
                    self.sampled[p.pid] = max(self.sampled[p.pid], p.memory_info().rss)
                except psutil.Error:
                    pass

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        if self.exact:
            return [peak_rss_bytes(p.pid) for p in self.procs]
        return list(self.sampled.values())


def run_instanseg(model: Path, slide: SyntheticSlide, threads: int, method: str, otsu: bool, work: Path) -> dict:
    out = work / f"instanseg-{slide.path.stem}.npy"
    log = work / f"instanseg-{slide.path.stem}.log"
    command = [
        sys.executable, "-m", "bench.inference.instanseg_own",
        "--model", str(model), "--slide", str(slide.path), "--mpp", str(slide.mpp),
        "--threads", str(threads), "--method", method, "--centroids", str(out),
    ]  # fmt: skip
    if otsu:
        command.append("--otsu")
    with log.open("w") as err:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"InstanSeg's own run failed ({done.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["centroids"] = np.load(out)
    return result


def run_slidelane(cluster: Cluster, slide: SyntheticSlide, user: str) -> dict:
    metadata = (("x-user-id", user),)
    workflows = workflow_service_pb2_grpc.WorkflowServiceStub(cluster.channel())
    jobs = job_service_pb2_grpc.JobServiceStub(cluster.channel())
    workers = [pid for name, pid in cluster.pids().items() if name.startswith("inference-")]
    peak = PeakRss(workers)
    cpu = CpuMeter({name: pid for name, pid in cluster.pids().items() if name != "launcher"})
    cpu.start()
    started = time.time()
    workflow = workflows.CreateWorkflow(
        workflow_service_pb2.CreateWorkflowRequest(
            name=f"inference bench {slide.path.stem}",
            jobs=[types_pb2.JobSpec(job_id="segment", job_type="cell_segmentation", image_path=str(slide.path))],
        ),
        metadata=metadata,
    ).workflow
    while workflow.state not in FINAL:
        # Polled gently: the time comes from the job's recorded end, and a busy poll would
        # take the scheduler's CPU from the replicas being measured.
        time.sleep(0.5)
        request = workflow_service_pb2.GetWorkflowRequest(workflow_id=workflow.workflow_id)
        workflow = workflows.GetWorkflow(request, metadata=metadata).workflow
    peaks = peak.stop()
    cpu_seconds = {name: round(seconds, 2) for name, seconds in cpu.seconds().items()}
    job = workflow.jobs[0]
    seconds = _seconds(job.finished_at) - started  # submit to the job's end (results stored)
    if workflow.state != types_pb2.WORKFLOW_STATE_SUCCEEDED:
        raise RuntimeError(f"workflow {workflow.workflow_id} ended {workflow.state}: {job.error}\n{cluster.log_tail()}")
    chunks = jobs.GetJobResults(job_service_pb2.GetJobResultsRequest(job_id=job.id, format="json"), metadata=metadata)
    document = json.loads(b"".join(chunk.data for chunk in chunks))
    return {
        "seconds": seconds,
        # the job alone, as the scheduler stamped it: planning, tiles, merging (no submit/dispatch/poll)
        "job_seconds": _seconds(job.finished_at) - _seconds(job.started_at),
        "tiles": int(job.progress.tiles_total),
        "cells": document["total_cells"],
        "centroids": np.array([c["centroid"] for c in document["cells"]], float).reshape(-1, 2),
        "peak_rss_bytes": sum(peaks),
        "peak_rss_per_worker": peaks,
        "peak_rss_exact": peak.exact,
        "cpu_seconds": cpu_seconds,
    }


def _seconds(stamp) -> float:  # type: ignore[no-untyped-def]
    return stamp.seconds + stamp.nanos / 1e9


def f1(found: np.ndarray, reference: np.ndarray, radius_px: float) -> dict[str, float]:
    return prf(len(match(found, reference, radius_px)), len(found), len(reference))


def choose_baseline(requested: str) -> tuple[str, str]:
    missing = [name for name in ("tiffslide", "zarr") if importlib.util.find_spec(name) is None]
    if requested == "wsi" and missing:
        raise SystemExit(f"--baseline wsi needs {' and '.join(missing)} (pip install tiffslide zarr)")
    if requested == "auto":
        if missing:
            return "medium", f"eval_whole_slide_image needs {' and '.join(missing)}, not installed"
        return "wsi", "tiffslide and zarr are installed"
    return requested, "chosen with --baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=choose_model(SHIPPED_MODEL).path, help="TorchScript InstanSeg model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica, and for InstanSeg's own run")
    parser.add_argument("--workers", default="1,2", help="replica counts to run, comma-separated")
    parser.add_argument("--baseline", choices=("auto", "wsi", "medium"), default="auto")
    parser.add_argument("--no-otsu", action="store_true", help="wsi baseline: segment glass too (no thumbnail threshold)")
    parser.add_argument("--size", type=int, default=2688, help="slide side in px (2688 = 7 x 7 Slidelane tiles)")
    parser.add_argument("--match-um", type=float, default=2.0, help="centroid distance for Slidelane vs InstanSeg")
    parser.add_argument("--rounds", type=int, default=1, help="run the Slidelane configurations this many times, interleaved")
    parser.add_argument("--out", type=Path, help="write every number here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep slides, logs and cluster data here (default: a temp dir)")
    args = parser.parse_args()
    model = args.model.resolve()
    mpp = float(torch.jit.load(str(model), map_location="cpu").pixel_size)
    method, why = choose_baseline(args.baseline)
    otsu = method == "wsi" and not args.no_otsu
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        slides_dir = work / "slides"
        slides_dir.mkdir(parents=True, exist_ok=True)
        slides = make_slides(slides_dir, args.size, mpp)
        print(f"model {model} ({mpp} um/px); InstanSeg baseline: {method} ({why}); {args.threads} torch thread(s)", flush=True)
        own: dict[str, dict] = {}
        for name, slide in slides.items():
            own[name] = run_instanseg(model, slide, args.threads, method, otsu, work)
            rows.append(_row(name, f"InstanSeg {method}", own[name], own[name], slide, args, own[name]["windows"]))
            print(_line(rows[-1]), flush=True)
        for round_index, workers in [(r, int(n)) for r in range(args.rounds) for n in args.workers.split(",")]:
            env = {
                "SLIDELANE_INFERENCE_WORKERS": str(workers),
                "SLIDELANE_TORCH_THREADS": str(args.threads),
                "SLIDELANE_INSTANSEG_MODEL": str(model),
                "SLIDELANE_DEVICE": "cpu",
                "SLIDELANE_SLIDE_ROOTS": str(slides_dir),
            }
            with start_cluster(work / f"cluster-{workers}-{round_index}", env=env) as cluster:
                for name, slide in slides.items():
                    result = run_slidelane(cluster, slide, f"bench-{workers}w-{name}")
                    rows.append(_row(name, f"Slidelane {workers} worker(s)", result, own[name], slide, args, result["tiles"]))
                    rows[-1]["round"] = round_index + 1
                    print(_line(rows[-1]), flush=True)
    _report(rows, method, why, args)


def _row(slide_name: str, system: str, result: dict, own: dict, slide: SyntheticSlide, args, tiles: int) -> dict:  # type: ignore[no-untyped-def]
    radius = args.match_um / slide.mpp
    truth = slide.nuclei + 0.5  # drawn centres are in pixel-index coordinates; cells use pixel centres
    return {
        "slide": slide_name,
        "system": system,
        "threads": args.threads,
        "seconds": round(result["seconds"], 1),
        "job_seconds": round(result.get("job_seconds", result["seconds"]), 1),
        "vs_instanseg": round(result["seconds"] / own["seconds"], 3),
        "tiles": tiles,
        "tiles_per_second": round(tiles / result["seconds"], 3),
        "peak_rss_mib": round(result["peak_rss_bytes"] / 2**20),
        "peak_rss_per_process_mib": [round(b / 2**20) for b in result.get("peak_rss_per_worker", [result["peak_rss_bytes"]])],
        "peak_rss_exact": result["peak_rss_exact"],
        "cells": len(result["centroids"]),
        "agreement_with_instanseg": f1(result["centroids"], own["centroids"], radius),
        "vs_drawn_nuclei": f1(result["centroids"], truth, MATCH_UM / slide.mpp),
        "cpu_seconds": result.get("cpu_seconds", {}),
    }


def _line(row: dict) -> str:
    line = (
        f"{row['slide']:5} {row['system']:24} {row['seconds']:7.1f} s  x{row['vs_instanseg']:.2f}  "
        f"{row['tiles']:3} tiles {row['tiles_per_second']:.2f}/s  RSS {row['peak_rss_mib']} MiB  {row['cells']} cells  "
        f"F1 vs InstanSeg {row['agreement_with_instanseg']['f1']:.3f}  vs drawn {row['vs_drawn_nuclei']['f1']:.3f}"
    )
    if row["cpu_seconds"]:
        line += "\n      CPU s: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in row["cpu_seconds"].items())
    return line


def _medians(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Per (slide, system), the row with the median wall time."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["slide"], r["system"]), []).append(r)
    return {key: sorted(group, key=lambda r: r["seconds"])[len(group) // 2] for key, group in groups.items()}


def _report(rows: list[dict], method: str, why: str, args) -> None:  # type: ignore[no-untyped-def]
    print(
        "\n| slide | system | round | wall s | vs InstanSeg | tiles | tiles/s | peak RSS MiB | cells "
        f"| F1 vs InstanSeg ({args.match_um:g} um) | F1 vs drawn ({MATCH_UM:g} um) | CPU s: replicas / rest |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        per = r["peak_rss_per_process_mib"]
        rss = f"{r['peak_rss_mib']}" + (f" ({' + '.join(map(str, per))})" if len(per) > 1 else "")
        replicas = sum(v for k, v in r["cpu_seconds"].items() if k.startswith("inference-"))
        rest = sum(v for k, v in r["cpu_seconds"].items() if not k.startswith("inference-"))
        cells = [
            r["slide"],
            r["system"],
            r.get("round", ""),
            r["seconds"],
            f"{r['vs_instanseg']:.2f}x",
            r["tiles"],
            f"{r['tiles_per_second']:.2f}",
            rss,
            r["cells"],
            f"{r['agreement_with_instanseg']['f1']:.3f}",
            f"{r['vs_drawn_nuclei']['f1']:.3f}",
            f"{replicas:.1f} / {rest:.1f}" if r["cpu_seconds"] else "",
        ]
        print("| " + " | ".join(map(str, cells)) + " |")
    empty = [f"{r['slide']}/{r['system']}" for r in rows if not r["tiles"] or not r["cells"]]
    if empty:
        print(f"\nWARNING: no tiles or no cells in {', '.join(empty)}: the numbers below mean nothing (model or tissue?)")
    by = _medians(rows)
    print(f"\nTargets (issue 4){f', on the median of {args.rounds} rounds' if args.rounds > 1 else ''}:")
    for slide, target in (("full", 1.10), ("half", 1.0)):
        one = by.get((slide, "Slidelane 1 worker(s)"))
        if one:
            verdict = "met" if one["vs_instanseg"] <= target else "NOT met"
            print(f"  {slide}: 1 worker at {one['vs_instanseg']:.2f}x InstanSeg's time (target <= {target:.2f}x): {verdict}")
        two = by.get((slide, "Slidelane 2 worker(s)"))
        if one and two:
            speedup = one["seconds"] / two["seconds"]
            print(f"  {slide}: 2 workers {speedup:.2f}x faster than 1 (target >= 1.6x): {'met' if speedup >= 1.6 else 'NOT met'}")
    if args.out:
        args.out.write_text(json.dumps({"baseline": method, "baseline_reason": why, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
