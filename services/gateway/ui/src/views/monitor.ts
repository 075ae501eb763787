// Monitoring: active users vs the limit, admission queue, the caller's lane depths,
// workers and their tiles/s, recent failures (GetDashboard) and health (GetHealth).
import { metrics, problem, system } from "../api";
import { emptyState, errorBox, loading } from "../components";
import { formatTime, h } from "../dom";
import type { GetDashboardResponse } from "../gen/slidelane/v1/metrics_service_pb";
import type { GetHealthResponse } from "../gen/slidelane/v1/system_service_pb";
import type { ViewContext } from "../main";

const REFRESH_MS = 5000;

export function monitorView({ root, signal, onReconnect }: ViewContext): void {
  const updated = h("p", { class: "live-status", role: "status" });
  const dash = h("div", { "aria-busy": "true" }, loading("the dashboard"));
  const health = h("div", { "aria-busy": "true" }, loading("health"));
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Monitoring"), updated),
    h("section", { "aria-labelledby": "load-title" }, h("h2", { id: "load-title", class: "visually-hidden" }, "Load"), dash),
    h("section", { "aria-labelledby": "health-title" }, h("h2", { id: "health-title" }, "Health"), health),
  );
  let dashboard: GetDashboardResponse | undefined;
  let healthReply: GetHealthResponse | undefined;

  const refresh = async () => {
    const [d, hl] = await Promise.allSettled([
      metrics.getDashboard({}, { signal }),
      system.getHealth({}, { signal }),
    ]);
    if (signal.aborted) return;
    if (d.status === "fulfilled") {
      dashboard = d.value;
      dash.replaceChildren(...renderDashboard(dashboard));
    } else if (!dashboard) {
      dash.replaceChildren(errorBox("Could not load the dashboard", problem(d.reason), () => void refresh()));
    }
    dash.setAttribute("aria-busy", "false");
    if (hl.status === "fulfilled") {
      healthReply = hl.value;
      health.replaceChildren(renderHealth(healthReply));
    } else if (!healthReply) {
      health.replaceChildren(errorBox("Could not load health", problem(hl.reason), () => void refresh()));
    }
    health.setAttribute("aria-busy", "false");
    if (d.status === "fulfilled") updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
  };
  void refresh();
  const timer = window.setInterval(() => void refresh(), REFRESH_MS);
  signal.addEventListener("abort", () => window.clearInterval(timer));
  onReconnect(() => void refresh());
}

function tile(label: string, value: string, extra?: Node | string | null, testid?: string): HTMLElement {
  return h("div", { class: "tile" }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value", "data-testid": testid }, value), extra ?? null);
}

function renderDashboard(d: GetDashboardResponse): HTMLElement[] {
  const usage = d.maxActiveUsers > 0 ? d.activeUsers / d.maxActiveUsers : 0;
  const totalTps = d.workers.reduce((sum, w) => sum + w.tilesPerSecond, 0);
  const tiles = h(
    "div",
    { class: "tiles" },
    tile(
      "Active users",
      `${d.activeUsers} / ${d.maxActiveUsers}`,
      h("meter", { min: 0, max: 1, value: usage, high: 0.99, "aria-label": "Active users against the limit" }),
      "active-users",
    ),
    tile("Admission queue", d.admissionQueueLength === 0 ? "empty" : `${d.admissionQueueLength} waiting`, d.myQueuePosition > 0 ? h("div", { class: "muted" }, `You are #${d.myQueuePosition}`) : null, "admission-queue"),
    tile("Workers", String(d.workers.length), h("div", { class: "muted" }, `${totalTps.toFixed(2)} tiles/s in all`)),
    tile("Your recent failures", String(d.recentFailures.length)),
  );
  const lanes = h(
    "section",
    { "aria-labelledby": "lanes-title" },
    h("h2", { id: "lanes-title" }, "Your branch lanes"),
    d.lanes.length === 0
      ? emptyState("No jobs waiting or running in your lanes.")
      : h(
          "table",
          { class: "table" },
          h("thead", null, h("tr", null, h("th", { scope: "col" }, "Branch"), h("th", { scope: "col" }, "Queued"), h("th", { scope: "col" }, "Running"), h("th", { scope: "col" }, "Depth"))),
          h(
            "tbody",
            null,
            d.lanes.map((lane) =>
              h(
                "tr",
                null,
                h("th", { scope: "row" }, lane.branch),
                h("td", null, String(lane.queued)),
                h("td", null, String(lane.running)),
                h("td", null, h("meter", { min: 0, max: Math.max(10, lane.queued + lane.running), value: lane.queued + lane.running, "aria-label": `Depth of lane ${lane.branch}` })),
              ),
            ),
          ),
        ),
  );
  const workers = h(
    "section",
    { "aria-labelledby": "workers-title" },
    h("h2", { id: "workers-title" }, "Inference workers"),
    d.workers.length === 0
      ? emptyState("No worker has reported in the last minute.")
      : h(
          "table",
          { class: "table" },
          h("thead", null, h("tr", null, ["Worker", "Device", "Tiles/s", "Model", "Last seen"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            null,
            d.workers.map((w) =>
              h(
                "tr",
                null,
                h("th", { scope: "row", class: "mono" }, w.workerId),
                h("td", null, w.device),
                h("td", null, w.tilesPerSecond.toFixed(2)),
                h("td", { class: "mono" }, w.model),
                h("td", null, formatTime(w.lastSeen)),
              ),
            ),
          ),
        ),
  );
  const failures = h(
    "section",
    { "aria-labelledby": "failures-title" },
    h("h2", { id: "failures-title" }, "Your recent failures"),
    d.recentFailures.length === 0
      ? emptyState("None.")
      : h(
          "table",
          { class: "table" },
          h("thead", null, h("tr", null, ["Job", "Workflow", "Error", "When"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            null,
            d.recentFailures.map((f) =>
              h(
                "tr",
                null,
                h("th", { scope: "row" }, h("a", { href: `#/jobs/${f.id}` }, f.jobId)),
                h("td", null, h("a", { href: `#/workflows/${f.workflowId}`, class: "mono" }, f.workflowId)),
                h("td", { class: "error-text" }, f.error),
                h("td", null, formatTime(f.finishedAt)),
              ),
            ),
          ),
        ),
  );
  return [tiles, h("div", { class: "columns" }, lanes, workers), failures];
}

function renderHealth(reply: GetHealthResponse): HTMLElement {
  const ok = reply.status === "SERVING";
  return h(
    "div",
    null,
    h("p", { class: ok ? "health ok" : "health bad", "data-testid": "health-status" }, ok ? "All essential components are healthy (SERVING)." : `Not serving (${reply.status}).`),
    h(
      "table",
      { class: "table" },
      h("thead", null, h("tr", null, ["Component", "Status", "Essential", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        null,
        reply.components.map((c) =>
          h(
            "tr",
            null,
            h("th", { scope: "row" }, c.name),
            h("td", null, h("span", { class: c.healthy ? "state state-succeeded" : "state state-failed" }, c.healthy ? "healthy" : "unhealthy")),
            h("td", null, c.essential ? "yes" : "no"),
            h("td", null, c.detail),
          ),
        ),
      ),
    ),
  );
}
