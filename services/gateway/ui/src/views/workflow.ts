// One workflow: header, DAG by branch lane, per-job progress live from
// WatchWorkflow (resumed with after_seq after a drop), and cancel.
import { isNotFound, problem, workflows } from "../api";
import { errorBox, loading, progressBar, stateBadge } from "../components";
import { drawDag, type DagView } from "../dag";
import { clear, formatTime, h, keepingRowFocus, present } from "../dom";
import { JobState, WorkflowState, type Workflow } from "../gen/slidelane/v1/types_pb";
import type { ViewContext } from "../main";
import { applyEvent, FINAL_JOB, FINAL_WORKFLOW, jobStateLabel, keepStreaming, workflowStateLabel } from "../state";

export function workflowDetailView({ root, params, signal, onReconnect }: ViewContext): void {
  const [workflowId] = params;
  const heading = h("h1", null, "Workflow");
  const body = h("div", { "aria-busy": "true" }, loading("the workflow"));
  const live = h("p", { class: "live-status", role: "status" });
  root.append(h("p", { class: "crumbs" }, h("a", { href: "#/workflows" }, "← All workflows")), heading, live, body);

  let workflow: Workflow | undefined;
  let lastSeq = 0n;
  let dag: DagView | undefined;
  let shapeKey = "";
  const parts: { header?: HTMLElement; jobs?: HTMLElement; cancelArea?: HTMLElement } = {};
  let confirming = false;
  let frame = 0;

  const schedule = () => {
    if (frame) return;
    frame = window.requestAnimationFrame(() => {
      frame = 0;
      render();
    });
  };

  function render(): void {
    if (!workflow) return;
    const wf = workflow;
    heading.textContent = wf.name || wf.workflowId;
    document.title = `${wf.name || "Workflow"} · Slidelane`;
    body.setAttribute("aria-busy", "false");
    const key = wf.jobs.map((j) => `${j.id}:${j.branch}:${j.dependsOn.join(",")}`).join("|");
    if (key !== shapeKey || !parts.header) {
      shapeKey = key;
      clear(body);
      parts.header = h("div", { class: "summary" });
      parts.cancelArea = h("div", { class: "cancel-area" });
      parts.jobs = h("div");
      dag = drawDag(wf);
      body.append(
        parts.header,
        parts.cancelArea,
        h("section", { "aria-labelledby": "dag-title" }, h("h2", { id: "dag-title" }, "Jobs by branch lane"), h("div", { class: "dag-scroll" }, dag.element)),
        h("section", { "aria-labelledby": "jobs-title" }, h("h2", { id: "jobs-title" }, "Job progress"), parts.jobs),
      );
    }
    dag?.update(wf);
    renderHeader(wf);
    renderCancel(wf);
    renderJobs(wf);
  }

  function renderHeader(wf: Workflow): void {
    const label = workflowStateLabel(wf.state);
    parts.header!.replaceChildren(
      ...present(
      h(
        "dl",
        { class: "facts" },
        h("div", null, h("dt", null, "State"), h("dd", { "data-testid": "workflow-state" }, stateBadge(label))),
        wf.state === WorkflowState.QUEUED
          ? h("div", null, h("dt", null, "Admission queue"), h("dd", null, wf.queuePosition > 0 ? `#${wf.queuePosition} — waiting for a free user slot` : "waiting"))
          : null,
        h("div", null, h("dt", null, "Workflow id"), h("dd", { class: "mono" }, wf.workflowId)),
        h("div", null, h("dt", null, "Created"), h("dd", null, formatTime(wf.createdAt))),
        h("div", null, h("dt", null, "Started"), h("dd", null, formatTime(wf.startedAt))),
        h("div", null, h("dt", null, "Finished"), h("dd", null, formatTime(wf.finishedAt))),
      ),
      h("div", { class: "overall" }, h("span", { class: "label" }, "Overall"), progressBar(wf.progress, "Overall progress", wf.state === WorkflowState.SUCCEEDED)),
      wf.error ? h("p", { class: "error-text", role: "note" }, wf.error) : null,
      ),
    );
  }

  function renderCancel(wf: Workflow): void {
    const area = parts.cancelArea!;
    const active = document.activeElement;
    const hadFocus = area.contains(active);
    clear(area);
    if (FINAL_WORKFLOW.has(wf.state)) {
      confirming = false;
      return;
    }
    if (!confirming) {
      area.append(h("button", { type: "button", class: "danger", onclick: () => { confirming = true; renderCancel(wf); (area.querySelector("button.danger") as HTMLButtonElement | null)?.focus(); } }, "Cancel workflow"));
    } else {
      area.append(
        h("span", { class: "confirm-text" }, "Cancel every queued and running job of this workflow?"),
        h("button", { type: "button", class: "danger", onclick: () => void cancel() }, "Yes, cancel it"),
        h("button", { type: "button", onclick: () => { confirming = false; renderCancel(wf); (area.querySelector("button") as HTMLButtonElement | null)?.focus(); } }, "Keep running"),
      );
    }
    if (hadFocus) (area.querySelector("button") as HTMLButtonElement | null)?.focus();
  }

  async function cancel(): Promise<void> {
    const area = parts.cancelArea!;
    area.querySelectorAll("button").forEach((b) => (b.disabled = true));
    live.textContent = "Cancelling…";
    try {
      const reply = await workflows.cancelWorkflow({ workflowId }, { signal });
      confirming = false;
      if (reply.workflow) workflow = reply.workflow;
      live.textContent = "Cancel requested.";
      render();
    } catch (error) {
      area.append(errorBox("Could not cancel", problem(error)));
      area.querySelectorAll("button").forEach((b) => (b.disabled = false));
    }
  }

  function renderJobs(wf: Workflow): void {
    const table = parts.jobs!;
    const rows = wf.jobs.map((job) => {
      const label = jobStateLabel(job.state);
      const done = job.state === JobState.SUCCEEDED;
      return h(
        "tr",
        { "data-job-id": job.jobId, "data-state": label },
        h("th", { scope: "row" }, job.jobId, h("div", { class: "muted" }, job.jobType)),
        h("td", null, job.branch || "main"),
        h("td", null, job.dependsOn.length ? job.dependsOn.join(", ") : "—"),
        h("td", null, stateBadge(label), job.state === JobState.QUEUED && job.queuePosition > 0 ? h("div", { class: "muted" }, `${job.queuePosition} ahead in lane`) : null),
        h("td", { class: "progress-cell" }, progressBar(job.progress, `Progress of job ${job.jobId}`, done)),
        h("td", null, String(job.attempts)),
        h("td", null, job.error ? h("span", { class: "error-text" }, job.error) : FINAL_JOB.has(job.state) ? "—" : ""),
        h("td", null, done ? h("a", { href: `#/jobs/${job.id}`, "aria-label": `Results of ${job.jobId}` }, "Results") : "—"),
      );
    });
    keepingRowFocus(table, "data-job-id", () =>
      table.replaceChildren(
        h(
          "table",
          { class: "table", "data-testid": "job-table" },
          h("caption", { class: "visually-hidden" }, "Jobs of this workflow"),
          h("thead", null, h("tr", null, ["Job", "Branch", "Depends on", "State", "Progress", "Attempts", "Error", ""].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", null, rows),
        ),
      ),
    );
  }

  const load = async () => {
    try {
      const reply = await workflows.getWorkflow({ workflowId }, { signal });
      if (!workflow || lastSeq === 0n) workflow = reply.workflow;
      render();
    } catch (error) {
      if (signal.aborted) return;
      if (!workflow) {
        clear(body);
        body.setAttribute("aria-busy", "false");
        const p = problem(error);
        body.append(
          isNotFound(error)
            ? errorBox("No such workflow", { ...p, message: "It does not exist, or it belongs to another user." })
            : errorBox("Could not load the workflow", p, () => void load()),
        );
      }
    }
  };
  void load();
  onReconnect(() => void load());

  void keepStreaming({
    signal,
    open: (s) => workflows.watchWorkflow({ workflowId, afterSeq: lastSeq }, { signal: s }),
    onMessage: (message) => {
      const event = message.event;
      if (!event) return;
      if (event.kind.case === "watchLagged") {
        lastSeq = event.kind.value.lastDeliveredSeq;
        throw new Error("lagged"); // reconnect from lastSeq
      }
      if (event.seq > lastSeq) lastSeq = event.seq;
      workflow = applyEvent(workflow, event);
      live.textContent = workflow && FINAL_WORKFLOW.has(workflow.state) ? "" : "Live updates on.";
      schedule();
    },
    onDrop: (error) => {
      if (isNotFound(error)) return true;
      live.textContent = "Live updates paused; reconnecting…";
    },
    onEnd: () => workflow !== undefined && FINAL_WORKFLOW.has(workflow.state),
  });
  signal.addEventListener("abort", () => window.cancelAnimationFrame(frame));
}
