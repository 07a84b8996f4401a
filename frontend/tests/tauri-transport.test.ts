import { describe, expect, it } from "vitest";
import { TauriTransport, type TauriCore } from "../src/lib/transport/tauri";
import { HelperError, LinkError, type LinkState } from "../src/lib/transport/transport";

class FakeChannel {
  onmessage: (m: unknown) => void = () => {};
}

function fakeCore(answer: (cmd: string, args?: Record<string, unknown>) => Promise<unknown>) {
  const calls: { cmd: string; args?: Record<string, unknown> }[] = [];
  const core: TauriCore = {
    invoke: (cmd, args) => {
      calls.push({ cmd, args });
      return answer(cmd, args);
    },
    Channel: FakeChannel,
  };
  return { core, calls };
}

describe("TauriTransport", () => {
  it("sends a request and returns the response", async () => {
    const { core, calls } = fakeCore(async () => ({ ok: { kind: "done" } }));
    const t = new TauriTransport(core);
    await expect(t.request({ method: "list_apps" })).resolves.toEqual({ kind: "done" });
    expect(calls[0]).toEqual({ cmd: "request", args: { request: { method: "list_apps" } } });
  });

  it("turns the helper's errors into HelperError and the bridge's into LinkError", async () => {
    const refused = new TauriTransport(fakeCore(async () => ({ err: { code: "invalid_rule", message: "bad token `x`" } })).core);
    await expect(refused.request({ method: "list_apps" })).rejects.toBeInstanceOf(HelperError);
    const down = new TauriTransport(
      fakeCore(async () => {
        throw { kind: "not_running", message: "start the service" };
      }).core,
    );
    const e = await down.request({ method: "list_apps" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(LinkError);
    expect((e as LinkError).kind).toBe("not_running");
    expect((e as LinkError).message).toBe("start the service");
  });

  it("passes link states and events from the channel until stopped", () => {
    const { core, calls } = fakeCore(async () => null);
    const links: LinkState[] = [];
    const events: unknown[] = [];
    const stop = new TauriTransport(core).subscribe({ event: (e) => events.push(e), link: (s) => links.push(s) });
    const channel = calls[0]?.args?.channel as FakeChannel;
    expect(calls[0]?.cmd).toBe("subscribe");
    channel.onmessage({ kind: "helper", state: { state: "down", error: { kind: "permission_denied", message: "join the group" } } });
    channel.onmessage({ kind: "helper", state: { state: "connected", version: "0.1.0" } });
    channel.onmessage({ kind: "event", event: { event: "prompt_closed", id: 3 } });
    stop();
    channel.onmessage({ kind: "event", event: { event: "prompt_closed", id: 4 } });
    expect(links).toEqual([
      { state: "down", kind: "permission_denied", message: "join the group" },
      { state: "connected", version: "0.1.0" },
    ]);
    expect(events).toEqual([{ event: "prompt_closed", id: 3 }]);
  });
});
