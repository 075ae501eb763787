import { describe, expect, it } from "vitest";
import { layout } from "./dag";

const job = (jobId: string, branch: string, dependsOn: string[] = []) => ({ jobId, branch, dependsOn });

describe("DAG layout", () => {
  it("puts one lane per branch, in order of first use", () => {
    const plan = layout([job("a", "main"), job("b", "review", ["a"]), job("c", "main", ["a"])]);
    expect(plan.lanes).toEqual(["main", "review"]);
    expect(plan.positions.get("b")!.lane).toBe(1);
    expect(plan.positions.get("c")!.lane).toBe(0);
  });

  it("columns follow dependency depth, across lanes", () => {
    const plan = layout([job("a", "main"), job("b", "x", ["a"]), job("c", "main", ["b"]), job("d", "y")]);
    expect(plan.positions.get("a")!.depth).toBe(0);
    expect(plan.positions.get("b")!.depth).toBe(1);
    expect(plan.positions.get("c")!.depth).toBe(2);
    expect(plan.positions.get("d")!.depth).toBe(0);
    expect(plan.positions.get("c")!.x).toBeGreaterThan(plan.positions.get("b")!.x);
  });

  it("stacks jobs of one lane and depth without overlap, and survives unknown dependencies", () => {
    const plan = layout([job("a", "main"), job("b", "main"), job("c", "main", ["ghost"])]);
    const ys = ["a", "b", "c"].map((id) => plan.positions.get(id)!.y);
    expect(new Set(ys).size).toBe(3);
    expect(plan.height).toBeGreaterThan(Math.max(...ys));
  });

  it("an empty branch is the main lane", () => {
    expect(layout([job("a", "")]).lanes).toEqual(["main"]);
  });
});
