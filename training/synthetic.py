"""Procedural H&E-like tiles with known nuclei, for training and testing the shipped model.

Everything is drawn in optical density (OD) space and turned into RGB with Beer-Lambert
(I = I0 * exp(-OD . stain)), because that is how haematoxylin and eosin mix on a slide:
overlapping stains add in OD, not in RGB. Stain vectors are jittered per tile so the
model does not learn one lab's colour.

Only nuclei are labelled. Red cells, vacuoles, purple cytoplasm and pink stroma fibres
are drawn as UNLABELLED distractors: a model trained without them fragments stroma on
real H&E (see the field notes). Some tiles lie on a purple, finely vacuolated ground
(neuropil, oedema) with clear halos round some nuclei, and some nuclei are pale: open
chromatin with a darker rim, or washed out against dense cytoplasm. Those are what
model 0.1.1400 missed on real tissue.

Default scale: 0.5 um/px (the model's pixel size). A lymphocyte nucleus (~7 um) is
~14 px across, a tumour nucleus 16-30 px, a spindle nucleus 5 x 30 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

# Reference stain OD vectors (Ruifrok & Johnston), rows normalised below.
_H_REF = np.array([0.65, 0.70, 0.29])
_E_REF = np.array([0.07, 0.99, 0.11])
_RBC_REF = np.array([0.10, 0.80, 0.62])  # red cells: eosinophilic, absorb green and blue


@dataclass
class SyntheticTile:
    rgb: np.ndarray  # H x W x 3 uint8
    labels: np.ndarray  # H x W int32, 0 = background, 1..N nuclei


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-8)


def _stroma(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eosin (and a little haematoxylin) OD of pink fibrous stroma with wavy fibres."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4, 14)
    warp = _smooth_noise(rng, (size, size), rng.uniform(6, 20)) * rng.uniform(2, 8)
    phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period * 2 * np.pi + warp
    # fibre strength varies along the fibres, so stroma is not a regular zebra pattern
    fibres = np.clip(np.sin(phase), 0, 1) ** rng.uniform(0.5, 3) * np.clip(
        0.7 + 0.5 * _smooth_noise(rng, (size, size), 5), 0, 1.5
    )
    if rng.uniform() < 0.6:
        # Most real stroma is not a regular wave: wisps of collagen, anisotropic noise
        # stretched along a random direction and thresholded into thin bright ridges.
        fibres = _wispy_fibres(rng, size)
    density = rng.uniform(0.05, 1.0)
    patch = np.clip(0.6 + 0.5 * _smooth_noise(rng, (size, size), rng.uniform(10, 40)), 0, 1.2)
    e_od = density * patch * (rng.uniform(0.3, 0.8) + rng.uniform(0.2, 0.9) * fibres)
    h_od = e_od * rng.uniform(0.0, 0.6 if rng.uniform() < 0.7 else 1.2)  # pink-purple, never pure eosin
    return e_od.astype(np.float32), h_od.astype(np.float32)


def _neuropil(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eosin and haematoxylin OD of dense purple, finely vacuolated tissue (neuropil, oedematous or
    mucinous stroma): dark nuclei on a busy purple ground, where a pale-ground model loses recall."""
    mesh = np.clip(0.8 + 0.4 * _smooth_noise(rng, (size, size), rng.uniform(0.8, 1.6)), 0, None)
    bubbles = np.zeros((size, size), np.float32)
    for _ in range(int(size * size / 1000 * rng.uniform(2, 12))):
        r = rng.uniform(1.5, 5)
        mask, _ = _ellipse_mask(rng, r * rng.uniform(0.7, 1), r, rng.uniform(0, np.pi), 0.05)
        _paste_max(bubbles, mask.astype(np.float32), *rng.uniform(0, size, 2))
    base = rng.uniform(0.35, 0.9) * mesh * (1 - rng.uniform(0.6, 0.95) * bubbles)
    return (base * rng.uniform(0.7, 1.2)).astype(np.float32), (base * rng.uniform(0.4, 1.0)).astype(np.float32)


def _wispy_fibres(rng: np.random.Generator, size: int) -> np.ndarray:
    pad = size // 2
    white = rng.standard_normal((size + 2 * pad, size + 2 * pad))
    noise = ndi.gaussian_filter(white, (rng.uniform(0.7, 1.5), rng.uniform(5, 15)))  # thin across, long along
    noise = ndi.rotate(noise, rng.uniform(0, 180), reshape=False, order=1, mode="wrap")[pad : pad + size, pad : pad + size]
    noise /= noise.std() + 1e-8
    ridges = np.clip(noise - rng.uniform(0.0, 0.8), 0, None)
    return (ridges / (ridges.max() + 1e-8)) ** rng.uniform(0.5, 1.5) * 1.5


