// A job's results: summary (cells, area histogram), downloads (GetJobResults stream
// -> Blob) and the slide viewer with cell and tissue-mask overlays.
import { isNotFound, jobs, problem, visualization, workflows } from "../api";
import { errorBox, loading, progressBar, stateBadge } from "../components";
import { clear, formatTime, h, nextId, present, s } from "../dom";
import { JobState, type Job } from "../gen/slidelane/v1/types_pb";
import type { GetVisualizationResponse, HistogramBin } from "../gen/slidelane/v1/visualization_service_pb";
import type { ViewContext } from "../main";
import { FINAL_JOB, jobStateLabel } from "../state";
import { createViewer, maskLayer, type SlideViewer } from "../viewer";

const FORMATS: Record<string, { label: string; ext: string }> = {
  json: { label: "Download JSON", ext: "json" },
  geojson: { label: "Download GeoJSON", ext: "geojson" },
  mask: { label: "Download mask (PNG)", ext: "png" },
};

export async function fetchResult(jobId: string, format: string, signal: AbortSignal): Promise<Blob> {
  const parts: Uint8Array<ArrayBuffer>[] = [];
  let type = "application/octet-stream";
  for await (const chunk of jobs.getJobResults({ jobId, format }, { signal })) {
    if (chunk.contentType) type = chunk.contentType;
    parts.push(new Uint8Array(chunk.data));
  }
  return new Blob(parts, { type });
}

