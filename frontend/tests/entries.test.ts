import { afterEach, describe, expect, it } from "vitest";
import { flushSync, mount, unmount } from "svelte";
import Apps from "../src/views/Apps.svelte";
import Monitor from "../src/views/Monitor.svelte";
import PromptDialog from "../src/components/PromptDialog.svelte";
import { Entries } from "../src/lib/entries.svelte";
import { Store } from "../src/lib/store.svelte";
import { Router } from "../src/lib/router.svelte";
import { HttpTransport } from "../src/lib/transport/http";
import type { AppEntry } from "../src/lib/transport/transport";
import { conn, FakeTransport, prompt, settle } from "./fake";

/** A fake that also has `.desktop` entries: `/usr/bin/curl` is "cURL" with an icon. */
class EntryTransport extends FakeTransport {
  tables = 0;
  icons: string[] = [];
  table: Record<string, AppEntry> = { "/usr/bin/curl": { name: "cURL", icon: true } };
  async appEntries() {
    this.tables++;
    return this.table;
  }
  async appIcon(key: string) {
    this.icons.push(key);
    return `data:image/png;base64,${btoa(key)}`;
  }
}

let mounted: Record<string, unknown>[] = [];
afterEach(() => {
  for (const m of mounted) unmount(m);
  mounted = [];
  document.body.innerHTML = "";
});

function show(component: any, props: Record<string, unknown>) {
  const target = document.createElement("div");
  document.body.appendChild(target);
  mounted.push(mount(component, { target, props }));
  flushSync();
  return target;
}

describe("app names and icons from .desktop entries", () => {
  it("shows the entry's name and icon where there is one, the file name and initials elsewhere", async () => {
    const t = new EntryTransport();
    const store = new Store(t);
    store.start();
    await settle();
    store.apps.push({ key: "/usr/bin/wget", kind: "executable", name: "wget", created_unix_ms: 1, last_seen_unix_ms: 2, overrides: 0, rules: 0 });
    const el = show(Apps, { store, router: new Router() });
    await settle();
    flushSync();
    const rows = [...el.querySelectorAll('[role="row"]')].slice(1);
    const curl = rows.find((r) => r.textContent!.includes("/usr/bin/curl"))!;
    const wget = rows.find((r) => r.textContent!.includes("/usr/bin/wget"))!;
    expect(curl.querySelector("a.name")!.textContent).toBe("cURL");
    expect(curl.querySelector("img")!.getAttribute("src")).toBe(`data:image/png;base64,${btoa("/usr/bin/curl")}`);
    expect(curl.querySelector("img")!.getAttribute("loading")).toBe("lazy");
    expect(wget.querySelector("a.name")!.textContent).toBe("wget");
    expect(wget.querySelector("img")).toBeNull();
    expect(wget.querySelector(".avatar")!.textContent).toBe("WG");
    expect(t.icons).toEqual(["/usr/bin/curl"]);
    expect(t.tables).toBe(1);

    // Searching finds the entry's name.
    const search = el.querySelector('input[type="search"]') as HTMLInputElement;
    search.value = "curl";
    search.dispatchEvent(new Event("input", { bubbles: true }));
    flushSync();
    expect(el.querySelectorAll('[role="row"]')).toHaveLength(2);
    store.stop();
  });

  it("falls back to initials when the icon does not load", async () => {
    const t = new EntryTransport();
    const store = new Store(t);
    store.start();
    await settle();
    const el = show(Apps, { store, router: new Router() });
    await settle();
    flushSync();
    const img = el.querySelector("img")!;
    img.dispatchEvent(new Event("error"));
    flushSync();
    expect(el.querySelector("img")).toBeNull();
    expect(el.querySelector(".avatar")!.textContent).toBe("CU");
    store.stop();
  });

  it("names Monitor rows and prompts by their entries", async () => {
    const t = new EntryTransport();
    const store = new Store(t);
    store.start();
    await settle();
    store.connections = [conn(1)];
    const mon = show(Monitor, { store, router: new Router() });
    await settle();
    flushSync();
    const row = [...mon.querySelectorAll('[role="row"]')].find((r) => r.textContent!.includes("cURL"));
    expect(row).toBeTruthy();
    store.prompts.push(prompt(5));
    const dlg = show(PromptDialog, { store });
    expect(dlg.querySelector('[role="dialog"] .app')!.textContent).toContain("cURL");
    store.stop();
  });

  it("fetches the table again for an unknown app, at most every 30 s", async () => {
    const t = new EntryTransport();
    let now = 0;
    const entries = new Entries(t, () => now);
    await entries.load();
    expect(entries.name("/usr/bin/curl")).toBe("cURL");
    expect(entries.name("/opt/x/tool")).toBe("tool");
    expect(entries.name("/opt/x/tool", "helper's name")).toBe("helper's name");
    entries.seen("/usr/bin/curl");
    now = 5_000;
    entries.seen("/opt/x/tool");
    expect(t.tables).toBe(1);
    now = 31_000;
    t.table = { ...t.table, "/opt/x/tool": { name: "Tool", icon: false } };
    entries.seen("/opt/x/tool");
    await settle();
    expect(t.tables).toBe(2);
    expect(entries.name("/opt/x/tool")).toBe("Tool");
    expect(entries.icon("/opt/x/tool")).toBeNull();
  });

  it("without entries (a transport that has none) names stay file names", () => {
    const entries = new Entries(new FakeTransport());
    void entries.load();
    expect(entries.name("/usr/bin/curl")).toBe("curl");
    expect(entries.icon("/usr/bin/curl")).toBeNull();
  });

  it("browser mode asks its own server, and icons by key only", async () => {
    const urls: string[] = [];
    const fetchFn = (async (url: RequestInfo | URL) => {
      urls.push(String(url));
      return new Response(JSON.stringify({ "flatpak:org.example.App": { name: "App", icon: true } }), { status: 200 });
    }) as typeof fetch;
    const t = new HttpTransport("", fetchFn);
    expect(await t.appEntries()).toEqual({ "flatpak:org.example.App": { name: "App", icon: true } });
    expect(urls).toEqual(["/api/app-entries"]);
    expect(await t.appIcon("flatpak:org.example.App")).toBe("/api/app-icon?key=flatpak%3Aorg.example.App");
    expect(await t.appIcon("/usr/bin/a b&c")).toBe("/api/app-icon?key=%2Fusr%2Fbin%2Fa%20b%26c");
    const refused = new HttpTransport("", (async () => new Response("no", { status: 401 })) as typeof fetch);
    await expect(refused.appEntries()).rejects.toThrow();
  });
});
