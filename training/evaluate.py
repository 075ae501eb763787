"""Evaluate a nucleus model (TorchScript InstanSeg) and a classical baseline.

- MoNuSeg 2018 test set (../shared/data/monuseg-test; evaluation only, never training):
  each image rescaled from its JSON mpp to the model's pixel size, normalised with
  0.1/99.9 percentiles, segmented; predicted centroids matched one-to-one to the
  annotated ones within 4 um (Hungarian on distances); precision / recall / F1 per
  image and pooled over all nuclei, plus the mean IoU of matched nuclei (at the
  original resolution, annotated polygon vs predicted mask).
- Held-out synthetic tiles (a seed the training never uses), same matching.
- Classical baseline on both: rgb2hed haematoxylin, Gaussian, Otsu, opening,
  distance-transform watershed, objects < 8 um^2 dropped.
Skips the MoNuSeg part with a message when ../shared/data is absent.

    nice -n 10 python -m training.evaluate --model models/slidelane_synthetic_nuclei/instanseg.pt --write-card
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from skimage import color, draw, feature, filters, morphology, segmentation

REPO = Path(__file__).resolve().parents[1]
MONUSEG = REPO.parent / "shared" / "data" / "monuseg-test"
MATCH_UM = 4.0
HELD_OUT_SEED = 987_654_321  # never used by train_model (which seeds from --seed, default 1234)

Segment = Callable[[np.ndarray, float], np.ndarray]  # (rgb uint8, mpp) -> int labels at the same size


def percentile_normalise(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    lo = np.percentile(x, 0.1, axis=(0, 1))
    hi = np.percentile(x, 99.9, axis=(0, 1))
    return (x - lo) / np.maximum(hi - lo, 1e-3)


def model_segmenter(model: torch.jit.ScriptModule, postprocessing: dict[str, float] | None = None) -> Segment:
    """`postprocessing` overrides the module's own defaults (InstanSeg forward keywords), for sweeps."""
    model_mpp = float(model.pixel_size)
    overrides = postprocessing or {}

    def run(rgb: np.ndarray, mpp: float) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = torch.from_numpy(percentile_normalise(rgb)).permute(2, 0, 1)[None]
        factor = mpp / model_mpp
        if abs(factor - 1) > 1e-3:
            size = (max(1, round(h * factor)), max(1, round(w * factor)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)
        with torch.inference_mode():
            labels = model(x, **overrides)[0, 0]
        if labels.shape != (h, w):
            labels = F.interpolate(labels[None, None].float(), size=(h, w), mode="nearest")[0, 0]
        return labels.numpy().astype(np.int32)

    return run


def classical_segment(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """The baseline the shipped model has to beat."""
    haem = color.rgb2hed(rgb)[..., 0]
    smooth = filters.gaussian(haem, sigma=0.5 / mpp)
    fg = smooth > filters.threshold_otsu(smooth)
    fg = morphology.opening(fg, morphology.disk(max(1, round(1.0 / mpp))))
    distance = ndi.distance_transform_edt(fg)
    peaks = feature.peak_local_max(distance, min_distance=max(1, round(2.5 / mpp)), labels=ndi.label(fg)[0], exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=fg)
    sizes = np.bincount(labels.ravel())
    small = sizes * mpp * mpp < 8.0
    small[0] = False
    labels[small[labels]] = 0
    return labels


def centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, N x 2 (x, y) centroids) of a label image with any (non-contiguous) ids."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if len(ids) == 0:
        return ids, np.zeros((0, 2))
    cy_cx = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    return ids, cy_cx[:, ::-1]


def match(pred: np.ndarray, truth: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """One-to-one matching of centroids within `radius` that maximises matches, then minimises distance."""
    if len(pred) == 0 or len(truth) == 0:
        return []
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(truth), radius, output_type="coo_matrix")
    if pairs.nnz == 0:
        return []
    rows, cols = np.unique(pairs.row), np.unique(pairs.col)
    cost = np.full((len(rows), len(cols)), 1e6)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data / radius
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] < 1e6
    return list(zip(rows[r[keep]].tolist(), cols[c[keep]].tolist(), strict=True))


def prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def evaluate_image(labels: np.ndarray, truth_xy: np.ndarray, truth_masks: list[np.ndarray] | None, radius_px: float) -> dict:
    ids, pred_xy = centroids(labels)
    matches = match(pred_xy, truth_xy, radius_px)
    out = {"tp": len(matches), "n_pred": len(pred_xy), "n_true": len(truth_xy), **prf(len(matches), len(pred_xy), len(truth_xy))}
    if truth_masks is not None and matches:
        ious = []
        for p, t in matches:
            rr, cc = truth_masks[t]
            pred_mask = labels == ids[p]
            inter = int(pred_mask[rr, cc].sum())
            union = int(pred_mask.sum()) + len(rr) - inter
            ious.append(inter / union if union else 0.0)
        out["iou_sum"] = float(np.sum(ious))
    return out


