// The desktop window's transport: Tauri commands handled by the app's Rust side, which
// bridges them to the helper over the same `ipc` client as browser mode. `request` sends one
// protocol request and resolves with its `Reply`, or rejects with why it was not delivered
// (`{ kind, message }`); `subscribe` hands the app a channel that receives
// `{ kind: "helper", state }` when the link changes and `{ kind: "event", event }` for each
// protocol event. The app reconnects by itself; this side only listens.

import type { Event, Reply, Request, Response } from "../protocol";
import { HelperError, LinkError, type AppEntry, type LinkState, type Transport } from "./transport";

/** The part of Tauri's global API (`app.withGlobalTauri`) this transport uses. */
export interface TauriCore {
  invoke(command: string, args?: Record<string, unknown>): Promise<unknown>;
  Channel: new () => { onmessage: (message: unknown) => void };
}

type StreamMessage =
  | { kind: "helper"; state: { state: "connected"; version: string } | { state: "down"; error: { kind: string; message: string } } }
  | { kind: "event"; event: Event };

/** Tauri's API when this page runs in the desktop window, else `null`. */
export function tauriCore(): TauriCore | null {
  const w = globalThis as { __TAURI__?: { core?: TauriCore } };
  return w.__TAURI__?.core ?? null;
}

export class TauriTransport implements Transport {
  constructor(private readonly core: TauriCore) {}

  async request(request: Request): Promise<Response> {
    let reply: Reply;
    try {
      reply = (await this.core.invoke("request", { request })) as Reply;
    } catch (e) {
      const err = e as { kind?: string; message?: string } | string;
      if (typeof err === "object" && err !== null && typeof err.message === "string") {
        throw new LinkError(err.kind ?? "unavailable", err.message);
      }
      throw new LinkError("unavailable", String(e));
    }
    if ("ok" in reply) return reply.ok;
    throw new HelperError(reply.err.code, reply.err.message);
  }

  async appEntries(): Promise<Record<string, AppEntry>> {
    return (await this.core.invoke("app_entries")) as Record<string, AppEntry>;
  }

  /** A `data:` URL (the window's CSP allows those for images), or `null`. */
  async appIcon(key: string): Promise<string | null> {
    return ((await this.core.invoke("app_icon", { key })) as string | null) ?? null;
  }

  subscribe(handlers: { event(event: Event): void; link(state: LinkState): void }): () => void {
    let live = true;
    const channel = new this.core.Channel();
    channel.onmessage = (raw) => {
      if (!live) return;
      const m = raw as StreamMessage;
      if (m.kind === "event") handlers.event(m.event);
      else if (m.state.state === "connected") handlers.link({ state: "connected", version: m.state.version });
      else handlers.link({ state: "down", kind: m.state.error.kind, message: m.state.error.message });
    };
    this.core.invoke("subscribe", { channel }).catch((e: unknown) => {
      if (live) handlers.link({ state: "down", kind: "unavailable", message: `The app could not subscribe: ${String(e)}` });
    });
    return () => {
      live = false;
    };
  }
}
