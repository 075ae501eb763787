"""Tune InstanSeg's post-processing thresholds of a TorchScript model on synthetic validation tiles.

Coordinate descent over the forward's keywords (seed_threshold, mask_threshold,
peak_distance, min_size): each in turn moves to its best value if that gains at least
MIN_GAIN pooled F1 on tiles from VALIDATION_SEED only, never on MoNuSeg (evaluation
only) nor on evaluate.py's held-out seed.

With --write the winning values become the module's own defaults (the
InstanSeg_Torchscript `default_*` attributes) and are recorded in model.json's
"postprocessing". The module is the one place the worker, evaluate.py and
InstanSeg's own tools all read, so nothing copies the numbers.

    nice -n 10 python -m training.tune_postprocessing --model models/slidelane_synthetic_nuclei/instanseg.pt --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.evaluate import evaluate_tiles, model_segmenter, synthetic_tiles
from training.train_model import VALIDATION_SEED

GRID: dict[str, list[float]] = {
    "seed_threshold": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75],
    "mask_threshold": [0.35, 0.4, 0.45, 0.53, 0.6],
    "peak_distance": [3, 4, 5, 6, 7],
    "min_size": [4, 10, 20, 30],
}
INTEGER = {"peak_distance", "min_size"}
# A change must win by this much F1 on validation: smaller differences are noise (~2,000
# nuclei), and the module's current values then stay.
MIN_GAIN = 0.002


def current_defaults(model: torch.jit.ScriptModule) -> dict[str, float]:
    return {name: getattr(model, f"default_{name}") for name in GRID}


def tune(model: torch.jit.ScriptModule, tiles: int, rounds: int = 2) -> tuple[dict[str, float], dict, dict]:
    data = synthetic_tiles(tiles, seed=VALIDATION_SEED)
    cache: dict[tuple, dict] = {}

    def score(setting: dict[str, float]) -> dict:
        key = tuple(sorted(setting.items()))
        if key not in cache:
            cache[key] = evaluate_tiles(model_segmenter(model, setting), data)["overall"]
            print(f"  {setting}: {_short(cache[key])}", flush=True)
        return cache[key]

    best = current_defaults(model)
    baseline = score(best)
    for _ in range(rounds):
        before = dict(best)
        for name, values in GRID.items():
            trials = [{**best, name: int(value) if name in INTEGER else float(value)} for value in values]
            winner = max(trials, key=lambda trial: score(trial)["f1"])
            if score(winner)["f1"] > score(best)["f1"] + MIN_GAIN:
                best = winner
        if best == before:
            break
    return best, baseline, score(best)


def _short(result: dict) -> str:
    return " ".join(f"{k} {result[k]}" for k in ("precision", "recall", "f1", "mean_iou_matched") if k in result)


def write(model: torch.jit.ScriptModule, path: Path, setting: dict[str, float], before: dict, after: dict, tiles: int) -> None:
    for name, value in setting.items():
        setattr(model, f"default_{name}", value)
    torch.jit.save(model, str(path))
    card_path = path.parent / "model.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card["postprocessing"] = {
        **setting,
        "tuned_on": f"{tiles} synthetic validation tiles (seed VALIDATION_SEED); stored as the module's own defaults",
        "validation_before": {k: before[k] for k in ("precision", "recall", "f1")},
        "validation_after": {k: after[k] for k in ("precision", "recall", "f1")},
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--tiles", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the parameters (stops early when none moves)")
    parser.add_argument("--write", action="store_true", help="store the winner in the module and model.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = torch.jit.load(str(args.model), map_location="cpu").eval()
    best, before, after = tune(model, args.tiles, args.rounds)
    print(json.dumps({"best": best, "before": _short(before), "after": _short(after)}, indent=2))
    if args.write:
        write(model, args.model, best, before, after, args.tiles)


if __name__ == "__main__":
    main()