def _ellipse_mask(rng: np.random.Generator, a: float, b: float, angle: float, wobble: float) -> tuple[np.ndarray, np.ndarray]:
    """Mask of a perturbed ellipse (half axes a, b) in its own box, and relative radius."""
    r = int(np.ceil(max(a, b) * (1 + 3 * wobble))) + 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(v / b, u / a)
    boundary = np.ones_like(phi)
    for k in range(2, 5):
        boundary += rng.normal(0, wobble) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    rel = rho / np.maximum(boundary, 0.5)
    return rel < 1.0, rel


def _nucleus_od(rng: np.random.Generator, mask: np.ndarray, rel: np.ndarray, kind: str, darkness: float) -> np.ndarray:
    """Haematoxylin OD inside one nucleus: chromatin texture, vesicular rim, nucleoli."""
    shape = mask.shape
    texture = 1 + rng.uniform(0.05, 0.35) * _smooth_noise(rng, shape, rng.uniform(0.7, 2.0))
    if kind == "vesicular":
        # pale interior, dark membrane, 1-3 nucleoli
        rim = np.clip((rel - rng.uniform(0.6, 0.85)) / rng.uniform(0.12, 0.3), 0, 1)
        # open chromatin: pale interior with coarse granules
        clumps = np.clip(_smooth_noise(rng, shape, rng.uniform(0.6, 1.2)), 0, None) * rng.uniform(0.0, 0.5)
        od = darkness * (rng.uniform(0.15, 0.45) + clumps + rng.uniform(0.5, 1.0) * rim) * texture
        ys, xs = np.nonzero(rel < 0.55)
        for _ in range(rng.integers(1, 4) if len(ys) else 0):
            i = rng.integers(len(ys))
            rr = rng.uniform(0.8, 2.0)
            d2 = (np.arange(shape[0])[:, None] - ys[i]) ** 2 + (np.arange(shape[1])[None] - xs[i]) ** 2
            od = np.where(d2 < rr * rr, darkness * rng.uniform(1.1, 1.6), od)
    else:
        od = darkness * texture * (1 - 0.15 * rel**4)
    return np.where(mask, np.clip(od, 0.05, 3.0), 0).astype(np.float32)


def _sample_nucleus(rng: np.random.Generator, style: dict) -> tuple[str, float, float, float]:
    """(kind, a, b, darkness): half-axes in px at 0.5 um/px."""
    u = rng.uniform()
    if u < style["p_lymph"]:
        r = rng.uniform(4.5, 7.5)
        return "dark", r * rng.uniform(0.9, 1.1), r, rng.uniform(0.9, 1.6)
    if u < style["p_lymph"] + style["p_spindle"]:
        return "dark", rng.uniform(2.2, 4.0), rng.uniform(8, 18), rng.uniform(0.6, 1.3)
    r = rng.uniform(6, 15) * style["size_scale"]
    kind = "vesicular" if rng.uniform() < style["p_vesicular"] else "dark"
    darkness = rng.uniform(0.3, 1.0) if kind == "vesicular" else rng.uniform(0.45, 1.4)
    return kind, r * rng.uniform(0.6, 1.0), r, darkness


