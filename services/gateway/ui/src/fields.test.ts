import { describe, expect, it } from "vitest";
import { normaliseField } from "./fields";

describe("normaliseField", () => {
  it("maps server field paths to form fields", () => {
    expect(normaliseField("jobs[2].depends_on")).toBe("jobs[2].depends_on");
    expect(normaliseField("jobs[2].depends_on[0]")).toBe("jobs[2].depends_on");
    expect(normaliseField("jobs[0].image_path")).toBe("jobs[0].image_path");
    expect(normaliseField("jobs[1].params.mpp")).toBe("jobs[1].params");
    expect(normaliseField("name")).toBe("name");
    expect(normaliseField("jobs[3]")).toBe("jobs");
  });
});