export function jobView({ root, params, signal, onReconnect }: ViewContext): void {
  const [jobId] = params;
  const crumbs = h("p", { class: "crumbs" }, h("a", { href: "#/workflows" }, "← All workflows"));
  const heading = h("h1", null, "Job results");
  const body = h("div", { "aria-busy": "true" }, loading("the job"));
  root.append(crumbs, heading, body);
  let viewer: SlideViewer | undefined;
  let pollTimer = 0;
  let shown = false;
  signal.addEventListener("abort", () => {
    window.clearTimeout(pollTimer);
    viewer?.destroy();
  });

  const load = async () => {
    window.clearTimeout(pollTimer);
    let job: Job | undefined;
    try {
      job = (await jobs.getJob({ jobId }, { signal })).job;
    } catch (error) {
      if (signal.aborted) return;
      if (!shown) {
        clear(body);
        body.setAttribute("aria-busy", "false");
        const p = problem(error);
        body.append(
          isNotFound(error)
            ? errorBox("No such job", { ...p, message: "It does not exist, or it belongs to another user." })
            : errorBox("Could not load the job", p, () => void load()),
        );
      }
      return;
    }
    if (!job || signal.aborted) return;
    crumbs.replaceChildren(h("a", { href: `#/workflows/${job.workflowId}` }, "← Back to the workflow"));
    heading.textContent = `${job.jobId} · ${job.jobType}`;
    document.title = `${job.jobId} · Slidelane`;
    if (job.state !== JobState.SUCCEEDED) {
      shown = true;
      renderUnfinished(job);
      if (!FINAL_JOB.has(job.state)) pollTimer = window.setTimeout(() => void load(), 3000);
      return;
    }
    if (shown && body.dataset.ready === "true") return;
    await renderResults(job);
  };

  function facts(job: Job): HTMLElement {
    return h(
      "dl",
      { class: "facts" },
      h("div", null, h("dt", null, "State"), h("dd", null, stateBadge(jobStateLabel(job.state)))),
      h("div", null, h("dt", null, "Slide"), h("dd", { class: "mono wrap" }, job.imagePath)),
      h("div", null, h("dt", null, "Branch"), h("dd", null, job.branch || "main")),
      h("div", null, h("dt", null, "Attempts"), h("dd", null, String(job.attempts))),
      h("div", null, h("dt", null, "Started"), h("dd", null, formatTime(job.startedAt))),
      h("div", null, h("dt", null, "Finished"), h("dd", null, formatTime(job.finishedAt))),
    );
  }

  function renderUnfinished(job: Job): void {
    body.setAttribute("aria-busy", "false");
    body.replaceChildren(
      ...present(
      facts(job),
      progressBar(job.progress, `Progress of job ${job.jobId}`),
      job.error ? h("p", { class: "error-text" }, job.error) : null,
      h(
        "p",
        { class: "hint", role: "status" },
        FINAL_JOB.has(job.state)
          ? "This job did not succeed, so it has no results."
          : "Results appear here when the job has succeeded; this page checks every few seconds.",
      ),
      ),
    );
  }

  async function renderResults(job: Job): Promise<void> {
    let summary: GetVisualizationResponse;
    try {
      summary = await visualization.getVisualization({ jobId }, { signal });
    } catch (error) {
      if (signal.aborted) return;
      body.replaceChildren(facts(job), errorBox("Could not load the results", problem(error), () => void load()));
      body.setAttribute("aria-busy", "false");
      return;
    }
    shown = true;
    body.dataset.ready = "true";
    body.setAttribute("aria-busy", "false");
    const isCells = summary.jobType === "cell_segmentation";
    const stats = h(
      "dl",
      { class: "facts stats" },
      isCells ? h("div", null, h("dt", null, "Cells found"), h("dd", { "data-testid": "cell-count", class: "big" }, Number(summary.totalCells).toLocaleString())) : null,
      h("div", null, h("dt", null, "Tissue fraction"), h("dd", null, `${(summary.tissueFraction * 100).toFixed(1)} %`)),
      h("div", null, h("dt", null, "Slide size"), h("dd", null, `${Number(summary.slideWidth).toLocaleString()} × ${Number(summary.slideHeight).toLocaleString()} px`)),
      h("div", null, h("dt", null, "Pixel size"), h("dd", null, summary.mpp ? `${summary.mpp.toFixed(3)} µm/px` : "unknown")),
      summary.model ? h("div", null, h("dt", null, "Model"), h("dd", { class: "mono" }, summary.model)) : null,
    );
    const downloads = h("div", { class: "downloads", role: "group", "aria-label": "Downloads" });
    const downloadStatus = h("p", { class: "live-status", role: "status" });
    const formats = isCells ? ["json", "geojson"] : ["json", "geojson", "mask"];
    for (const format of formats) {
      const button = h("button", { type: "button" }, FORMATS[format].label);
      button.addEventListener("click", () => void download(job, format, button, downloadStatus));
      downloads.append(button);
    }
    body.replaceChildren(
      ...present(
      facts(job),
      h("section", { "aria-labelledby": "summary-title" }, h("h2", { id: "summary-title" }, "Summary"), stats, downloads, downloadStatus),
      isCells ? histogramSection(summary.areaHistogram, summary.mpp) : null,
      viewerSection(job, summary),
      ),
    );
  }

  async function download(job: Job, format: string, button: HTMLButtonElement, status: HTMLElement): Promise<void> {
    button.disabled = true;
    status.textContent = `Preparing ${FORMATS[format].label.replace("Download ", "")}…`;
    try {
      const blob = await fetchResult(jobId, format, signal);
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `${job.workflowId}_${job.jobId}.${FORMATS[format].ext}`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 30_000);
      status.textContent = `Downloaded ${(blob.size / 1024).toFixed(1)} KiB.`;
    } catch (error) {
      if (!signal.aborted) status.textContent = `Download failed: ${problem(error).message}`;
    } finally {
      button.disabled = false;
    }
  }

  function viewerSection(job: Job, summary: GetVisualizationResponse): HTMLElement {
    const isCells = summary.jobType === "cell_segmentation";
    const status = h("p", { class: "live-status", role: "status", "data-testid": "viewer-status" }, "Loading the slide…");
    const errors = h("p", { class: "error-text", role: "alert" });
    const stage = h("div", {
      class: "viewer",
      "data-testid": "slide-viewer",
      role: "application",
      "aria-label": "Slide viewer: drag to pan, scroll or use + and − to zoom, arrow keys to move",
    });
    const cellsId = nextId("cells");
    const maskId = nextId("mask");
    const cellsBox = h("input", { type: "checkbox", id: cellsId, checked: isCells, disabled: !isCells });
    const maskBox = h("input", { type: "checkbox", id: maskId, disabled: true });
    const maskHint = h("span", { class: "hint", id: `${maskId}-hint` }, "Looking for a tissue mask…");
    maskBox.setAttribute("aria-describedby", `${maskId}-hint`);
    const toolbar = h(
      "div",
      { class: "viewer-tools", role: "toolbar", "aria-label": "Viewer controls" },
      h("button", { type: "button", onclick: () => viewer?.zoomBy(1.5), "aria-label": "Zoom in" }, "+"),
      h("button", { type: "button", onclick: () => viewer?.zoomBy(1 / 1.5), "aria-label": "Zoom out" }, "−"),
      h("button", { type: "button", onclick: () => viewer?.home() }, "Fit slide"),
      h("label", { class: "check", for: cellsId }, cellsBox, isCells ? " Cell outlines" : " Cell outlines (not a segmentation job)"),
      h("label", { class: "check", for: maskId }, maskBox, " Tissue mask"),
      maskHint,
    );
    const section = h("section", { "aria-labelledby": "viewer-title" }, h("h2", { id: "viewer-title" }, "Slide viewer"), toolbar, stage, status, errors);

    // OpenSeadragon needs the element in the document to size itself.
    window.requestAnimationFrame(() => {
      if (signal.aborted) return;
      viewer = createViewer(stage, {
        jobId,
        width: Number(summary.slideWidth),
        height: Number(summary.slideHeight),
        hasCells: isCells,
        onStatus: (text) => (status.textContent = text),
        onError: (text) => (errors.textContent = text),
      });
      void viewer.ready.then(() => {
        stage.dataset.loaded = "true";
        if (!isCells) status.textContent = "Slide loaded.";
      });
    });
    cellsBox.addEventListener("change", () => viewer?.setCells(cellsBox.checked));

    let layer: HTMLCanvasElement | null = null;
    void (async () => {
      try {
        const maskJob = await findMaskJob(job);
        if (!maskJob) {
          maskHint.textContent = "No tissue mask: add a tissue_mask job on this slide to the workflow.";
          return;
        }
        layer = await maskLayer(await fetchResult(maskJob.id, "mask", signal));
        if (signal.aborted) return;
        maskBox.disabled = false;
        maskHint.textContent = maskJob.id === job.id ? "" : `From job ${maskJob.jobId}.`;
      } catch (error) {
        if (!signal.aborted) maskHint.textContent = `Tissue mask unavailable: ${problem(error).message}`;
      }
    })();
    maskBox.addEventListener("change", () => viewer?.setMask(maskBox.checked ? layer : null));
    return section;
  }

  async function findMaskJob(job: Job): Promise<Job | undefined> {
    if (job.jobType === "tissue_mask") return job;
    const wf = (await workflows.getWorkflow({ workflowId: job.workflowId }, { signal })).workflow;
    return wf?.jobs.find((j) => j.jobType === "tissue_mask" && j.imagePath === job.imagePath && j.state === JobState.SUCCEEDED);
  }

  void load();
  onReconnect(() => void load());
}

