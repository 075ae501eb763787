// Applying WorkflowEvents to Workflow messages, state labels, and resilient streams.
import { isAbort, connectivity, reportError } from "./api";
import type { WorkflowEvent } from "./gen/slidelane/v1/events_pb";
import { JobState, WorkflowState, type Job, type Progress, type Workflow } from "./gen/slidelane/v1/types_pb";

export const FINAL_WORKFLOW = new Set([WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED]);
export const FINAL_JOB = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.UPSTREAM_FAILED, JobState.CANCELLED]);

export function workflowStateLabel(state: WorkflowState): string {
  return (WorkflowState[state] ?? "UNKNOWN").replace("_", " ");
}

export function jobStateLabel(state: JobState): string {
  return (JobState[state] ?? "UNKNOWN").replace("_", " ");
}

export function stateClass(label: string): string {
  return `state state-${label.toLowerCase().replace(/\s+/g, "-")}`;
}

/** Apply one event to a workflow in place; returns the workflow to keep (a snapshot replaces it). */
export function applyEvent(workflow: Workflow | undefined, event: WorkflowEvent): Workflow | undefined {
  const kind = event.kind;
  if (kind.case === "snapshot") return kind.value.workflow ?? workflow;
  if (!workflow) return workflow;
  switch (kind.case) {
    case "workflowStateChanged":
      if (event.time && kind.value.state === WorkflowState.RUNNING && !workflow.startedAt) workflow.startedAt = event.time;
      if (event.time && FINAL_WORKFLOW.has(kind.value.state) && !workflow.finishedAt) workflow.finishedAt = event.time;
      workflow.state = kind.value.state;
      workflow.queuePosition = kind.value.queuePosition;
      if (kind.value.error) workflow.error = kind.value.error;
      if (kind.value.progress) workflow.progress = kind.value.progress;
      break;
    case "jobStateChanged": {
      const job = findJob(workflow, kind.value.id, kind.value.jobId);
      if (job) {
        if (event.time && kind.value.state === JobState.RUNNING) job.startedAt = event.time;
        if (event.time && FINAL_JOB.has(kind.value.state) && !job.finishedAt) job.finishedAt = event.time;
        job.state = kind.value.state;
        job.attempts = kind.value.attempts;
        if (kind.value.error) job.error = kind.value.error;
        if (kind.value.state === JobState.SUCCEEDED && job.progress && job.progress.tilesTotal > 0n) {
          job.progress.tilesDone = job.progress.tilesTotal;
        }
        if (kind.value.state !== JobState.QUEUED) job.queuePosition = 0;
      }
      break;
    }
    case "jobProgressed": {
      const job = findJob(workflow, kind.value.id, kind.value.jobId);
      if (job && kind.value.jobProgress) job.progress = kind.value.jobProgress;
      if (kind.value.workflowProgress) workflow.progress = kind.value.workflowProgress;
      break;
    }
    default:
      break;
  }
  return workflow;
}

function findJob(workflow: Workflow, id: string, jobId: string): Job | undefined {
  return workflow.jobs.find((j) => (id && j.id === id) || (!id && j.jobId === jobId));
}

export function fraction(progress: Progress | undefined): number {
  if (!progress || progress.tilesTotal <= 0n) return 0;
  return Math.min(1, Number(progress.tilesDone) / Number(progress.tilesTotal));
}

export function progressText(progress: Progress | undefined, done = false): string {
  if (!progress || progress.tilesTotal <= 0n) return done ? "done" : "not planned yet";
  return `${Number(progress.tilesDone).toLocaleString()} / ${Number(progress.tilesTotal).toLocaleString()} tiles`;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(t);
      resolve();
    });
  });

export interface StreamHooks<T> {
  signal: AbortSignal;
  /** Open the stream (called again after each drop). */
  open: (signal: AbortSignal) => AsyncIterable<T>;
  onMessage: (message: T) => void;
  /** Called with the error of a dropped stream (before the retry); return true to stop. */
  onDrop?: (error: unknown) => boolean | void;
  /** Called when a stream ended without error: return true to stop for good. */
  onEnd?: () => boolean;
  /** Called before each reopen after a drop or an end. */
  beforeReopen?: () => void;
}

/** Keep a server stream open: reconnect with backoff until the signal aborts. */
export async function keepStreaming<T>(hooks: StreamHooks<T>): Promise<void> {
  let backoff = 1000;
  let first = true;
  while (!hooks.signal.aborted) {
    if (!first) hooks.beforeReopen?.();
    first = false;
    try {
      for await (const message of hooks.open(hooks.signal)) {
        backoff = 1000;
        connectivity.up();
        hooks.onMessage(message);
      }
      if (hooks.signal.aborted || hooks.onEnd?.()) return;
      await sleep(1000, hooks.signal);
    } catch (error) {
      if (hooks.signal.aborted || isAbort(error)) return;
      reportError(error);
      if (hooks.onDrop?.(error) === true) return;
      await sleep(backoff, hooks.signal);
      backoff = Math.min(backoff * 2, 10_000);
    }
  }
}
