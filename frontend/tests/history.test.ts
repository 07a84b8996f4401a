import { afterEach, describe, expect, it } from "vitest";
import { flushSync, mount, unmount } from "svelte";
import History from "../src/views/History.svelte";
import Overview from "../src/views/Overview.svelte";
import AppPanel from "../src/views/AppPanel.svelte";
import BandwidthChart from "../src/components/BandwidthChart.svelte";
import VirtualList from "../src/components/VirtualList.svelte";
import { Store } from "../src/lib/store.svelte";
import { Router } from "../src/lib/router.svelte";
import { HistoryPager, historyFilter, NO_FILTER } from "../src/lib/history.svelte";
import { bytes, historyRuleFor } from "../src/lib/format";
import type { Request, Response } from "../src/lib/protocol";
import { FakeHistory, FakeTransport, defaultAnswer, histRow, settle } from "./fake";
import { createRawSnippet } from "svelte";

let mounted: Record<string, unknown>[] = [];
afterEach(() => {
  for (const m of mounted) unmount(m);
  mounted = [];
  document.body.innerHTML = "";
});

function show(component: any, props: Record<string, unknown>) {
  const target = document.createElement("div");
  document.body.appendChild(target);
  const m = mount(component, { target, props });
  mounted.push(m);
  flushSync();
  return target;
}

/** A store on a fake helper whose history is `rows` (and which accepts rules). */
async function withHistory(rows = many(1000)) {
  const h = new FakeHistory(rows);
  const t = new FakeTransport((r) =>
    r.method === "add_rule"
      ? { kind: "rule", data: { id: 9, owner: r.params.owner, position: 1, text: r.params.text, lifetime: { kind: "forever" }, created_unix_ms: 1 } }
      : h.answer(r),
  );
  const store = new Store(t);
  store.start();
  await settle();
  return { h, t, store };
}

function many(n: number) {
  return Array.from({ length: n }, (_, i) =>
    histRow(i + 1, {
      unix_ms: Date.now() - (n - i) * 1000,
      app: i % 4 === 0 ? "/usr/bin/wget" : "/usr/bin/curl",
      domain: i % 2 === 0 ? `host${i}.example.com` : null,
    }),
  );
}

const queries = (t: FakeTransport) => t.requests.filter((r): r is Extract<Request, { method: "history_query" }> => r.method === "history_query");

