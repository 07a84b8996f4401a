import { describe, expect, it } from "vitest";
import { frameFigures, perfConfig } from "../src/lib/perf";

describe("perf hooks", () => {
  it("are off unless the page was started for a benchmark", () => {
    expect(perfConfig()).toBeNull();
  });

  it("turn frame timestamps into fps, median and worst frame", () => {
    const f = frameFigures([0, 16, 32, 48, 100, 116]);
    expect(f.frames).toBe(5);
    expect(f.ms).toBe(116);
    expect(f.fps).toBeCloseTo((5 * 1000) / 116);
    expect(f.medianFrameMs).toBe(16);
    expect(f.worstFrameMs).toBe(52);
    expect(f.slowFrames).toBe(1);
    expect(f.slowAt).toEqual([[100, 52]]);
    expect(frameFigures([]).fps).toBe(0);
  });
});
