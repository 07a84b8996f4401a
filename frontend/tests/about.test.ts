import { afterEach, describe, expect, it } from "vitest";
import { flushSync, mount, unmount } from "svelte";
import About from "../src/views/About.svelte";
import { Store } from "../src/lib/store.svelte";
import type { Request } from "../src/lib/protocol";
import { FakeTransport, defaultAnswer, settle } from "./fake";

let mounted: Record<string, unknown>[] = [];
afterEach(() => {
  for (const m of mounted) unmount(m);
  mounted = [];
  document.body.innerHTML = "";
});

describe("About", () => {
  it("shows live rates, the data in force, a check on demand and the credits", async () => {
    const t = new FakeTransport((r: Request) => {
      switch (r.method) {
        case "live_rates":
          return { kind: "rates", data: [{ app: "/usr/bin/wget", bytes_out_per_sec: 1200, bytes_in_per_sec: 3_400_000 }] };
        case "update_status":
        case "update_check":
          return {
            kind: "updates",
            data: { enabled: true, url: "https://updates.example/", interval_hours: 24, installed_version: r.method === "update_check" ? 7 : 0, last_check_ms: null, last: null },
          };
        case "lists_status":
          return {
            kind: "lists",
            data: {
              enabled: ["ads", "trackers"],
              lists: [
                { id: "easylist", name: "EasyList", category: "ads", shipped: true, source: "/x/easylist.txt", domains: 41230, networks: 0, skipped: 900, bad_lines: 2, error: null },
                { id: "drop", name: "Spamhaus DROP", category: "malware", shipped: false, source: "/etc/drop.txt", domains: 0, networks: 1200, skipped: 4, bad_lines: 0, error: null },
                { id: "urlhaus", name: "URLhaus", category: "malware", shipped: true, source: "/x/urlhaus.txt", domains: 0, networks: 0, skipped: 0, bad_lines: 0, error: "/x/urlhaus.txt: No such file" },
              ],
            },
          };
        default:
          return defaultAnswer(r);
      }
    });
    const store = new Store(t);
    store.start();
    await settle();
    const target = document.createElement("div");
    document.body.appendChild(target);
    mounted.push(mount(About, { target, props: { store } }));
    await settle();
    flushSync();
    expect(target.textContent).toContain("wget");
    expect(target.textContent).toContain("3.4 MB/s");
    expect(target.textContent).toContain("data shipped with this version");
    expect(target.textContent).toContain("IP Geolocation by DB-IP");
    // The lists: counts, local files marked, and what is not in force and why.
    const rows = [...target.querySelectorAll("table.lists tbody tr")].map((tr) => tr.textContent ?? "");
    expect(rows).toHaveLength(3);
    expect(rows[0]).toContain("EasyList");
    expect(rows[0]).toContain((41230).toLocaleString());
    expect(rows[0]).toContain("in force");
    expect(rows[0]).toContain("(2 bad)");
    expect(rows[1]).toContain("(local)");
    expect(rows[1]).toContain("category off");
    expect(rows[2]).toContain("not in force");
    expect(target.querySelector("table.lists .bad")?.getAttribute("title")).toContain("No such file");
    const check = [...target.querySelectorAll("button")].find((b) => b.textContent === "Check now")!;
    check.click();
    await settle();
    flushSync();
    expect(t.requests.some((r) => r.method === "update_check")).toBe(true);
    expect(target.textContent).toContain("Data version 7");
    store.stop();
  });
});