function type(input: HTMLInputElement, value: string) {
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
  flushSync();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("history helpers", () => {
  it("turns the controls into the helper's filter", () => {
    const f = historyFilter({ search: "  exam ", verdict: "block", kind: "dns", direction: "all", range: "hour", app: "/usr/bin/curl" }, 10_000_000);
    expect(f).toEqual({ ...NO_FILTER, search: "exam", verdict: "block", kind: "dns", since_ms: 10_000_000 - 3600_000, app: "/usr/bin/curl" });
    expect(historyFilter({ search: " ", verdict: "all", kind: "all", direction: "inbound", range: "all", app: null }, 1)).toEqual({ ...NO_FILTER, direction: "inbound" });
  });

  it("blocks the domain when there is one, else the address", () => {
    expect(historyRuleFor(histRow(1, { domain: "example.com" }), false)).toBe("- example.com");
    expect(historyRuleFor(histRow(1), false)).toBe("- 10.77.0.2 tcp/443");
    expect(historyRuleFor(histRow(1, { kind: "dns", domain: "ads.example" }), true)).toBe("+ ads.example");
    expect(historyRuleFor(histRow(1, { kind: "dns", domain: null }), false)).toBeNull();
    expect(bytes(999)).toBe("999 B");
    expect(bytes(1234)).toBe("1.2 kB");
    expect(bytes(45_600_000)).toBe("46 MB");
  });

  it("pages through the cursor and stops at the last page", async () => {
    const h = new FakeHistory(many(450));
    const t = new FakeTransport((r) => h.answer(r));
    const p = new HistoryPager(t, 200);
    await p.reset(NO_FILTER);
    expect(p.rows).toHaveLength(200);
    expect(p.more).toBe(true);
    await p.loadMore();
    await p.loadMore();
    expect(p.rows).toHaveLength(450);
    expect(p.done).toBe(true);
    expect(new Set(p.rows.map((r) => r.id)).size).toBe(450);
    expect(p.rows[0].id).toBe(450); // newest first
    await p.loadMore();
    expect(queries(t)).toHaveLength(3);
    expect(queries(t)[1].params.after).toEqual({ unix_ms: p.rows[199].unix_ms, id: p.rows[199].id });
  });

  it("holds at most its limit of rows however long the history is", async () => {
    const h = new FakeHistory(many(5000));
    const t = new FakeTransport((r) => h.answer(r));
    const p = new HistoryPager(t, 100, 300);
    await p.reset(NO_FILTER);
    for (let i = 0; i < 10; i++) await p.loadMore();
    expect(p.rows).toHaveLength(300);
    expect(p.full).toBe(true);
    expect(p.more).toBe(false);
    expect(queries(t)).toHaveLength(3);
  });

  it("drops the answer to an older filter that arrives late", async () => {
    const h = new FakeHistory(many(100));
    const held: ((r: Response) => void)[] = [];
    const t = new FakeTransport((r) => {
      if (r.method === "history_query" && r.params.filter.search === "slow") {
        return new Promise<Response>((resolve) => held.push(resolve));
      }
      return h.answer(r);
    });
    const p = new HistoryPager(t, 50);
    const slow = p.reset({ ...NO_FILTER, search: "slow" });
    await p.reset({ ...NO_FILTER, app: "/usr/bin/wget" });
    expect(p.rows.every((r) => r.app === "/usr/bin/wget")).toBe(true);
    const shown = p.rows;
    held[0]({ kind: "history", data: { rows: [histRow(9999, { app: "/bin/stale" })], next: null } });
    await slow;
    expect(p.rows).toBe(shown);
    expect(p.loading).toBe(false);
    expect(p.done).toBe(true);
  });
});

describe("VirtualList", () => {
  it("asks for more when its window reaches the end of the items", () => {
    let calls = 0;
    const row = createRawSnippet((item: () => number) => ({ render: () => `<div role="row">${item()}</div>` }));
    show(VirtualList, { items: [1, 2, 3], row, label: "x", onnearend: () => calls++ });
    expect(calls).toBe(1);
    calls = 0;
    show(VirtualList, { items: Array.from({ length: 500 }, (_, i) => i), row, label: "y", onnearend: () => calls++ });
    expect(calls).toBe(0);
  });
});

describe("History view", () => {
  it("debounces the search and asks the helper once for what was typed", async () => {
    const { t, store } = await withHistory();
    const el = show(History, { store });
    await settle();
    const first = queries(t).length;
    expect(first).toBe(1);
    expect(queries(t)[0].params.limit).toBe(200);
    expect(queries(t)[0].params.filter.since_ms).toBeGreaterThan(Date.now() - 24 * 3600_000 - 5000);

    const search = el.querySelector('input[type="search"]') as HTMLInputElement;
    type(search, "w");
    type(search, "wg");
    type(search, "wget");
    await settle();
    expect(queries(t)).toHaveLength(first);
    await sleep(200);
    await settle();
    flushSync();
    expect(queries(t)).toHaveLength(first + 1);
    expect(queries(t).at(-1)!.params.filter.search).toBe("wget");
    const rows = el.querySelectorAll('[role="grid"] [role="row"]');
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect(r.textContent).toContain("wget");
    store.stop();
  });

  it("shows the newest page, loads the next on demand, and never everything", async () => {
    const { t, store } = await withHistory();
    const el = show(History, { store });
    await settle();
    flushSync();
    expect(el.querySelectorAll('[role="grid"] [role="row"]').length).toBeLessThan(60);
    expect(el.textContent).toContain("200 rows loaded");
    const shown = el.querySelectorAll('[role="grid"] [role="row"]');
    expect(shown[0].textContent).toContain("10.77.0.2:443"); // the newest (id 1000) has no domain
    expect(shown[1].textContent).toContain("host998.example.com");
    const more = [...el.querySelectorAll("button")].find((b) => b.textContent === "Load more") as HTMLButtonElement;
    more.click();
    await settle();
    flushSync();
    expect(el.textContent).toContain("400 rows loaded");
    expect(queries(t).at(-1)!.params.after).not.toBeNull();
    expect(queries(t)).toHaveLength(2);
    store.stop();
  });

  it("blocks a row's domain, else its address, for its app", async () => {
    const { t, store } = await withHistory([
      histRow(1, { unix_ms: Date.now() - 2000, app: "/usr/bin/wget", domain: "tracker.example" }),
      histRow(2, { unix_ms: Date.now() - 1000 }),
    ]);
    const el = show(History, { store });
    await settle();
    flushSync();
    (el.querySelector('[aria-label="Block tracker.example for wget"]') as HTMLButtonElement).click();
    await settle();
    expect(t.requests.at(-1)).toEqual({
      method: "add_rule",
      params: { owner: { kind: "app", app: "/usr/bin/wget" }, text: "- tracker.example", position: 1, lifetime: { kind: "forever" } },
    });
    // The keyboard: first row (the newest, without a domain), Enter for details, B blocks.
    const grid = el.querySelector('[role="grid"]') as HTMLElement;
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    flushSync();
    expect(el.querySelector("aside")!.textContent).toContain("Block this for this app");
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "b", bubbles: true }));
    await settle();
    expect(t.requests.at(-1)).toMatchObject({ method: "add_rule", params: { owner: { kind: "app", app: "/usr/bin/curl" }, text: "- 10.77.0.2 tcp/443", position: 1 } });
    store.stop();
  });

  it("clears one app's history only after confirming", async () => {
    const { h, t, store } = await withHistory();
    store.apps.push({ key: "/usr/bin/wget", kind: "executable", name: "wget", created_unix_ms: 1, last_seen_unix_ms: 1, overrides: 0, rules: 0 });
    const el = show(History, { store, app: "/usr/bin/wget" });
    await settle();
    flushSync();
    expect((el.querySelector("select") as HTMLSelectElement).value).toBe("/usr/bin/wget");
    expect(queries(t)).toHaveLength(1);
    expect(queries(t)[0].params.filter.app).toBe("/usr/bin/wget");
    const open = () => ([...el.querySelectorAll("button")].find((b) => b.textContent?.includes("Clear history")) as HTMLButtonElement).click();

    open();
    flushSync();
    let dialog = el.querySelector('[role="alertdialog"]')!;
    expect(dialog.textContent).toContain("Clear wget's history?");
    expect(document.activeElement?.textContent).toBe("Cancel");
    dialog.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    flushSync();
    expect(el.querySelector('[role="alertdialog"]')).toBeNull();
    expect(t.requests.some((r) => r.method === "history_clear")).toBe(false);

    open();
    flushSync();
    dialog = el.querySelector('[role="alertdialog"]')!;
    ([...dialog.querySelectorAll("button")].find((b) => b.textContent === "Clear wget's history") as HTMLButtonElement).click();
    await settle();
    flushSync();
    expect(t.requests.filter((r) => r.method === "history_clear")).toEqual([{ method: "history_clear", params: { app: "/usr/bin/wget" } }]);
    expect(h.rows.some((r) => r.app === "/usr/bin/wget")).toBe(false);
    expect(h.rows.length).toBe(750);
    expect(el.querySelector('[role="status"]')!.textContent).toContain("Forgot 250 rows of wget's history");
    expect(el.textContent).toContain("Nothing in the history matches");
    store.stop();
  });

  it("says why when the history cannot be read", async () => {
    const { HelperError } = await import("../src/lib/transport/transport");
    const t = new FakeTransport((r) => (r.method === "history_query" ? new HelperError("not_found", "history is off in this helper's configuration") : defaultAnswer(r)));
    const store = new Store(t);
    store.start();
    await settle();
    const el = show(History, { store });
    await settle();
    flushSync();
    expect(el.querySelector('[role="alert"]')!.textContent).toContain("history is off");
    store.stop();
  });
});

