import { describe, expect, it } from "vitest";
import { HttpTransport } from "../src/lib/transport/http";
import { HelperError, LinkError, call } from "../src/lib/transport/transport";
import { FakeTransport } from "./fake";

function fetchReturning(status: number, body: string, seen: RequestInit[] = []): typeof fetch {
  return (async (_url: RequestInfo | URL, init?: RequestInit) => {
    if (init) seen.push(init);
    return new Response(body, { status });
  }) as typeof fetch;
}

describe("HttpTransport", () => {
  it("posts the request as JSON and unwraps an ok reply", async () => {
    const seen: RequestInit[] = [];
    const t = new HttpTransport("", fetchReturning(200, JSON.stringify({ ok: { kind: "subscribed" } }), seen));
    expect(await t.request({ method: "list_apps" })).toEqual({ kind: "subscribed" });
    expect(seen[0].method).toBe("POST");
    expect(JSON.parse(String(seen[0].body))).toEqual({ method: "list_apps" });
  });

  it("turns the helper's error into a HelperError with its message", async () => {
    const err = { err: { code: "invalid_input", message: "unknown token `bogus` at column 3" } };
    const t = new HttpTransport("", fetchReturning(200, JSON.stringify(err)));
    const e = await t.request({ method: "list_apps" }).catch((x) => x);
    expect(e).toBeInstanceOf(HelperError);
    expect(e.code).toBe("invalid_input");
    expect(e.message).toContain("`bogus`");
  });

  it("reports a helper that is down, and a browser that is signed out", async () => {
    const down = new HttpTransport("", fetchReturning(502, JSON.stringify({ kind: "not_running", message: "portcullisd is not running" })));
    const e = await down.request({ method: "status" }).catch((x) => x);
    expect(e).toBeInstanceOf(LinkError);
    expect(e.kind).toBe("not_running");
    const out = new HttpTransport("", fetchReturning(401, "not signed in"));
    const e2 = await out.request({ method: "status" }).catch((x) => x);
    expect(e2.kind).toBe("signed_out");
  });

  it("reads helper state and events from the event stream", () => {
    const listeners: Record<string, (m: MessageEvent) => void> = {};
    const source = {
      addEventListener: (name: string, f: (m: MessageEvent) => void) => (listeners[name] = f),
      close: () => {},
      readyState: 1,
      onerror: null as null | (() => void),
    };
    const t = new HttpTransport("", fetchReturning(200, "{}"), () => source as unknown as EventSource);
    const links: unknown[] = [];
    const events: unknown[] = [];
    t.subscribe({ event: (e) => events.push(e), link: (s) => links.push(s) });
    listeners.helper(new MessageEvent("helper", { data: JSON.stringify({ state: "connected", version: "1.2" }) }));
    listeners.helper(new MessageEvent("helper", { data: JSON.stringify({ state: "down", error: { kind: "not_running", message: "m" } }) }));
    listeners.event(new MessageEvent("event", { data: JSON.stringify({ event: "lagged", missed: 3 }) }));
    expect(links).toEqual([
      { state: "connected", version: "1.2" },
      { state: "down", kind: "not_running", message: "m" },
    ]);
    expect(events).toEqual([{ event: "lagged", missed: 3 }]);
  });
});

describe("call", () => {
  it("checks the kind of the answer", async () => {
    const t = new FakeTransport();
    const status = await call(t, { method: "status" }, "status");
    expect(status.version).toBe("0.1.0");
    await expect(call(t, { method: "status" }, "apps")).rejects.toBeInstanceOf(LinkError);
  });
});