def pooled(per_image: dict[str, dict]) -> dict:
    tp = sum(r["tp"] for r in per_image.values())
    n_pred = sum(r["n_pred"] for r in per_image.values())
    n_true = sum(r["n_true"] for r in per_image.values())
    out: dict = {"images": len(per_image), "nuclei": n_true, **prf(tp, n_pred, n_true)}
    if tp and all("iou_sum" in r or r["tp"] == 0 for r in per_image.values()):
        out["mean_iou_matched"] = round(sum(r.get("iou_sum", 0.0) for r in per_image.values()) / tp, 4)
    out["mean_f1_per_image"] = round(float(np.mean([r["f1"] for r in per_image.values()])), 4) if per_image else 0.0
    return out


def evaluate_monuseg(segment: Segment, folder: Path = MONUSEG) -> dict | None:
    import tifffile

    if not folder.is_dir():
        print(f"MoNuSeg skipped: {folder} not present (a plain clone has no ../shared)")
        return None
    per_image: dict[str, dict] = {}
    seconds = 0.0
    for card_path in sorted(folder.glob("*.nuclei.json")):
        card = json.loads(card_path.read_text())
        rgb = tifffile.imread(card_path.with_name(card_path.name.replace(".nuclei.json", ".tif")))[..., :3]
        mpp = float(card["mpp"])
        truth_xy = np.array([n["centroid"] for n in card["nuclei"]], float).reshape(-1, 2)
        masks = []
        for n in card["nuclei"]:
            poly = np.asarray(n["polygon"], float)
            masks.append(draw.polygon(poly[:, 1], poly[:, 0], shape=rgb.shape[:2]))
        started = time.perf_counter()
        labels = segment(rgb, mpp)
        seconds += time.perf_counter() - started
        result = evaluate_image(labels, truth_xy, masks, MATCH_UM / mpp)
        per_image[card_path.name.split(".")[0]] = result
        print(
            f"  {card_path.name.split('.')[0]}: P {result['precision']:.3f} R {result['recall']:.3f} F1 {result['f1']:.3f}",
            flush=True,
        )
    overall = pooled(per_image)
    overall["seconds_per_image"] = round(seconds / max(1, len(per_image)), 2)
    return {
        "overall": overall,
        "per_image": {k: {m: v[m] for m in ("precision", "recall", "f1", "n_pred", "n_true")} for k, v in per_image.items()},
    }


def synthetic_tiles(tiles: int = 40, size: int = 256, seed: int = HELD_OUT_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    from training.synthetic import make_tile

    rng = np.random.default_rng(seed)
    return [make_tile(rng, size) for _ in range(tiles)]


def evaluate_tiles(segment: Segment, tiles: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    per_image: dict[str, dict] = {}
    for index, (rgb, truth) in enumerate(tiles):
        _, truth_xy = centroids(truth)
        ids = np.unique(truth)
        masks = [np.nonzero(truth == i) for i in ids[ids != 0]]
        per_image[str(index)] = evaluate_image(segment(rgb, 0.5), truth_xy, masks, MATCH_UM / 0.5)
    return {"overall": pooled(per_image)}


def evaluate_synthetic(segment: Segment, tiles: int = 40, size: int = 256, seed: int = HELD_OUT_SEED) -> dict:
    return evaluate_tiles(segment, synthetic_tiles(tiles, size, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "slidelane_synthetic_nuclei" / "instanseg.pt")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--synthetic-tiles", type=int, default=40)
    parser.add_argument("--write-card", action="store_true", help="store the numbers in model.json's eval")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"match": f"one-to-one centroid match within {MATCH_UM} um"}
    model = torch.jit.load(str(args.model), map_location="cpu").eval()
    segment = model_segmenter(model)
    print(f"model {args.model} (pixel size {float(model.pixel_size)} um)")
    report["model"] = {
        "monuseg": evaluate_monuseg(segment),
        "synthetic_held_out": evaluate_synthetic(segment, args.synthetic_tiles),
    }
    if not args.no_baseline:
        print("classical baseline")
        report["classical_baseline"] = {
            "monuseg": evaluate_monuseg(classical_segment),
            "synthetic_held_out": evaluate_synthetic(classical_segment, args.synthetic_tiles),
        }
    summary = {
        name: {part: (v["overall"] if v else None) for part, v in parts.items()}
        for name, parts in report.items()
        if isinstance(parts, dict) and name != "match"
    }
    print(json.dumps(summary, indent=2))
    if args.write_card:
        card_path = args.model.parent / "model.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card["eval"] = {"match": report["match"], **report}
        card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