def _place_centres(rng: np.random.Generator, size: int, n: int, style: dict) -> np.ndarray:
    """Nucleus centres: uniform, clustered, or along gland rings."""
    mode = style["layout"]
    if mode == "uniform" or n == 0:
        return rng.uniform(-10, size + 10, (n, 2))
    if mode == "clusters":
        k = max(1, n // 12)
        centres = rng.uniform(0, size, (k, 2))
        pick = centres[rng.integers(k, size=n)]
        return pick + rng.normal(0, rng.uniform(10, 30), (n, 2))
    # gland: a ring of nuclei around a lumen
    c = rng.uniform(0.2 * size, 0.8 * size, 2)
    radius = rng.uniform(25, 70)
    t = rng.uniform(0, 2 * np.pi, n)
    rr = radius + rng.normal(0, 4, n)
    return np.stack([c[0] + rr * np.sin(t), c[1] + rr * np.cos(t)], 1)


def _sample_style(rng: np.random.Generator) -> dict:
    return {
        "empty": rng.uniform() < 0.08,
        "density": rng.choice([0.2, 0.6, 1.2, 2.0, 3.0, 4.0]),  # nuclei per 1000 px^2 of tile
        "p_lymph": rng.choice([0.0, 0.1, 0.3, 0.8]),
        "p_spindle": rng.choice([0.0, 0.1, 0.3, 0.6]),
        "p_vesicular": rng.choice([0.0, 0.2, 0.5, 0.8]),
        "size_scale": rng.uniform(0.8, 1.7),
        "layout": rng.choice(["uniform", "clusters", "gland"], p=[0.5, 0.3, 0.2]),
        "min_sep": rng.uniform(0.65, 1.0),  # fraction of r1+r2: < 1 gives touching nuclei
        "cytoplasm": rng.uniform(0, 2.5),
        "ground": rng.choice(["stroma", "neuropil"], p=[0.8, 0.2]),
        "halo": rng.choice([0.0, 0.0, 0.3, 0.8]),  # share of nuclei in a clear perinuclear halo
        "nuclear_contrast": rng.uniform(0.55, 1.0) if rng.uniform() < 0.3 else 1.0,  # pale, washed-out nuclei
    }


def make_tile(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic H&E tile: (rgb H x W x 3 uint8, nuclei labels H x W int32)."""
    style = _sample_style(rng)
    h_vec = _unit(_H_REF + rng.normal(0, 0.06, 3).clip(-0.2, 0.2))
    e_vec = _unit(_E_REF + rng.normal(0, 0.06, 3).clip(-0.2, 0.2))
    rbc_vec = _unit(_RBC_REF + rng.normal(0, 0.05, 3))

    e_od, h_od = _stroma(rng, size) if style["ground"] == "stroma" else _neuropil(rng, size)
    rbc_od = np.zeros((size, size), np.float32)
    labels = np.zeros((size, size), np.int32)

    # Nuclei (labelled), drawn in order: a later nucleus sits on top of an earlier one.
    n = 0 if style["empty"] else int(rng.poisson(style["density"] * size * size / 1000))
    centres = _place_centres(rng, size, n, style)
    placed: list[tuple[float, float, float]] = []
    nuc_h = np.zeros((size, size), np.float32)
    haloed: list[int] = []
    next_id = 1
    for cy, cx in centres:
        kind, a, b, darkness = _sample_nucleus(rng, style)
        mean_r = (a + b) / 2
        if any((cy - py) ** 2 + (cx - px) ** 2 < (style["min_sep"] * (mean_r + pr)) ** 2 for py, px, pr in placed):
            continue
        # some nuclei are markedly irregular (reactive, tumour, tangentially cut)
        wobble = rng.uniform(0.0, 0.08) if rng.uniform() < 0.7 else rng.uniform(0.06, 0.12)
        mask, rel = _ellipse_mask(rng, a, b, rng.uniform(0, np.pi), wobble)
        od = _nucleus_od(rng, mask, rel, kind, darkness) * style["nuclear_contrast"]
        r = mask.shape[0] // 2
        y0, x0 = int(round(cy)) - r, int(round(cx)) - r
        sy0, sx0 = max(0, y0), max(0, x0)
        sy1, sx1 = min(size, y0 + mask.shape[0]), min(size, x0 + mask.shape[1])
        if sy1 <= sy0 or sx1 <= sx0:
            continue
        m = mask[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        o = od[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        if m.sum() < 6:
            continue
        region = labels[sy0:sy1, sx0:sx1]
        region[m] = next_id
        nuc_h[sy0:sy1, sx0:sx1] = np.where(m, np.maximum(nuc_h[sy0:sy1, sx0:sx1], o), nuc_h[sy0:sy1, sx0:sx1])
        placed.append((cy, cx, mean_r))
        if rng.uniform() < style["halo"]:
            haloed.append(next_id)
        next_id += 1

    # Cytoplasm: Voronoi cells around the nuclei, purple-pink, with faint borders (unlabelled).
    if placed and style["cytoplasm"] > 0.25:
        dist, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        owner = labels[iy, ix]
        reach = rng.uniform(6, 30)  # large reach fills dense tissue with purple cytoplasm
        cyto = (dist < reach).astype(np.float32) * (0.5 + 0.5 * _smooth_noise(rng, (size, size), 3).clip(-1, 1))
        border = ndi.morphological_gradient(owner, size=3) > 0
        h_od += cyto * rng.uniform(0.05, 0.35) * style["cytoplasm"] + border * (dist < reach) * rng.uniform(0, 0.15)
        e_od += cyto * rng.uniform(0.1, 0.45) * style["cytoplasm"]

    # Red cells: bright eosinophilic discs with a pale centre, often in a vessel (unlabelled).
    for _ in range(rng.choice([0, 0, 3, 10, 30])):
        cy, cx = rng.uniform(0, size, 2) if rng.uniform() < 0.5 or not placed else rng.normal(size / 2, size / 5, 2)
        mask, rel = _ellipse_mask(rng, rng.uniform(5, 8), rng.uniform(6, 8), rng.uniform(0, np.pi), 0.03)
        od = np.where(mask, rng.uniform(0.5, 1.1) * (0.75 + 0.25 * rel), 0)
        _paste_max(rbc_od, od, cy, cx)

    # Vacuoles, fat and lumens: white holes that also erase stroma (unlabelled).
    clear = np.zeros((size, size), bool)
    for _ in range(rng.choice([0, 1, 3, 8])):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.choice([rng.uniform(3, 8), rng.uniform(10, 40)])
        mask, _ = _ellipse_mask(rng, r * rng.uniform(0.6, 1), r, rng.uniform(0, np.pi), 0.05)
        tmp = np.zeros((size, size), np.float32)
        _paste_max(tmp, mask.astype(np.float32), cy, cx)
        clear |= tmp > 0
    if haloed:
        # retraction halos around some nuclei (oligodendroglia, fixation artefact)
        clear |= ndi.distance_transform_edt(~np.isin(labels, haloed)) < rng.uniform(2, 7)
    clear &= labels == 0  # a hole never erases a labelled nucleus
    keep = np.where(clear, rng.uniform(0.0, 0.15), 1.0).astype(np.float32)
    e_od *= keep
    h_od *= keep
    rbc_od *= keep

    e_in_nuclei = (labels > 0) * rng.uniform(0.05, 0.3)
    od = (h_od + nuc_h)[..., None] * h_vec + (e_od + e_in_nuclei)[..., None] * e_vec + rbc_od[..., None] * rbc_vec
    od *= rng.uniform(0.7, 1.8)  # stain intensity varies between labs
    blur = rng.uniform(0.3, 1.4)
    od = ndi.gaussian_filter(od, (blur, blur, 0))
    background = rng.uniform(225, 255, 3) if rng.uniform() < 0.8 else np.full(3, 250.0)
    rgb = background * np.exp(-od) + rng.normal(0, rng.uniform(0.5, 4), od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), _relabel(labels)


def _paste_max(canvas: np.ndarray, patch: np.ndarray, cy: float, cx: float) -> None:
    r = patch.shape[0] // 2
    y0, x0 = int(round(cy)) - r, int(round(cx)) - r
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(canvas.shape[0], y0 + patch.shape[0]), min(canvas.shape[1], x0 + patch.shape[1])
    if sy1 > sy0 and sx1 > sx0:
        sub = patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        canvas[sy0:sy1, sx0:sx1] = np.maximum(canvas[sy0:sy1, sx0:sx1], sub)


def _relabel(labels: np.ndarray, min_area: int = 8) -> np.ndarray:
    """Drop slivers left by occlusion and keep only each nucleus's largest piece."""
    out = np.zeros_like(labels)
    next_id = 1
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        piece, k = ndi.label(labels[sl] == i)
        if k == 0:
            continue
        if k > 1:
            sizes = ndi.sum(np.ones_like(piece), piece, range(1, k + 1))
            piece = (piece == 1 + int(np.argmax(sizes))).astype(np.int32)
        if piece.sum() >= min_area:
            out[sl][piece > 0] = next_id
            next_id += 1
    return out


def make_slide(rng: np.random.Generator, tiles_y: int = 4, tiles_x: int = 4, tile: int = 256) -> SyntheticTile:
    """A larger held-out image, stitched from independent tiles (for whole-image evals)."""
    rgb = np.zeros((tiles_y * tile, tiles_x * tile, 3), np.uint8)
    labels = np.zeros((tiles_y * tile, tiles_x * tile), np.int32)
    offset = 0
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            tile_rgb, tile_labels = make_tile(rng, tile)
            sl = np.s_[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile]
            rgb[sl] = tile_rgb
            labels[sl] = np.where(tile_labels > 0, tile_labels + offset, 0)
            offset += int(tile_labels.max())
    return SyntheticTile(rgb, labels)
