"""Whole-slide image reading shared by the scheduler (validation), inference and storage.

Two backends behind one small interface (SlideReader):
- OpenSlide for everything it reads (SVS, NDPI, MRXS, generic tiled TIFF, DICOM...);
- a tifffile fallback for what OpenSlide refuses (OME-TIFF, plain/single-level TIFF).
  It decodes only the tiles/strips a region touches, so a large level 0 is never
  loaded whole. JPEG-compressed TIFFs need the `imagecodecs` package.

Coordinates follow OpenSlide: read_region(level, x0, y0, w, h) takes the top-left in
level-0 pixels and the size in pixels *of that level*; it returns H x W x 3 uint8 RGB
(transparent/out-of-bounds pixels are white, like glass).

Errors are SlideError; `.permanent` says whether retrying could ever help (a corrupt
or unsupported file: no; an I/O hiccup on a network mount: maybe).
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from services.common.api.slidelane.internal.v1 import messaging_pb2

# A resolution outside this range is metadata noise (e.g. the 72 dpi default of
# many TIFF writers = 352 um/px), not a microscope pixel size.
_MPP_RANGE = (0.02, 50.0)


class SlideError(Exception):
    """A slide cannot be opened or read. str() names the file and the cause."""

    def __init__(self, path: str | os.PathLike[str], cause: object, permanent: bool = True) -> None:
        self.path = str(path)
        self.cause = str(cause)
        self.permanent = permanent
        super().__init__(f"cannot read slide {Path(self.path).name!r} ({self.path}): {self.cause}")


class MissingMppError(SlideError):
    """A job needs the slide's pixel size, the file has none, and the user gave no override."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            path,
            "the slide has no pixel size (mpp) in its metadata; set params.mpp (microns per pixel)",
            permanent=True,
        )


def resolve_mpp(slide: SlideReader, override: float | None = None) -> float:
    """The pixel size to plan with: the user's override, else the file's; MissingMppError if neither."""
    if override is not None and override > 0:
        return float(override)
    if slide.mpp:
        return float(slide.mpp)
    raise MissingMppError(slide.path)


