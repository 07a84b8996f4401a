// The browser arm of the desktop app's benchmark (`pcl-appbench`, tests/bench/src/appbench.rs):
// opens browser mode's login URL in Debian's Chromium (headless) with the page's measurement
// hooks on (frontend/src/lib/perf.ts), and prints each mark the page reports as one line
// `portcullis-perf WHAT MS DATA` (MS since the page's navigation started). The Monitor scrolls
// once the page holds PCL_ROWS connections and the benchmark wrote `GO` on stdin.
//
//   node e2e/appbench.mjs URL   (env: PCL_ROWS, PCL_SCROLL_MS)

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const url = process.argv[2];
const config = {
  route: "#/monitor",
  scrollRows: Number(process.env.PCL_ROWS ?? 10000),
  scrollMs: Number(process.env.PCL_SCROLL_MS ?? 5000),
  gate: true,
};
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
});
let finished;
const done = new Promise((r) => (finished = r));
try {
  const page = await browser.newPage({ viewport: { width: 1180, height: 760 } });
  await page.addInitScript((c) => {
    window.__PCL_PERF__ = c;
  }, config);
  page.on("console", async (msg) => {
    const text = msg.text();
    if (!text.startsWith("portcullis-perf ")) return;
    const [, what, ...rest] = text.split(" ");
    const ms = await page.evaluate(() => Math.round(performance.now())).catch(() => 0);
    console.log(`portcullis-perf ${what} ${ms} ${rest.join(" ")}`);
    if (what === "scroll" || what === "scroll-error") finished();
  });
  await page.goto(url);
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() === "GO") void page.evaluate(() => (window.__PCL_GO__ = true));
  });
  await done;
} finally {
  await browser.close();
}
process.exit(0);
