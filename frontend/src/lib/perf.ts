// Measurement hooks for the desktop app's benchmark (`pcl-appbench`, docs/performance.md).
// Inert unless the page was started with `window.__PCL_PERF__` set: the desktop app sets it
// only when `PORTCULLIS_PERF` is in its environment, and the benchmark's Playwright script
// sets it in Chromium. Then the page reports:
//   - `first-frame`: the first frame after the app mounted was produced (the second
//     requestAnimationFrame after `mount`: the first one runs before that frame paints);
//   - `rows` (once) when the store holds `scrollRows` connections, then `scroll`: frames
//     counted with requestAnimationFrame while the Monitor's list is scrolled by script.
// Reports go to the Rust side (command `perf_mark`, printed on stderr) in the desktop app
// and to the console in a browser. Nothing here runs in normal use.

import type { TauriCore } from "./transport/tauri";

export interface PerfConfig {
  /** A hash route to open first (e.g. "#/monitor"). */
  route?: string;
  /** Scroll the Monitor once the store holds this many connections. */
  scrollRows?: number;
  /** How long to scroll, ms. */
  scrollMs?: number;
  /** Pixels per frame. */
  scrollStep?: number;
  /** Also wait for `window.__PCL_GO__` before scrolling (the benchmark runs one arm at a time). */
  gate?: boolean;
}

export interface ScrollFigures {
  frames: number;
  ms: number;
  fps: number;
  medianFrameMs: number;
  worstFrameMs: number;
  /** Frames that took longer than 1/30 s. */
  slowFrames: number;
  /** When the first slow frames ended, ms after the scroll started, and how long each took. */
  slowAt: [number, number][];
  /** Rows in the DOM at the end (the list renders only what is in view). */
  domRows: number;
  /** Rows the list holds. */
  rows: number;
}

export function perfConfig(): PerfConfig | null {
  return (globalThis as { __PCL_PERF__?: PerfConfig }).__PCL_PERF__ ?? null;
}

export function report(core: TauriCore | null, what: string, data: unknown): void {
  if (core) void core.invoke("perf_mark", { what, data }).catch(() => undefined);
  else console.log(`portcullis-perf ${what} ${JSON.stringify(data)}`);
}

const frame = () => new Promise<number>((resolve) => requestAnimationFrame(resolve));

/** Frame statistics from rAF timestamps (pure, for tests). */
export function frameFigures(stamps: number[]): Omit<ScrollFigures, "domRows" | "rows"> {
  const deltas = stamps.slice(1).map((t, i) => t - stamps[i]);
  const ms = stamps.length > 1 ? stamps[stamps.length - 1] - stamps[0] : 0;
  const sorted = [...deltas].sort((a, b) => a - b);
  const median = sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)];
  return {
    frames: deltas.length,
    ms,
    fps: ms > 0 ? (deltas.length * 1000) / ms : 0,
    medianFrameMs: median,
    worstFrameMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1],
    slowFrames: deltas.filter((d) => d > 1000 / 30).length,
    slowAt: deltas
      .map((d, i): [number, number] => [Math.round(stamps[i + 1] - stamps[0]), Math.round(d)])
      .filter(([, d]) => d > 1000 / 30)
      .slice(0, 12),
  };
}

/** Scrolls `el` by `step` px every frame for `ms` (down, then back up at the end). */
export async function scrollFor(el: HTMLElement, ms: number, step: number): Promise<number[]> {
  const stamps: number[] = [];
  let dir = 1;
  const start = await frame();
  stamps.push(start);
  for (;;) {
    const max = el.scrollHeight - el.clientHeight;
    if (el.scrollTop + step * dir > max || el.scrollTop + step * dir < 0) dir = -dir;
    el.scrollTop += step * dir;
    const t = await frame();
    stamps.push(t);
    if (t - start >= ms) return stamps;
  }
}

/** Starts the hooks the configuration asks for; `rows` reads how many connections are held. */
export function startPerf(core: TauriCore | null, rows: () => number): void {
  const config = perfConfig();
  if (!config) return;
  const mounted = performance.now();
  void (async () => {
    await frame();
    await frame();
    // Where the page's time went: its HTML arrived, its script ran up to the mount.
    const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming | undefined;
    report(core, "first-frame", {
      ms: Math.round(performance.now()),
      mounted: Math.round(mounted),
      html: Math.round(nav?.responseEnd ?? 0),
    });
    if (config.route) window.location.hash = config.route;
    const want = config.scrollRows;
    if (!want) return;
    const go = () => !config.gate || (globalThis as { __PCL_GO__?: boolean }).__PCL_GO__ === true;
    while (rows() < want) await new Promise((r) => setTimeout(r, 200));
    report(core, "rows", { rows: rows() });
    // Let the last batch render and the page settle.
    await new Promise((r) => setTimeout(r, 1000));
    while (!go()) await new Promise((r) => setTimeout(r, 100));
    const el = document.querySelector<HTMLElement>('.viewport[role="grid"]');
    if (!el) {
      report(core, "scroll-error", { error: "no list on the page (is the Monitor open?)" });
      return;
    }
    const stamps = await scrollFor(el, config.scrollMs ?? 5000, config.scrollStep ?? 120);
    const figures: ScrollFigures = {
      ...frameFigures(stamps),
      domRows: el.querySelectorAll('[role="row"]').length,
      rows: rows(),
    };
    report(core, "scroll", figures);
  })();
}
