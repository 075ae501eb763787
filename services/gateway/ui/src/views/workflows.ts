// The caller's workflows, live: ListWorkflows, then ProgressService.Watch events
// applied as they come (and a slow refresh for admission-queue positions).
import { problem, progress, workflows as api } from "../api";
import { emptyState, errorBox, loading, progressBar, stateBadge } from "../components";
import { clear, formatTime, h, keepingRowFocus, plural } from "../dom";
import type { Workflow } from "../gen/slidelane/v1/types_pb";
import { WorkflowState } from "../gen/slidelane/v1/types_pb";
import type { ViewContext } from "../main";
import { applyEvent, FINAL_WORKFLOW, keepStreaming, workflowStateLabel } from "../state";

const REFRESH_MS = 10_000;

export function workflowsView({ root, signal, onReconnect }: ViewContext): void {
  const body = h("div", { "aria-busy": "true" }, loading("your workflows"));
  const live = h("p", { class: "live-status", role: "status" });
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", null, "Workflows"),
      h("a", { class: "button primary", href: "#/new" }, "New workflow"),
    ),
    live,
    body,
  );
  let items: Workflow[] | undefined;
  let loadedOnce = false;

  const render = () => {
    if (!items) return;
    const shown = items;
    body.setAttribute("aria-busy", "false");
    // The table is rebuilt on every change; the focused workflow's link keeps focus.
    keepingRowFocus(body, "data-workflow-id", () => {
      clear(body);
      if (shown.length === 0) {
        body.append(emptyState("You have no workflows yet.", h("a", { href: "#/new" }, "Create your first workflow")));
        return;
      }
      body.append(
        h(
          "table",
          { class: "table", "data-testid": "workflow-table" },
          h("caption", { class: "visually-hidden" }, "Your workflows, newest first"),
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              ["Name", "State", "Admission", "Progress", "Jobs", "Created"].map((t) => h("th", { scope: "col" }, t)),
            ),
          ),
          h(
            "tbody",
            null,
            shown.map((wf) => {
              const label = workflowStateLabel(wf.state);
              const done = wf.state === WorkflowState.SUCCEEDED;
              return h(
                "tr",
                { "data-workflow-id": wf.workflowId },
                h("th", { scope: "row" }, h("a", { href: `#/workflows/${wf.workflowId}` }, wf.name || wf.workflowId), h("div", { class: "muted mono" }, wf.workflowId)),
                h("td", null, stateBadge(label)),
                h(
                  "td",
                  { "data-testid": "queue-position" },
                  wf.state === WorkflowState.QUEUED && wf.queuePosition > 0
                    ? `#${wf.queuePosition} in the admission queue`
                    : FINAL_WORKFLOW.has(wf.state)
                      ? "—"
                      : wf.state === WorkflowState.QUEUED
                        ? "waiting"
                        : "admitted",
                ),
                h("td", null, progressBar(wf.progress, `Progress of ${wf.name || wf.workflowId}`, done)),
                h("td", null, plural(wf.jobs.length, "job")),
                h("td", null, formatTime(wf.createdAt)),
              );
            }),
          ),
        ),
      );
    });
  };

  const load = async () => {
    try {
      const reply = await api.listWorkflows({ pageSize: 100 }, { signal });
      items = reply.workflows;
      loadedOnce = true;
      render();
    } catch (error) {
      if (signal.aborted) return;
      if (!loadedOnce) {
        clear(body);
        body.setAttribute("aria-busy", "false");
        body.append(errorBox("Could not load your workflows", problem(error), () => void load()));
      }
    }
  };

  void load();
  onReconnect(() => void load());
  const timer = window.setInterval(() => void load(), REFRESH_MS);
  signal.addEventListener("abort", () => window.clearInterval(timer));

  void keepStreaming({
    signal,
    open: (s) => progress.watch({}, { signal: s }),
    onMessage: (message) => {
      live.textContent = "Live updates on.";
      const event = message.event;
      if (!event || !items) return;
      const index = items.findIndex((w) => w.workflowId === event.workflowId);
      if (index < 0) {
        void load(); // a workflow we have not seen (created elsewhere)
        return;
      }
      items[index] = applyEvent(items[index], event) ?? items[index];
      render();
    },
    onDrop: () => {
      live.textContent = "Live updates paused; reconnecting…";
    },
    beforeReopen: () => void load(),
  });
}