function histogramSection(bins: HistogramBin[], mpp: number): HTMLElement {
  const titleId = nextId("hist");
  if (bins.length === 0) {
    return h("section", { "aria-labelledby": titleId }, h("h2", { id: titleId }, "Cell areas"), h("p", { class: "hint" }, "No cells, so no histogram."));
  }
  const W = 640;
  const H = 220;
  const left = 56;
  const bottom = 40;
  const max = Math.max(1, ...bins.map((b) => Number(b.count)));
  const bw = (W - left - 10) / bins.length;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "histogram", role: "img", "aria-labelledby": titleId, "data-testid": "area-histogram" },
    s("line", { x1: left, y1: H - bottom, x2: W - 6, y2: H - bottom, class: "axis" }),
    s("line", { x1: left, y1: 8, x2: left, y2: H - bottom, class: "axis" }),
    s("text", { x: left - 6, y: 16, "text-anchor": "end", class: "tick" }, max.toLocaleString()),
    s("text", { x: left - 6, y: H - bottom, "text-anchor": "end", class: "tick" }, "0"),
    s("text", { x: (W + left) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, "cell area (px² at level 0)"),
    bins.map((bin, i) => {
      const count = Number(bin.count);
      const bh = ((H - bottom - 12) * count) / max;
      return s(
        "rect",
        { x: left + i * bw + 1, y: H - bottom - bh, width: Math.max(bw - 2, 1), height: bh, class: "bar-rect" },
        s("title", null, `${fmt(bin.lower)}–${fmt(bin.upper)} px²: ${count.toLocaleString()} cells`),
      );
    }),
    [0, Math.floor(bins.length / 2), bins.length - 1].map((i) =>
      s("text", { x: left + i * bw + bw / 2, y: H - bottom + 16, "text-anchor": "middle", class: "tick" }, fmt(bins[i].lower)),
    ),
  );
  return h(
    "section",
    { "aria-labelledby": titleId },
    h("h2", { id: titleId }, "Cell areas"),
    svg,
    h(
      "details",
      null,
      h("summary", null, "Histogram as a table"),
      h(
        "table",
        { class: "table compact" },
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Area (px²)"), mpp ? h("th", { scope: "col" }, "Area (µm²)") : null, h("th", { scope: "col" }, "Cells"))),
        h(
          "tbody",
          null,
          bins.map((b) =>
            h(
              "tr",
              null,
              h("td", null, `${fmt(b.lower)}–${fmt(b.upper)}`),
              mpp ? h("td", null, `${fmt(b.lower * mpp * mpp)}–${fmt(b.upper * mpp * mpp)}`) : null,
              h("td", null, Number(b.count).toLocaleString()),
            ),
          ),
        ),
      ),
    ),
  );
}

function fmt(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString() : value.toFixed(1);
}