describe("Overview and App panel", () => {
  it("lists the top talkers of the last 24 hours with their blocks", async () => {
    const rows = [
      ...Array.from({ length: 5 }, (_, i) => histRow(i + 1, { unix_ms: Date.now() - 1000, app: "/usr/bin/wget", verdict: i < 2 ? "block" : "allow" })),
      histRow(10, { unix_ms: Date.now() - 1000 }),
      histRow(11, { unix_ms: Date.now() - 3 * 24 * 3600_000, app: "/usr/bin/old" }),
    ];
    const { t, store } = await withHistory(rows);
    const el = show(Overview, { store, router: new Router() });
    await settle();
    flushSync();
    const top = t.requests.find((r) => r.method === "history_top")!;
    expect(top).toMatchObject({ params: { by: "app", by_bytes: false } });
    const card = el.querySelector('[aria-labelledby="top-title"]')!;
    const items = card.querySelectorAll("li");
    expect(items).toHaveLength(2);
    expect(items[0].textContent).toContain("wget");
    expect(items[0].textContent).toContain("5 connections");
    expect(items[0].textContent).toContain("2 blocked");
    expect(items[0].querySelector("a")!.getAttribute("href")).toBe("#/history/%2Fusr%2Fbin%2Fwget");
    expect(card.textContent).not.toContain("old");
    store.stop();
  });

  it("shows the app's last 50 history rows and links to its History", async () => {
    const { t, store } = await withHistory();
    t.answer = ((inner) => (r: Request) =>
      r.method === "show_app"
        ? { kind: "app", data: { app: store.apps[0], settings: { app: "/usr/bin/wget", entries: [] }, rules: [] } }
        : inner(r))(t.answer);
    store.apps = [{ key: "/usr/bin/wget", kind: "executable", name: "wget", created_unix_ms: 1, last_seen_unix_ms: 1, overrides: 0, rules: 0 }];
    const el = show(AppPanel, { store, appKey: "/usr/bin/wget" });
    await sleep(10);
    await settle();
    flushSync();
    expect(queries(t).at(-1)!.params).toMatchObject({ filter: { app: "/usr/bin/wget" }, after: null, limit: 50 });
    const list = el.querySelector('ul[aria-label^="Last 50"]')!;
    expect(list.querySelectorAll("li")).toHaveLength(50);
    const link = [...el.querySelectorAll("a")].find((a) => a.textContent?.includes("Open in History"))!;
    expect(link.getAttribute("href")).toBe("#/history/%2Fusr%2Fbin%2Fwget");
    store.stop();
  });

  it("charts an app's bytes per minute and switches ranges", async () => {
    const now = Date.now();
    const rows = [
      histRow(1, { app: "/usr/bin/wget", unix_ms: now - 120_000, bytes_in: 1500, bytes_out: 200 }),
      histRow(2, { app: "/usr/bin/wget", unix_ms: now - 60_000, bytes_in: 500, bytes_out: 0 }),
      histRow(3, { app: "/usr/bin/curl", unix_ms: now - 60_000, bytes_in: 9999, bytes_out: 9999 }),
    ];
    const { t, store } = await withHistory(rows);
    const el = show(BandwidthChart, { store, app: "/usr/bin/wget" });
    await sleep(10);
    await settle();
    flushSync();
    expect(el.textContent).toContain(`Received ${bytes(2000)} · sent ${bytes(200)} in the last 1 hour`);
    expect(el.querySelectorAll("rect.in")).toHaveLength(2);
    const asked = t.requests.filter((r: Request) => r.method === "history_bandwidth");
    expect(asked.at(-1)!.params).toMatchObject({ app: "/usr/bin/wget", bucket: "minute" });
    const day = [...el.querySelectorAll("button")].find((b) => b.textContent === "24 hours")!;
    day.click();
    await sleep(10);
    await settle();
    flushSync();
    expect(t.requests.filter((r: Request) => r.method === "history_bandwidth").at(-1)!.params).toMatchObject({ bucket: "hour" });
    expect(el.textContent).toContain("in the last 24 hours");
    store.stop();
  });
});
