"""InstanSeg's own inference on one slide, in a process of its own (for run.py).

    python -m bench.inference.instanseg_own --model M.pt --slide S.tif --mpp 0.5 --threads 1 \
        --method wsi|medium --centroids OUT.npy

Prints one JSON line: seconds, peak RSS, windows, cells. Its own process so its peak
RSS is its own (VmHWM, reset once the model is loaded, as run.py does for workers).
Timed: reading the slide, inference, and the label image -> nucleus centroids; not
timed: imports and loading the model (the workers have done both before a job).

- wsi: InstanSeg(model).eval_whole_slide_image(path) (needs tiffslide and zarr):
  tiles of `tile_size` read through tiffslide, each normalised on its own, one tile
  per forward, seams merged by IoU into a zarr label canvas written beside the slide;
  `--otsu` skips windows its thumbnail threshold calls empty.
- medium: the level-0 image read whole (tifffile), then
  InstanSeg(model).eval_medium_image(image, batch_size=...): one normalisation for
  the whole image, sliding windows in batches, stitched labels in RAM.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from tests.procmem import peak_rss_bytes, reset_peak_rss
from training.evaluate import centroids

TILE_SIZE = 512  # InstanSeg's default window, and Slidelane's tile (services/inference/tiling.py)


def windows(instanseg, slide: Path, method: str, shape: tuple[int, int], otsu: bool) -> int:  # type: ignore[no-untyped-def]
    """How many model windows the method runs over the slide (instanseg's own tiling helpers)."""
    from instanseg.utils.tiling import _chops

    overlap, max_cell = 80, 20  # the defaults of both eval_whole_slide_image and _sliding_window_inference
    chops = _chops(shape, (TILE_SIZE, TILE_SIZE), overlap=2 * (overlap + max_cell))
    if method == "wsi" and otsu:
        from instanseg.inference_class import _find_non_empty_positions, _threshold_thumbnail

        mask, _ = _threshold_thumbnail(instanseg.read_slide(str(slide)))
        return int(np.sum(_find_non_empty_positions(mask, chops, TILE_SIZE, shape)))
    return len(chops[0]) * len(chops[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--slide", type=Path, required=True)
    parser.add_argument("--mpp", type=float, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--method", choices=("wsi", "medium"), required=True)
    parser.add_argument("--batch", type=int, default=4, help="medium: windows per forward (Slidelane's CPU batch)")
    parser.add_argument("--otsu", action="store_true", help="wsi: skip windows its thumbnail threshold calls empty")
    parser.add_argument("--centroids", type=Path, required=True, help="write the N x 2 (x, y) level-0 centroids here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # per-call sparse-tensor and autocast warnings flood the log

    from instanseg import InstanSeg

    model = torch.jit.load(str(args.model), map_location="cpu").eval()
    instanseg = InstanSeg(model, device="cpu", verbosity=0)
    model_mpp = float(model.pixel_size)
    peak_exact = reset_peak_rss()
    started = time.perf_counter()
    if args.method == "medium":
        import tifffile

        image = tifffile.imread(args.slide, key=0)[..., :3]  # level 0, whole: what eval_medium_image takes
        labels = instanseg.eval_medium_image(
            image, pixel_size=args.mpp, tile_size=TILE_SIZE, batch_size=args.batch, return_image_tensor=False
        )
        label_image = labels[0, 0].numpy().astype(np.int32)  # rescaled back to the slide's pixels
        to_level0 = 1.0
    else:
        import zarr

        instanseg.eval_whole_slide_image(str(args.slide), pixel_size=args.mpp, tile_size=TILE_SIZE, use_otsu_threshold=args.otsu)
        canvas = zarr.open(str(args.slide.with_name(args.slide.stem + instanseg.prediction_tag + ".zarr")), mode="r")
        label_image = np.asarray(canvas[0])  # at the model's pixel size
        to_level0 = model_mpp / args.mpp
    _, xy = centroids(label_image)
    seconds = time.perf_counter() - started
    np.save(args.centroids, (xy + 0.5) * to_level0)  # pixel centres, Slidelane's level-0 convention
    scale = args.mpp / model_mpp if args.method == "medium" else 1.0  # the windows are at the model's pixel size
    shape = (round(label_image.shape[0] * scale), round(label_image.shape[1] * scale))
    print(
        json.dumps(
            {
                "method": args.method,
                "seconds": seconds,
                "cells": len(xy),
                "windows": windows(instanseg, args.slide, args.method, shape, args.otsu),
                "peak_rss_bytes": peak_rss_bytes(),
                "peak_rss_exact": peak_exact,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
