"""Tissue outline simplification: ours against scikit-image's approximate_polygon.

    python -m bench.inference.outline [--repeat 200]

Both simplify the same find_contours outlines with the same tolerance, side by side in
this process: a 64 px slide's mask (the scheduler benchmark's job), and the 2048 px
masks of generated slides with smooth and ragged tissue (what a whole slide's
tissue_mask job outlines). Reported: CPU microseconds per outline for each, the ratio,
and the vertices each kept. Then a whole tissue_mask job's work (tissue_mask_result:
open, mask, PNG, GeoJSON) on the 64 px slide with each simplifier.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage import measure

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.slides import open_slide
from services.inference import tissue
from services.inference.planner import tissue_mask_result
from tests.slides import write_test_slide


def cpu_us(call: Callable[[], object], repeat: int) -> float:
    call()
    started = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - started) / repeat * 1e6


def longest_outline(path: Path) -> np.ndarray:
    with open_slide(path) as slide:
        mask = tissue.compute_tissue_mask(slide).mask
    return max(measure.find_contours(np.pad(mask, 1).astype(np.uint8), 0.5), key=len)


def generated_slides(root: Path) -> dict[str, Path]:
    """The tissue benchmarks' slides: a 64 px one (the scheduler benchmark's job) and two
    8192 x 6144 ones (2048 px masks) with smooth and ragged tissue."""
    grid = np.random.default_rng(7).random((48, 64)) < 0.45  # ragged pieces with holes
    return {
        "64 px slide": write_test_slide(root / "tiny.tif", 64, 64, seed=1).path,
        "2048 px mask, ellipse": write_test_slide(root / "smooth.tif", 8192, 6144, mpp=0.5, tissue=0.35, seed=1).path,
        "2048 px mask, ragged": write_test_slide(root / "ragged.tif", 8192, 6144, mpp=0.5, tissue=grid, seed=2).path,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    tissue.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        slides = generated_slides(Path(tmp))
        tiny, smooth, ragged = slides["64 px slide"], slides["2048 px mask, ellipse"], slides["2048 px mask, ragged"]
        print(f"{'outline':28s} {'points':>7s} {'skimage us':>11s} {'ours us':>9s} {'speed-up':>9s} {'vertices':>11s}")
        for name, path in (("64 px slide (square)", tiny), ("2048 px mask, ellipse", smooth), ("2048 px mask, ragged", ragged)):
            outline = longest_outline(path)
            repeat = args.repeat if len(outline) < 1000 else max(3, args.repeat // 50)
            theirs = cpu_us(lambda outline=outline: measure.approximate_polygon(outline, 0.75), repeat)
            ours = cpu_us(lambda outline=outline: tissue.simplify_polygon(outline, 0.75), repeat)
            kept = f"{len(measure.approximate_polygon(outline, 0.75))}/{len(tissue.simplify_polygon(outline, 0.75))}"
            print(f"{name:28s} {len(outline):7d} {theirs:11.0f} {ours:9.0f} {theirs / ours:8.1f}x {kept:>11s}")
        dispatch = messaging_pb2.JobDispatch(
            tenant_id="t", workflow_id="w", id="j", job_id="j", job_type="tissue_mask", image_path=str(tiny)
        )
        ours = tissue.simplify_polygon
        whole = {}
        for label in ("skimage", "ours", "skimage", "ours"):  # interleaved, the best of two each
            tissue.simplify_polygon = measure.approximate_polygon if label == "skimage" else ours
            spent = cpu_us(lambda: tissue_mask_result(dispatch), args.repeat)
            whole[label] = min(whole.get(label, spent), spent)
        tissue.simplify_polygon = ours
        print(
            f"whole tissue_mask job, 64 px slide: {whole['skimage']:.0f} us with skimage's, {whole['ours']:.0f} us with ours"
            f" ({whole['skimage'] / whole['ours']:.2f}x)"
        )


if __name__ == "__main__":
    main()
