// The workflow's DAG as SVG: one horizontal lane per branch, jobs in columns by
// dependency depth, edges as curves (dependencies may cross lanes). Nodes link to
// the job's results and are updated in place as events arrive.
import { s } from "./dom";
import { JobState, type Job, type Workflow } from "./gen/slidelane/v1/types_pb";
import { fraction, jobStateLabel, progressText } from "./state";

const NODE_W = 184;
const NODE_H = 66;
const COL_W = 236;
const ROW_H = 84;
const LANE_LABEL_W = 120;
const PAD = 14;

export interface DagLayout {
  lanes: string[];
  positions: Map<string, { x: number; y: number; lane: number; depth: number }>;
  width: number;
  height: number;
  laneTops: number[];
  laneHeights: number[];
}

export function layout(jobs: Pick<Job, "jobId" | "branch" | "dependsOn">[]): DagLayout {
  const byId = new Map(jobs.map((j) => [j.jobId, j]));
  const depth = new Map<string, number>();
  const visiting = new Set<string>();
  const depthOf = (id: string): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // a cycle cannot be stored; be safe anyway
    visiting.add(id);
    const job = byId.get(id);
    const d = job ? Math.max(-1, ...job.dependsOn.filter((p) => byId.has(p)).map(depthOf)) + 1 : 0;
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  const lanes: string[] = [];
  for (const job of jobs) {
    const lane = job.branch || "main";
    if (!lanes.includes(lane)) lanes.push(lane);
  }
  const stacks = new Map<string, number>(); // "lane/depth" -> jobs placed
  const slot = new Map<string, { lane: number; depth: number; stack: number }>();
  for (const job of jobs) {
    const lane = lanes.indexOf(job.branch || "main");
    const d = depthOf(job.jobId);
    const key = `${lane}/${d}`;
    const stack = stacks.get(key) ?? 0;
    stacks.set(key, stack + 1);
    slot.set(job.jobId, { lane, depth: d, stack });
  }
  const laneRows = lanes.map((_, lane) =>
    Math.max(1, ...[...stacks].filter(([k]) => k.startsWith(`${lane}/`)).map(([, n]) => n)),
  );
  const laneTops: number[] = [];
  const laneHeights = laneRows.map((rows) => rows * ROW_H + PAD);
  let top = PAD;
  for (const height of laneHeights) {
    laneTops.push(top);
    top += height + 6;
  }
  const maxDepth = Math.max(0, ...[...slot.values()].map((v) => v.depth));
  const positions = new Map<string, { x: number; y: number; lane: number; depth: number }>();
  for (const [id, v] of slot) {
    positions.set(id, {
      x: LANE_LABEL_W + PAD + v.depth * COL_W,
      y: laneTops[v.lane] + PAD / 2 + v.stack * ROW_H + (ROW_H - NODE_H) / 2,
      lane: v.lane,
      depth: v.depth,
    });
  }
  return { lanes, positions, width: LANE_LABEL_W + PAD * 2 + (maxDepth + 1) * COL_W, height: top + PAD, laneTops, laneHeights };
}

export interface DagView {
  element: SVGSVGElement;
  update: (workflow: Workflow) => void;
}

export function drawDag(workflow: Workflow): DagView {
  const plan = layout(workflow.jobs);
  const svg = s("svg", {
    class: "dag",
    viewBox: `0 0 ${plan.width} ${plan.height}`,
    width: plan.width,
    height: plan.height,
    role: "group",
    "aria-label": `Job graph: ${workflow.jobs.length} jobs in ${plan.lanes.length} branch lanes`,
  });
  svg.append(
    s(
      "defs",
      null,
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "dag-arrow" }),
      ),
    ),
  );
  plan.lanes.forEach((lane, i) => {
    svg.append(
      s("rect", { class: `dag-lane ${i % 2 ? "odd" : ""}`, x: 0, y: plan.laneTops[i], width: plan.width, height: plan.laneHeights[i], rx: 6 }),
      s("text", { class: "dag-lane-label", x: 12, y: plan.laneTops[i] + 22 }, `branch`),
      s("text", { class: "dag-lane-name", x: 12, y: plan.laneTops[i] + 42 }, lane),
    );
  });
  for (const job of workflow.jobs) {
    const to = plan.positions.get(job.jobId)!;
    for (const dep of job.dependsOn) {
      const from = plan.positions.get(dep);
      if (!from) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x - 2;
      const y2 = to.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      svg.append(s("path", { class: "dag-edge", d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  const nodes = new Map<string, { group: SVGElement; link: SVGAElement; bar: SVGRectElement; state: SVGTextElement; title: SVGTitleElement }>();
  for (const job of workflow.jobs) {
    const p = plan.positions.get(job.jobId)!;
    const bar = s("rect", { class: "dag-bar", x: p.x + 10, y: p.y + NODE_H - 14, width: 0, height: 6, rx: 3 });
    const state = s("text", { class: "dag-state", x: p.x + NODE_W - 10, y: p.y + 20, "text-anchor": "end" });
    const title = s("title");
    const group = s(
      "g",
      { class: "dag-node", "data-job-id": job.jobId },
      s("rect", { class: "dag-box", x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 8 }),
      s("text", { class: "dag-id", x: p.x + 10, y: p.y + 20 }, truncate(job.jobId, 16)),
      s("text", { class: "dag-type", x: p.x + 10, y: p.y + 38 }, job.jobType),
      state,
      s("rect", { class: "dag-track", x: p.x + 10, y: p.y + NODE_H - 14, width: NODE_W - 20, height: 6, rx: 3 }),
      bar,
    );
    const link = s("a", { href: `#/jobs/${job.id}` }, title, group);
    svg.append(link);
    nodes.set(job.id, { group, link, bar, state, title });
  }
  const update = (wf: Workflow) => {
    for (const job of wf.jobs) {
      const node = nodes.get(job.id);
      if (!node) continue;
      const label = jobStateLabel(job.state);
      const done = job.state === JobState.SUCCEEDED;
      node.group.setAttribute("class", `dag-node state-${label.toLowerCase().replace(/\s+/g, "-")}`);
      node.state.textContent = label;
      node.bar.setAttribute("width", String((NODE_W - 20) * (done ? 1 : fraction(job.progress))));
      const text = `${job.jobId} (${job.jobType}, branch ${job.branch || "main"}): ${label}, ${progressText(job.progress, done)}`;
      node.title.textContent = text;
      node.link.setAttribute("aria-label", `${text}. Open results.`);
    }
  };
  update(workflow);
  return { element: svg, update };
}

function truncate(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