def _plausible_mpp(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value if _MPP_RANGE[0] <= value <= _MPP_RANGE[1] else None


class SlideReader:
    """Common interface; see the module docstring for coordinate conventions."""

    path: str
    width: int
    height: int
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None
    backend: str

    def read_region(self, level: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def best_level_for_downsample(self, downsample: float) -> int:
        """Highest level whose downsample does not exceed `downsample` (never coarser than asked)."""
        best = 0
        for index, value in enumerate(self.level_downsamples):
            if value <= downsample * 1.001:
                best = index
        return best

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """Whole-slide RGB view whose long side is <= max_size (from the nearest coarser level)."""
        wanted = max(self.width, self.height) / max_size
        level = self.best_level_for_downsample(max(1.0, wanted))
        lw, lh = self.level_dimensions[level]
        step = max(1, int(np.ceil(max(lw, lh) / max_size)))
        if step == 1:
            return self.read_region(level, 0, 0, lw, lh)
        ds = self.level_downsamples[level]
        rows = []  # band by band, decimated, so a single-level TIFF never sits whole in memory
        band = step * max(1, 1024 // step)
        for y in range(0, lh, band):
            pixels = self.read_region(level, 0, int(round(y * ds)), lw, min(band, lh - y))
            rows.append(pixels[::step, ::step])
        return np.concatenate(rows, axis=0)

    def _check_level(self, level: int, w: int, h: int) -> None:
        if not 0 <= level < self.level_count:
            raise SlideError(self.path, f"level {level} out of range (slide has {self.level_count})")
        if w <= 0 or h <= 0:
            raise SlideError(self.path, f"empty region {w}x{h}")

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _OpenSlideReader(SlideReader):
    backend = "openslide"

    def __init__(self, path: str, handle: Any) -> None:
        import openslide

        self.path = path
        self._slide = handle
        self.width, self.height = handle.dimensions
        self.level_count = handle.level_count
        self.level_dimensions = tuple(handle.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in handle.level_downsamples)
        mpp_x = handle.properties.get(openslide.PROPERTY_NAME_MPP_X)
        mpp_y = handle.properties.get(openslide.PROPERTY_NAME_MPP_Y)
        try:
            values = [float(v) for v in (mpp_x, mpp_y) if v]
            self.mpp = _plausible_mpp(sum(values) / len(values)) if values else None
        except ValueError:
            self.mpp = None
        if self.mpp is None:
            self.mpp = _mpp_from_tiff_tags(path)

    def read_region(self, level: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        import openslide

        self._check_level(level, w, h)
        try:
            image = self._slide.read_region((int(x0), int(y0)), int(level), (int(w), int(h)))
        except openslide.OpenSlideError as error:
            # OpenSlide's handle is unusable after an error; the data itself is bad.
            raise SlideError(self.path, f"region read failed: {error}", permanent=True) from error
        rgba = np.asarray(image)
        return _composite_on_white(rgba)

    def close(self) -> None:
        self._slide.close()


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """OpenSlide returns premultiplied RGBA with alpha 0 outside the scanned area: show it as glass."""
    if rgba.shape[2] == 3:
        return rgba
    if rgba[..., 3].min() == 255:  # fully scanned (the usual case): just drop alpha
        return np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = rgba[..., :3].astype(np.uint16) + (255 - alpha)  # premultiplied: add white where transparent
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _mpp_from_tiff_tags(path: str) -> float | None:
    """mpp from an Aperio description, OME PhysicalSizeX, or XResolution (+ unit) of page 0."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return _tifffile_mpp(tif)
    except Exception:
        return None


def _tifffile_mpp(tif: Any) -> float | None:
    page = tif.pages[0]
    description = page.description or ""
    match = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", description)
    if match:
        mpp = _plausible_mpp(float(match.group(1)))
        if mpp:
            return mpp
    if tif.is_ome and tif.ome_metadata:
        match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if match:
            factor = {"nm": 1e-3, "mm": 1e3, "cm": 1e4}.get(unit.group(1) if unit else "µm", 1.0)
            mpp = _plausible_mpp(float(match.group(1)) * factor)
            if mpp:
                return mpp
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        numerator, denominator = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
        if numerator and denominator:
            per_unit = numerator / denominator  # pixels per unit
            microns = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre; 1 = no unit
            if microns:
                return _plausible_mpp(microns / per_unit)
    return None


class _TiffFileReader(SlideReader):
    """Lazy region reads from (OME-)TIFF pages via tifffile, decoding only touched segments."""

    backend = "tifffile"

    def __init__(self, path: str) -> None:
        import tifffile
        from tifffile import TIFF

        self.path = path
        self._tif = tifffile.TiffFile(path)
        self._lock = threading.Lock()  # the file handle seeks: one decode at a time
        try:
            series = self._tif.series[0]
            pages = [level.keyframe for level in series.levels]
            page0 = pages[0]
            if page0.ndim < 2:
                raise ValueError("not an image")
            self._pages = pages
            self.height, self.width = int(page0.imagelength), int(page0.imagewidth)
            self.level_dimensions = tuple((int(p.imagewidth), int(p.imagelength)) for p in pages)
            self.level_count = len(pages)
            self.level_downsamples = tuple((self.width / w + self.height / h) / 2 for w, h in self.level_dimensions)
            for page in pages:  # fail at open, not at the first tile, on codecs we cannot decode
                if page.compression != 1:
                    TIFF.DECOMPRESSORS[page.compression]
            self.mpp = _tifffile_mpp(self._tif)
        except Exception:
            self._tif.close()
            raise

    def read_region(self, level: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        self._check_level(level, w, h)
        ds = self.level_downsamples[level]
        lx, ly = int(round(x0 / ds)), int(round(y0 / ds))
        page = self._pages[level]
        out = np.full((h, w, 3), 255, np.uint8)
        level_w, level_h = self.level_dimensions[level]
        # Part of the request inside the image; the rest stays white.
        ix0, iy0 = max(lx, 0), max(ly, 0)
        ix1, iy1 = min(lx + w, level_w), min(ly + h, level_h)
        if ix1 <= ix0 or iy1 <= iy0:
            return out
        try:
            with self._lock:
                block = self._read_block(page, ix0, iy0, ix1, iy1)
        except SlideError:
            raise
        except Exception as error:
            raise SlideError(self.path, f"region read failed: {error}", permanent=True) from error
        out[iy0 - ly : iy1 - ly, ix0 - lx : ix1 - lx] = _to_rgb8(block)
        return out

    def _read_block(self, page: Any, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Decode only the tiles/strips that intersect [x0,x1) x [y0,y1) of `page`."""
        if page.planarconfig != 1 or not page.dataoffsets or page.is_subsampled and not page.is_tiled:
            return np.asarray(page.asarray())[y0:y1, x0:x1]  # unusual layouts: small files only
        if page.is_tiled:
            seg_w, seg_h = int(page.tilewidth), int(page.tilelength)
        else:
            seg_w, seg_h = int(page.imagewidth), int(page.rowsperstrip or page.imagelength)
        across = math.ceil(page.imagewidth / seg_w)
        samples = int(page.samplesperpixel)
        block: np.ndarray | None = None
        fh = self._tif.filehandle
        for row in range(y0 // seg_h, (y1 - 1) // seg_h + 1):
            for col in range(x0 // seg_w, (x1 - 1) // seg_w + 1):
                index = row * across + col
                if index >= len(page.dataoffsets) or not page.databytecounts[index]:
                    continue  # sparse (missing) tile: stays white
                fh.seek(page.dataoffsets[index])
                data = fh.read(page.databytecounts[index])
                decoded, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
                if decoded is None:
                    continue
                tile = np.asarray(decoded).reshape(decoded.shape[-3], decoded.shape[-2], decoded.shape[-1])
                if block is None:
                    block = np.full((y1 - y0, x1 - x0, samples), 255, dtype=tile.dtype)
                ty, tx = row * seg_h, col * seg_w
                sy0, sx0 = max(y0, ty), max(x0, tx)
                sy1, sx1 = min(y1, ty + tile.shape[0]), min(x1, tx + tile.shape[1])
                block[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx]
        if block is None:
            block = np.full((y1 - y0, x1 - x0, samples), 255, np.uint8)
        return block

    def close(self) -> None:
        self._tif.close()


def _to_rgb8(block: np.ndarray) -> np.ndarray:
    """Any sample layout to H x W x 3 uint8 (grey -> RGB, RGBA -> RGB, >8-bit rescaled)."""
    if block.ndim == 2:
        block = block[..., None]
    if block.dtype != np.uint8:
        block = block.astype(np.float32)
        top = float(block.max()) or 1.0
        block = np.clip(block / top * 255.0, 0, 255).astype(np.uint8)
    if block.shape[2] == 1:
        return np.repeat(block, 3, axis=2)
    if block.shape[2] == 2:
        return np.concatenate([block, block[..., :1]], axis=2)
    return np.ascontiguousarray(block[..., :3])


def open_slide(path: str | os.PathLike[str]) -> SlideReader:
    """Open with OpenSlide, else tifffile; SlideError (permanent unless an I/O error) if neither can."""
    path = str(path)
    if not os.path.exists(path):
        raise SlideError(path, "no such file", permanent=True)
    if os.path.isdir(path):
        raise SlideError(path, "is a directory, not a slide file", permanent=True)
    try:
        import openslide

        handle = openslide.OpenSlide(path)
    except Exception as openslide_error:  # OpenSlideUnsupportedFormatError, OpenSlideError
        try:
            return _TiffFileReader(path)
        except OSError as error:
            if isinstance(error, (PermissionError,)):
                raise SlideError(path, f"permission denied: {error}", permanent=True) from error
            if type(error) is OSError and error.errno is not None:
                raise SlideError(path, f"I/O error: {error}", permanent=False) from error
            raise SlideError(path, f"unsupported or corrupt slide: {openslide_error}", permanent=True) from error
        except Exception as error:
            cause = f"unsupported or corrupt slide: {openslide_error}; tifffile: {str(error).strip(chr(39))}"
            raise SlideError(path, cause, permanent=True) from None
    try:
        return _OpenSlideReader(path, handle)
    except Exception as error:
        handle.close()
        raise SlideError(path, f"unreadable slide metadata: {error}", permanent=True) from error


def check_readable_slide(path: str) -> None:
    """Open the slide and decode a small region from its middle; raise SlideError when that fails.

    Opening alone is not enough: some files (e.g. a corrupt JPEG stream) open fine and
    only fail when pixels are decoded.
    """
    with open_slide(path) as slide:
        size = 64
        level = slide.level_count - 1  # cheapest read that still decodes real tile data
        lw, lh = slide.level_dimensions[level]
        ds = slide.level_downsamples[level]
        w, h = min(size, lw), min(size, lh)
        x0 = int(max(0, (lw - w) // 2) * ds)
        y0 = int(max(0, (lh - h) // 2) * ds)
        slide.read_region(level, x0, y0, w, h)
        if level != 0:  # level 0 is what inference reads; check it decodes too
            slide.read_region(0, slide.width // 2, slide.height // 2, min(size, slide.width), min(size, slide.height))


validate = check_readable_slide  # the name the issue uses: open AND decode, at workflow creation


class RememberedSlideChecks:
    """A slide check (check_readable_slide) that remembers the files that passed it: a file
    unchanged since (same device, inode, size and modification time) is not opened and
    decoded again. Labs submit workflow after workflow over the same slides, and every
    CreateWorkflow checks each of its slides (~1 ms each, on the scheduler's CPU). Failures
    are not remembered: a fixed or newly copied file is checked afresh."""

    def __init__(self, check: Callable[[str], None] = check_readable_slide, capacity: int = 4096) -> None:
        self._check = check
        self._capacity = capacity
        self._passed: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
        self._lock = threading.Lock()  # validation runs in worker threads

    def __call__(self, path: str) -> None:
        try:
            stat = os.stat(path)
        except OSError:
            self._check(path)  # raises the check's own error, which says what is wrong
            return
        version = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if self._passed.get(path) == version:
                self._passed.move_to_end(path)
                return
        self._check(path)
        with self._lock:
            self._passed[path] = version
            self._passed.move_to_end(path)
            while len(self._passed) > self._capacity:
                self._passed.popitem(last=False)


def level_read_size(slide: SlideReader, level: int, width: int, height: int) -> tuple[int, int]:
    """Pixels at `level` covering a level-0 extent: round(extent / downsample), at least 1."""
    ds = slide.level_downsamples[level]
    return max(1, int(round(width / ds))), max(1, int(round(height / ds)))


class SlideCache:
    """Thread-safe LRU of open slides, so a worker does not reopen a slide for every tile.

    read_tile returns the task's read_region read at task.level, NOT rescaled to the
    model's pixel size: the array covers level-0 [x, x + w*ds) x [y, y + h*ds) with
    ds = level_downsamples[level] and (w, h) = level_read_size(...). Segmenter.segment_tiles
    does the resize and maps coordinates back with the same convention.
    """

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._slides: OrderedDict[str, SlideReader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> SlideReader:
        with self._lock:
            slide = self._slides.get(path)
            if slide is not None:
                self._slides.move_to_end(path)
                return slide
        opened = open_slide(path)  # outside the lock: opening can be slow
        with self._lock:
            existing = self._slides.get(path)
            if existing is not None:
                opened.close()
                return existing
            self._slides[path] = opened
            while len(self._slides) > self.capacity:
                # Not closed here: another thread may still be reading it; GC closes it.
                self._slides.popitem(last=False)
            return opened

    def evict(self, path: str) -> None:
        with self._lock:
            self._slides.pop(path, None)

    def read_tile(self, task: messaging_pb2.TileTask) -> np.ndarray:
        slide = self.get(task.image_path)
        rect = task.read_region
        w, h = level_read_size(slide, task.level, rect.width, rect.height)
        try:
            return slide.read_region(task.level, rect.x, rect.y, w, h)
        except SlideError:
            self.evict(task.image_path)  # an OpenSlide handle is dead after an error
            raise

    def close(self) -> None:
        with self._lock:
            slides = list(self._slides.values())
            self._slides.clear()
        for slide in slides:
            slide.close()
