import { afterEach, describe, expect, it } from "vitest";
import { flushSync, mount, unmount } from "svelte";
import PromptDialog from "../src/components/PromptDialog.svelte";
import RulesEditor from "../src/components/RulesEditor.svelte";
import Monitor from "../src/views/Monitor.svelte";
import Apps from "../src/views/Apps.svelte";
import App from "../src/App.svelte";
import { Store } from "../src/lib/store.svelte";
import { Router } from "../src/lib/router.svelte";
import { HelperError } from "../src/lib/transport/transport";
import type { Request } from "../src/lib/protocol";
import { conn, defaultAnswer, FakeTransport, prompt, settle } from "./fake";

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

async function started(answer = defaultAnswer as (r: Request) => any) {
  const t = new FakeTransport(answer);
  const store = new Store(t);
  store.start();
  await settle();
  return { t, store };
}

describe("App", () => {
  it("asks in its own dialog in browser mode, and leaves it to the prompt window on the desktop", async () => {
    const { store } = await started();
    store.prompts.push(prompt(5));
    const browser = show(App, { store, router: new Router() });
    expect(browser.querySelector('[role="dialog"]')?.textContent).toContain("curl");
    const desktop = show(App, { store, router: new Router(), promptWindow: true });
    expect(desktop.querySelector('[role="dialog"]')).toBeNull();
    expect(desktop.textContent).toContain("1 waiting");
    store.stop();
  });
});

describe("PromptDialog", () => {
  it("shows the app and destination, and answers with the keyboard", async () => {
    const { t, store } = await started((r) =>
      r.method === "answer_prompt" ? { kind: "answered", data: { id: 5, rule: null } } : defaultAnswer(r),
    );
    store.prompts.push(prompt(5), prompt(6, { app: "/bin/wget", app_name: "wget" }));
    const el = show(PromptDialog, { store });
    const dialog = el.querySelector('[role="dialog"]')!;
    expect(dialog.textContent).toContain("curl");
    expect(dialog.textContent).toContain("10.77.0.2");
    expect(dialog.textContent).toContain("2 connections are waiting");
    expect(el.querySelectorAll('[role="tab"]')).toHaveLength(2);
    // Domain targets are unavailable without a domain.
    const domain = [...el.querySelectorAll('[role="radio"]')].find((b) => b.textContent === "This domain") as HTMLButtonElement;
    expect(domain.disabled).toBe(true);

    window.dispatchEvent(new KeyboardEvent("keydown", { key: "f" }));
    flushSync();
    window.dispatchEvent(new KeyboardEvent("keydown", { key: "a" }));
    await settle();
    flushSync();
    expect(t.requests.at(-1)).toEqual({
      method: "answer_prompt",
      params: { id: 5, answer: { allow: true, target: "ip_port", duration: { kind: "always" } } },
    });
    expect(el.querySelector('[role="dialog"]')!.textContent).toContain("wget");
    store.stop();
  });
});

