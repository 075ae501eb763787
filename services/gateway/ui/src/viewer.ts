// The slide viewer: OpenSeadragon over Deep Zoom tiles served through the gateway
// (GET /api/visualization/{job}/tiles/{level}/{col}/{row}: 254 px, overlap 1, JPEG),
// with a canvas overlay for the cells (ListCells per viewport: polygons when few,
// centroids when zoomed out) and the tissue mask.
import OpenSeadragon from "openseadragon";
import { apiBase, problem, reportError, session, visualization } from "./api";
import type { ListCellsResponse } from "./gen/slidelane/v1/visualization_service_pb";

import { maxLevel, TILE_OVERLAP, TILE_SIZE } from "./viewer-math";

const MAX_POLYGONS = 4000;

export interface ViewerOptions {
  jobId: string;
  width: number;
  height: number;
  /** Whether the job has cells to overlay. */
  hasCells: boolean;
  onStatus: (text: string) => void;
  onError: (text: string) => void;
}

export interface SlideViewer {
  setCells(on: boolean): void;
  setMask(mask: HTMLCanvasElement | null): void;
  zoomBy(factor: number): void;
  home(): void;
  destroy(): void;
  /** Resolves when the first tiles are drawn. */
  ready: Promise<void>;
}

export function createViewer(container: HTMLElement, options: ViewerOptions): SlideViewer {
  const { jobId, width, height } = options;
  const base = apiBase().replace(/\/$/, "");
  const viewer = OpenSeadragon({
    element: container,
    drawer: "canvas",
    showNavigationControl: false,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    navigatorAutoFade: false,
    navigatorOpacity: 1, // opaque, so the cell overlay underneath does not show through
    loadTilesWithAjax: true,
    ajaxHeaders: { "x-user-id": session.user ?? "" },
    crossOriginPolicy: false,
    gestureSettingsMouse: { clickToZoom: false },
    visibilityRatio: 0.5,
    maxZoomPixelRatio: 4,
    timeout: 60_000,
    tileSources: {
      width,
      height,
      tileSize: TILE_SIZE,
      tileOverlap: TILE_OVERLAP,
      minLevel: 0,
      maxLevel: maxLevel(width, height),
      getTileUrl: (level: number, x: number, y: number) =>
        `${base}/api/visualization/${encodeURIComponent(jobId)}/tiles/${level}/${x}/${y}`,
    } as unknown as OpenSeadragon.TileSourceOptions,
  });

  const canvas = document.createElement("canvas");
  canvas.className = "overlay-canvas";
  canvas.setAttribute("aria-hidden", "true");
  canvas.dataset.testid = "overlay-canvas";
  viewer.canvas.appendChild(canvas);

  let cellsOn = options.hasCells;
  let mask: HTMLCanvasElement | null = null;
  let cells: ListCellsResponse | undefined;
  let cellsRegion: { x: number; y: number; w: number; h: number } | undefined;
  let pending: AbortController | undefined;
  let fetchTimer = 0;
  let destroyed = false;
  let frame = 0;

  const imageToScreen = () => {
    const p0 = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const p1 = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(width, 0));
    return { scale: (p1.x - p0.x) / width, ox: p0.x, oy: p0.y };
  };

  function draw(): void {
    frame = 0;
    if (destroyed) return;
    const dpr = window.devicePixelRatio || 1;
    const w = viewer.canvas.clientWidth;
    const h = viewer.canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.width = `${w}px`;
      canvas.style.height = `${h}px`;
    }
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const { scale, ox, oy } = imageToScreen();
    if (!Number.isFinite(scale) || scale <= 0) return;
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * ox, dpr * oy);
    if (mask) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(mask, 0, 0, width, height);
    }
    if (cellsOn && cells) {
      if (cells.centroidsOnly) {
        const r = Math.max(1.6 / scale, 1);
        ctx.fillStyle = "rgba(0, 230, 118, 0.9)";
        ctx.beginPath();
        for (const cell of cells.cells) {
          ctx.moveTo(cell.centroidX + r, cell.centroidY);
          ctx.arc(cell.centroidX, cell.centroidY, r, 0, Math.PI * 2);
        }
        ctx.fill();
      } else {
        ctx.strokeStyle = "rgba(0, 230, 118, 0.95)";
        ctx.lineWidth = 1.5 / scale;
        ctx.beginPath();
        for (const cell of cells.cells) {
          const poly = cell.polygon;
          if (poly.length < 6) continue;
          ctx.moveTo(poly[0], poly[1]);
          for (let i = 2; i < poly.length; i += 2) ctx.lineTo(poly[i], poly[i + 1]);
          ctx.closePath();
        }
        ctx.stroke();
      }
    }
  }

  const redraw = () => {
    if (!frame) frame = window.requestAnimationFrame(draw);
  };

  function visibleRegion() {
    const bounds = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds(true));
    const padX = bounds.width * 0.25;
    const padY = bounds.height * 0.25;
    const x = Math.max(0, bounds.x - padX);
    const y = Math.max(0, bounds.y - padY);
    return {
      x,
      y,
      w: Math.min(width, bounds.x + bounds.width + padX) - x,
      h: Math.min(height, bounds.y + bounds.height + padY) - y,
      inner: bounds,
    };
  }

  async function fetchCells(): Promise<void> {
    if (!cellsOn || destroyed || !options.hasCells) return;
    const region = visibleRegion();
    const inner = region.inner;
    // Still inside what we have (and not zoomed in past a centroid-only answer)? Keep it.
    if (
      cells &&
      cellsRegion &&
      inner.x >= cellsRegion.x &&
      inner.y >= cellsRegion.y &&
      inner.x + inner.width <= cellsRegion.x + cellsRegion.w &&
      inner.y + inner.height <= cellsRegion.y + cellsRegion.h &&
      !(cells.centroidsOnly && region.w * region.h < cellsRegion.w * cellsRegion.h * 0.5)
    ) {
      return;
    }
    pending?.abort();
    const controller = new AbortController();
    pending = controller;
    options.onStatus("Loading cells for this view…");
    try {
      const reply = await visualization.listCells(
        { jobId, x: region.x, y: region.y, width: region.w, height: region.h, maxPolygons: MAX_POLYGONS },
        { signal: controller.signal },
      );
      if (controller.signal.aborted || destroyed) return;
      cells = reply;
      cellsRegion = region;
      const total = Number(reply.totalInRegion);
      options.onStatus(
        reply.centroidsOnly
          ? `Zoomed out: ${total.toLocaleString()} cells in view, drawn as dots (zoom in for outlines).`
          : `${total.toLocaleString()} cell outlines loaded around this view.`,
      );
      redraw();
    } catch (error) {
      if (controller.signal.aborted || destroyed) return;
      reportError(error);
      const p = problem(error);
      options.onError(`Could not load cells: ${p.message}`);
    }
  }

  const scheduleFetch = () => {
    window.clearTimeout(fetchTimer);
    fetchTimer = window.setTimeout(() => void fetchCells(), 180);
  };

  viewer.addHandler("update-viewport", redraw);
  viewer.addHandler("resize", () => {
    redraw();
    scheduleFetch();
  });
  viewer.addHandler("animation-finish", scheduleFetch);
  viewer.addHandler("open", scheduleFetch);
  viewer.addHandler("open-failed", (event) => options.onError(`The slide could not be opened: ${String((event as { message?: string }).message ?? "")}`));
  let tileErrors = 0;
  viewer.addHandler("tile-load-failed", (event) => {
    tileErrors += 1;
    if (tileErrors === 1) options.onError(`Some slide tiles could not be loaded (${String((event as { message?: string }).message ?? "error")}).`);
  });

  const ready = new Promise<void>((resolve) => {
    const world = viewer.world;
    const check = () => {
      const item = world.getItemAt(0);
      if (item && item.getFullyLoaded()) {
        resolve();
        return true;
      }
      return false;
    };
    viewer.addHandler("open", () => {
      const item = world.getItemAt(0);
      if (!item) return;
      if (!check()) item.addHandler("fully-loaded-change", () => void check());
    });
  });

  return {
    ready,
    setCells(on: boolean) {
      cellsOn = on && options.hasCells;
      if (cellsOn) void fetchCells();
      redraw();
    },
    setMask(next: HTMLCanvasElement | null) {
      mask = next;
      redraw();
    },
    zoomBy(factor: number) {
      viewer.viewport.zoomBy(factor);
      viewer.viewport.applyConstraints();
    },
    home() {
      viewer.viewport.goHome();
    },
    destroy() {
      destroyed = true;
      pending?.abort();
      window.clearTimeout(fetchTimer);
      window.cancelAnimationFrame(frame);
      viewer.destroy();
    },
  };
}

/** Turn the tissue-mask PNG (L, tissue = 255) into a translucent coloured layer. */
export async function maskLayer(png: Blob): Promise<HTMLCanvasElement> {
  const bitmap = await createImageBitmap(png);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  if (!ctx) throw new Error("no 2D canvas");
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const tissue = px[i] > 127;
    px[i] = 255;
    px[i + 1] = 170;
    px[i + 2] = 0;
    px[i + 3] = tissue ? 90 : 0;
  }
  ctx.putImageData(data, 0, 0);
  bitmap.close();
  return canvas;
}
