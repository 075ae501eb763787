import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WorkflowEventSchema } from "./gen/slidelane/v1/events_pb";
import { JobState, WorkflowSchema, WorkflowState } from "./gen/slidelane/v1/types_pb";
import { applyEvent, fraction, progressText } from "./state";
import { maxLevel } from "./viewer-math";

const workflow = () =>
  create(WorkflowSchema, {
    workflowId: "w1",
    state: WorkflowState.QUEUED,
    queuePosition: 2,
    jobs: [
      { id: "g1", jobId: "mask", state: JobState.PENDING },
      { id: "g2", jobId: "segment", state: JobState.PENDING },
    ],
  });

describe("applyEvent", () => {
  it("a snapshot replaces the workflow", () => {
    const fresh = workflow();
    fresh.name = "snap";
    const event = create(WorkflowEventSchema, { workflowId: "w1", seq: 1n, kind: { case: "snapshot", value: { workflow: fresh } } });
    expect(applyEvent(workflow(), event)?.name).toBe("snap");
  });

  it("state changes carry the admission queue position and the times", () => {
    const wf = workflow();
    const at = (seconds: bigint) => ({ seconds, nanos: 0 });
    applyEvent(wf, create(WorkflowEventSchema, { time: at(10n), kind: { case: "workflowStateChanged", value: { state: WorkflowState.RUNNING, queuePosition: 0 } } }));
    expect(wf.state).toBe(WorkflowState.RUNNING);
    expect(wf.queuePosition).toBe(0);
    expect(wf.startedAt?.seconds).toBe(10n);
    applyEvent(wf, create(WorkflowEventSchema, { time: at(20n), kind: { case: "workflowStateChanged", value: { state: WorkflowState.SUCCEEDED } } }));
    expect(wf.finishedAt?.seconds).toBe(20n);
  });

  it("job progress and job state land on the right job", () => {
    const wf = workflow();
    applyEvent(
      wf,
      create(WorkflowEventSchema, {
        kind: { case: "jobProgressed", value: { id: "g2", jobId: "segment", jobProgress: { tilesDone: 3n, tilesTotal: 12n }, workflowProgress: { tilesDone: 3n, tilesTotal: 12n } } },
      }),
    );
    expect(fraction(wf.jobs[1].progress)).toBe(0.25);
    expect(progressText(wf.jobs[1].progress)).toBe("3 / 12 tiles");
    applyEvent(wf, create(WorkflowEventSchema, { kind: { case: "jobStateChanged", value: { id: "g2", jobId: "segment", state: JobState.SUCCEEDED, attempts: 1 } } }));
    expect(wf.jobs[1].state).toBe(JobState.SUCCEEDED);
    expect(wf.jobs[1].progress?.tilesDone).toBe(12n);
    expect(wf.jobs[0].state).toBe(JobState.PENDING);
  });
});

describe("Deep Zoom levels", () => {
  it("match openslide.deepzoom's level count minus one", () => {
    expect(maxLevel(2048, 1536)).toBe(11);
    expect(maxLevel(2400, 1800)).toBe(12);
    expect(maxLevel(1, 1)).toBe(0);
    expect(maxLevel(100_000, 80_000)).toBe(17);
  });
});
