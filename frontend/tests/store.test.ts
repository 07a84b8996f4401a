import { afterEach, describe, expect, it, vi } from "vitest";
import { MAX_CONNECTIONS, Store } from "../src/lib/store.svelte";
import { conn, defaultAnswer, FakeTransport, prompt, settle } from "./fake";

describe("Store", () => {
  it("loads everything once the helper is connected", async () => {
    const t = new FakeTransport();
    const s = new Store(t);
    s.start();
    await settle();
    expect(s.status?.version).toBe("0.1.0");
    expect(s.apps.map((a) => a.key)).toEqual(["/usr/bin/curl"]);
    expect(s.connections).toHaveLength(1);
    expect(s.global?.entries).toHaveLength(6);
    s.stop();
  });

  it("applies connection events in batches and keeps at most 10,000", async () => {
    const t = new FakeTransport();
    const s = new Store(t);
    s.start();
    await settle();
    for (let i = 2; i <= MAX_CONNECTIONS + 50; i++) t.emit({ event: "connection", connection: conn(i) });
    expect(s.connections).toHaveLength(1); // not yet: batched
    s.flush();
    expect(s.connections).toHaveLength(MAX_CONNECTIONS);
    expect(s.connections[s.connections.length - 1].id).toBe(MAX_CONNECTIONS + 50);
    s.stop();
  });

  it("tracks prompts, apps, and reloads after lost events", async () => {
    const t = new FakeTransport();
    const s = new Store(t);
    s.start();
    await settle();
    t.emit({ event: "prompt_added", prompt: prompt(7) });
    t.emit({ event: "prompt_added", prompt: prompt(7) });
    expect(s.prompts.map((p) => p.id)).toEqual([7]);
    t.emit({ event: "prompt_closed", id: 7, outcome: { kind: "timed_out", allow: false } });
    expect(s.prompts).toHaveLength(0);
    t.emit({
      event: "app_added",
      app: { key: "/bin/new", kind: "executable", name: "new", created_unix_ms: 1, last_seen_unix_ms: 1, overrides: 0, rules: 0 },
    });
    expect(s.apps).toHaveLength(2);
    const before = t.requests.length;
    t.emit({ event: "lagged", missed: 4 });
    await settle();
    expect(t.requests.slice(before).map((r) => r.method)).toContain("list_connections");
    s.stop();
  });

  it("answers a prompt through the transport and forgets it", async () => {
    const t = new FakeTransport((r) =>
      r.method === "answer_prompt" ? { kind: "answered", data: { id: r.params.id, rule: null } } : defaultAnswer(r),
    );
    const s = new Store(t);
    s.start();
    await settle();
    t.emit({ event: "prompt_added", prompt: prompt(3) });
    await s.answerPrompt(3, { allow: true, target: "ip_port", duration: { kind: "once" } });
    expect(s.prompts).toHaveLength(0);
    expect(t.requests.at(-1)).toEqual({
      method: "answer_prompt",
      params: { id: 3, answer: { allow: true, target: "ip_port", duration: { kind: "once" } } },
    });
    s.stop();
  });
});

describe("Store clock", () => {
  afterEach(() => {
    vi.useRealTimers();
    Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
  });

  it("stops while the page is hidden and catches up when it shows", async () => {
    vi.useFakeTimers();
    let hidden = false;
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    const s = new Store(new FakeTransport());
    s.start();
    await vi.advanceTimersByTimeAsync(50);
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    hidden = true;
    document.dispatchEvent(new Event("visibilitychange"));
    const frozen = s.now;
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.now).toBe(frozen); // no tick while hidden
    expect(vi.getTimerCount()).toBe(0); // and no timer left to wake the page
    hidden = false;
    document.dispatchEvent(new Event("visibilitychange"));
    expect(s.now).toBeGreaterThanOrEqual(frozen + 5000);
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.now).toBeGreaterThanOrEqual(frozen + 6000);
    s.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
});
