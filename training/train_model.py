"""Train the shipped nucleus model (slidelane_synthetic_nuclei) on procedural H&E tiles.

Our own loop, because instanseg's train.py / export import torchvision, whose PyPI
build does not load beside torch 2.13.0+cpu. We reuse instanseg's pieces: the
InstanSeg_UNet builder, the InstanSeg loss (with its pixel classifier) and the
InstanSeg_Torchscript wrapper, so the exported module behaves like InstanSeg's own.

Reproducible: fixed seeds and a fixed step count (never wall time).

    nice -n 10 python -m training.train_model --steps 1500 --out models/slidelane_synthetic_nuclei
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from training.synthetic import make_tile

log = logging.getLogger("train")
PIXEL_SIZE = 0.5  # um/px the synthetic tiles are drawn at; the model runs at this size
MODEL_NAME = "slidelane_synthetic_nuclei"  # never "brightfield_nuclei": that is InstanSeg's own model
VALIDATION_SEED = 424_242  # checkpoint selection; evaluate.py's held-out seed stays unseen


def build(device: str, seed: int):  # type: ignore[no-untyped-def]
    from instanseg.utils.loss.instanseg_loss import InstanSeg
    from instanseg.utils.model_loader import build_model_from_dict

    spec = {
        "model_str": "InstanSeg_UNet",
        "layers": [16, 32, 64, 128],
        "norm": "BATCH",
        "dim_in": 3,
        "n_sigma": 2,
        "dim_coords": 2,
        "dim_seeds": 1,
        "cells_and_nuclei": False,
        "multihead": False,
        "dropprob": 0.0,
    }
    model = build_model_from_dict(spec, random_seed=seed)
    method = InstanSeg(
        binary_loss_fn_str="lovasz_hinge",
        seed_loss_fn="l1_distance",
        n_sigma=2,
        window_size=64,
        device=device,
        dim_coords=2,
        dim_seeds=1,
    )
    model = method.initialize_pixel_classifier(model, MLP_width=5)
    # The seed head ends in a BatchNorm (weight 1, bias 0) while its l1_distance target spans
    # -7.5 (background) .. +7.5 (nucleus centre). Adam moves a parameter ~lr per step, so from
    # the default init it takes thousands of steps just to reach that scale: a 300-step run
    # predicted no seeds at all. Start the affine at the target's scale instead.
    seed_norm = model.decoders[0].final_block[2][1]
    with torch.no_grad():
        seed_norm.weight.fill_(5.0)
        seed_norm.bias.fill_(-5.0)
    return model.to(device), method


def head_parameter_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """The output BatchNorm affines (scale of coords / sigma / seeds) learn 10x faster, for the same reason."""
    head = [p for n, p in model.named_parameters() if "final_block" in n and n.endswith(("1.weight", "1.bias"))]
    ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest, "lr": lr}, {"params": head, "lr": lr * 10}]


def _dice_loss(pred: torch.Tensor, gt: torch.Tensor, **_: object) -> torch.Tensor:
    """Soft Dice on sigmoid(pred) (monai's DiceLoss * 1.5 without installing monai)."""
    p = torch.sigmoid(pred[:, 0] if pred.dim() == 3 else pred.reshape(gt.shape))
    g = gt.float()
    inter = (p * g).sum()
    return 1.5 * (1 - (2 * inter + 1e-5) / (p.sum() + g.sum() + 1e-5))


def normalise(rgb: np.ndarray) -> np.ndarray:
    """0.1/99.9 per-channel percentile normalisation (as instanseg's percentile_normalize), CHW float32."""
    x = rgb.astype(np.float32)
    lo = np.percentile(x, 0.1, axis=(0, 1))
    hi = np.percentile(x, 99.9, axis=(0, 1))
    x = (x - lo) / np.maximum(hi - lo, 1e-3)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class TilePool:
    """Synthetic tiles cost ~0.2 s each: keep a pool, refresh a few per step, augment on reuse."""

    def __init__(self, rng: np.random.Generator, size: int, tile: int, refresh: int) -> None:
        self.rng = rng
        self.refresh = refresh
        self.tile = tile
        self.items = [self._new() for _ in range(size)]

    def _new(self) -> tuple[np.ndarray, np.ndarray]:
        rgb, labels = make_tile(self.rng, self.tile)
        return normalise(rgb), labels

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.refresh):
            self.items[int(self.rng.integers(len(self.items)))] = self._new()
        xs, ys = [], []
        for i in self.rng.choice(len(self.items), n, replace=False):
            x, y = self.items[int(i)]
            k = int(self.rng.integers(4))
            x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
            if self.rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, ::-1]
            # mild colour jitter on normalised values: robustness to scanner/stain drift
            x = x * self.rng.uniform(0.9, 1.1, (3, 1, 1)) + self.rng.uniform(-0.05, 0.05, (3, 1, 1))
            xs.append(np.ascontiguousarray(x, dtype=np.float32))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)[:, None].astype(np.int64))


def recalibrate_batch_norm(model: torch.nn.Module, pool: TilePool, batch: int, batches: int = 40) -> None:
    """Replace BatchNorm running statistics by the plain mean over many fresh batches.

    Training updates them with momentum 0.05 while the weights still move, so at export
    they lag the final weights; inference (eval mode) uses them, training never does.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(pool.batch(batch)[0])
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def validate(model: torch.nn.Module, tiles: int = 24, postprocessing: dict | None = None) -> dict:
    """Eval-mode F1 on synthetic tiles from a seed neither training nor evaluate.py uses."""
    from training.evaluate import evaluate_synthetic, model_segmenter

    model.eval()
    scripted = torch.jit.script(wrap(model, postprocessing))
    result = evaluate_synthetic(model_segmenter(scripted), tiles=tiles, seed=VALIDATION_SEED)["overall"]
    return {k: result[k] for k in ("precision", "recall", "f1")}


POSTPROCESSING_KEYS = ("seed_threshold", "mask_threshold", "peak_distance", "min_size")


def load_init(model: torch.nn.Module, path: Path) -> dict:
    """Start from an exported model's weights; return its post-processing defaults, which the export keeps."""
    scripted = torch.jit.load(str(path), map_location="cpu")
    model.load_state_dict(scripted.fcn.state_dict())  # the traced UNet holds the pixel classifier too
    return {key: getattr(scripted, f"default_{key}") for key in POSTPROCESSING_KEYS}