describe("RulesEditor", () => {
  it("shows the helper's refusal naming the bad token, and adds valid rules", async () => {
    const { t, store } = await started((r) => {
      if (r.method === "add_rule" && r.params.text.includes("bogus"))
        return new HelperError("invalid_input", "invalid rule `- bogus!`: unknown entity `bogus!` at column 3");
      if (r.method === "add_rule")
        return { kind: "rule", data: { id: 1, owner: r.params.owner, position: 1, text: r.params.text, lifetime: { kind: "forever" }, created_unix_ms: 1 } };
      return defaultAnswer(r);
    });
    let changed = 0;
    const el = show(RulesEditor, { store, owner: { kind: "global" }, rules: [], onchanged: () => changed++ });
    const input = el.querySelector("input")!;
    input.value = "- bogus!";
    input.dispatchEvent(new Event("input", { bubbles: true }));
    flushSync();
    el.querySelector("form")!.dispatchEvent(new Event("submit", { cancelable: true }));
    await settle();
    flushSync();
    const alert = el.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("`bogus!`");
    expect(input.getAttribute("aria-invalid")).toBe("true");
    expect(changed).toBe(0);

    input.value = "- 10.0.0.0/8";
    input.dispatchEvent(new Event("input", { bubbles: true }));
    flushSync();
    expect(el.textContent).toContain("Blocks connections to addresses in 10.0.0.0/8");
    el.querySelector("form")!.dispatchEvent(new Event("submit", { cancelable: true }));
    await settle();
    expect(changed).toBe(1);
    expect(t.requests.at(-1)).toMatchObject({ method: "add_rule", params: { text: "- 10.0.0.0/8", position: null } });
    store.stop();
  });

  it("moves rules with their buttons", async () => {
    const { t, store } = await started((r) => (r.method === "move_rule" ? { kind: "rules", data: [] } : defaultAnswer(r)));
    const rule = (id: number, position: number, text: string) => ({ id, owner: { kind: "global" as const }, position, text, lifetime: { kind: "forever" as const }, created_unix_ms: 1 });
    const el = show(RulesEditor, { store, owner: { kind: "global" }, rules: [rule(1, 1, "- 10.0.0.1"), rule(2, 2, "+ *")], onchanged: () => {} });
    const up = el.querySelector('[aria-label="Move + * up"]') as HTMLButtonElement;
    expect((el.querySelector('[aria-label="Move - 10.0.0.1 up"]') as HTMLButtonElement).disabled).toBe(true);
    up.click();
    await settle();
    expect(t.requests.at(-1)).toEqual({ method: "move_rule", params: { id: 2, position: 1 } });
    store.stop();
  });
});

describe("Monitor", () => {
  it("renders a window of 10,000 connections and filters them", async () => {
    const { t, store } = await started((r) =>
      r.method === "add_rule"
        ? { kind: "rule", data: { id: 9, owner: r.params.owner, position: 1, text: r.params.text, lifetime: { kind: "forever" }, created_unix_ms: 1 } }
        : defaultAnswer(r),
    );
    store.connections = Array.from({ length: 10_000 }, (_, i) => conn(i + 1, i % 10 === 0 ? { app: "/bin/wget" } : {}));
    const el = show(Monitor, { store });
    const rows = el.querySelectorAll('[role="row"]');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(60);
    expect(el.querySelector('[role="grid"]')!.getAttribute("aria-rowcount")).toBe("10000");
    expect(el.textContent).toContain("10,000 of 10,000 connections");

    const search = el.querySelector('input[type="search"]') as HTMLInputElement;
    search.value = "wget";
    search.dispatchEvent(new Event("input", { bubbles: true }));
    flushSync();
    expect(el.textContent).toContain("1,000 of 10,000 connections");

    // Keyboard: first row, then B blocks that destination for its app.
    const grid = el.querySelector('[role="grid"]') as HTMLElement;
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    flushSync();
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "b", bubbles: true }));
    await settle();
    expect(t.requests.at(-1)).toEqual({
      method: "add_rule",
      params: { owner: { kind: "app", app: "/bin/wget" }, text: "- 10.77.0.2 tcp/443", position: 1, lifetime: { kind: "forever" } },
    });
    store.stop();
  });
});

describe("Apps", () => {
  it("lists apps with counts and searches them", async () => {
    const { store } = await started();
    store.apps.push({ key: "/usr/bin/wget", kind: "executable", name: "wget", created_unix_ms: 1, last_seen_unix_ms: 2, overrides: 0, rules: 3 });
    const el = show(Apps, { store, router: new Router() });
    expect(el.querySelectorAll('[role="row"]')).toHaveLength(3);
    const search = el.querySelector('input[type="search"]') as HTMLInputElement;
    search.value = "wge";
    search.dispatchEvent(new Event("input", { bubbles: true }));
    flushSync();
    const rows = el.querySelectorAll('[role="row"]');
    expect(rows).toHaveLength(2);
    expect(rows[1].textContent).toContain("/usr/bin/wget");
    store.stop();
  });
});