def wrap(model: torch.nn.Module, postprocessing: dict | None = None) -> torch.nn.Module:
    """The exported module; `postprocessing` becomes its default thresholds (InstanSeg's `params`)."""
    from instanseg.utils.loss.instanseg_loss import InstanSeg_Torchscript

    return InstanSeg_Torchscript(
        model,
        cells_and_nuclei=False,
        pixel_size=PIXEL_SIZE,
        n_sigma=2,
        params=dict(postprocessing) if postprocessing else None,
        feature_engineering_function="0",
        backbone_dim_in=3,
    )


def export(model: torch.nn.Module, path: Path, postprocessing: dict | None = None) -> None:
    model.eval()
    scripted = torch.jit.script(wrap(model, postprocessing))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))


def train(
    steps: int,
    out: Path,
    seed: int,
    batch: int,
    tile: int,
    lr: float,
    hot_fraction: float,
    threads: int,
    hot_seed_loss: str = "binary_xloss",
    checkpoint_every: int = 250,
    init: Path | None = None,
    version: str | None = None,
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = "cpu"
    model, method = build(device, seed)
    postprocessing = load_init(model, init) if init else None
    optimiser = torch.optim.Adam(head_parameter_groups(model, lr), lr=lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[lr, lr * 10], total_steps=steps, pct_start=0.1)
    pool = TilePool(rng, size=64, tile=tile, refresh=1)
    hot_steps = int(steps * hot_fraction)
    # Hot start (as instanseg's train.py): Dice for the instance masks and BCE for the seeds
    # converge fast; then Lovasz and l1_distance seeds (what the exported post-processing expects).
    method.update_seed_loss(hot_seed_loss)
    method.binary_loss_fn = _dice_loss
    started = time.time()
    history: list[float] = []
    best: dict = {"f1": -1.0, "step": -1}
    if init:
        # The starting point competes too: a fine-tune that never beats it exports nothing.
        recalibrate_batch_norm(model, pool, batch)
        best = {**validate(model, postprocessing=postprocessing), "step": 0}
        log.info("init %s validation (synthetic, eval mode) %s", init, best)
    for step in range(steps):
        if step == hot_steps:
            method.update_binary_loss("lovasz_hinge")
            method.update_seed_loss("l1_distance")
        model.train()
        x, y = pool.batch(batch)
        loss = method.forward(model(x), y.clone()).mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        optimiser.step()
        scheduler.step()
        history.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            log.info("step %d/%d loss %.4f (%.1f s)", step, steps, np.mean(history[-50:]), time.time() - started)
        if step > 0 and step % checkpoint_every == 0 or step == steps - 1:
            recalibrate_batch_norm(model, pool, batch)
            score = validate(model, postprocessing=postprocessing)
            log.info("step %d validation (synthetic, eval mode) %s", step, score)
            if score["f1"] > best["f1"] or (score["f1"] == best["f1"] and not init):
                best = {**score, "step": step}
                export(model, out / "instanseg.pt", postprocessing)  # the best checkpoint so far, usable mid-run
    log.info("kept step %d: %s", best["step"], best)
    card = {
        "name": MODEL_NAME,
        "version": version or f"0.1.{steps}",
        "pixel_size": PIXEL_SIZE,
        "seed": seed,
        "steps": steps,
        "batch": batch,
        "tile": tile,
        "lr": lr,
        "architecture": "InstanSeg_UNet layers [16,32,64,128], BATCH norm, n_sigma 2, MLP width 5",
        "recipe": (f"fine-tuned from {init} (the start competes for the kept checkpoint); " if init else "")
        + "Adam (output BatchNorm affines 10x lr, seed head initialised at the l1_distance scale), OneCycle, clip 20; "
        f"hot start for the first hot_fraction of steps (Dice masks, {hot_seed_loss} seeds), then Lovasz hinge and "
        "l1_distance seeds; BatchNorm statistics recalibrated before each checkpoint; the checkpoint with the best "
        "validation F1 (synthetic tiles, seed VALIDATION_SEED) is the one exported",
        "init": str(init) if init else None,
        "postprocessing": postprocessing,
        "kept_step": best["step"],
        "validation": {k: best[k] for k in ("precision", "recall", "f1")},
        "hot_fraction": hot_fraction,
        "training_data": "procedural H&E-like tiles from training/synthetic.py only (no real images)",
        "train_seconds": round(time.time() - started, 1),
        "final_loss": float(np.mean(history[-50:])),
        "eval": {},
    }
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("models") / MODEL_NAME)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hot-fraction", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hot-seed-loss", default="binary_xloss", choices=["binary_xloss", "l1_distance"])
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--init", type=Path, help="fine-tune from this exported instanseg.pt (keeps its post-processing)")
    parser.add_argument("--version", help="model card version (default 0.1.<steps>)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    card = train(
        args.steps,
        args.out,
        args.seed,
        args.batch,
        args.tile,
        args.lr,
        args.hot_fraction,
        args.threads,
        args.hot_seed_loss,
        args.checkpoint_every,
        args.init,
        args.version,
    )
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
