// Browser mode's transport: `POST /api/request` for requests and Server-Sent Events from
// `GET /api/events` for events, both on the page's own origin; the session cookie that
// `portcullis --serve` set when the one-time link was opened goes with them.

import type { Event, Reply, Request, Response } from "../protocol";
import { HelperError, LinkError, type AppEntry, type LinkState, type Transport } from "./transport";

const SIGNED_OUT =
  "This browser is not signed in. Open the link that `portcullis --serve` printed " +
  "(each link works once; restart it for a new one).";

export class HttpTransport implements Transport {
  constructor(
    private readonly base = "",
    private readonly fetchFn: typeof fetch = (...args) => fetch(...args),
    private readonly makeSource: (url: string) => EventSource = (url) => new EventSource(url),
  ) {}

  async request(request: Request): Promise<Response> {
    let answer: globalThis.Response;
    try {
      answer = await this.fetchFn(`${this.base}/api/request`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
        credentials: "same-origin",
      });
    } catch (e) {
      throw new LinkError("unreachable", `portcullis --serve cannot be reached: ${String(e)}`);
    }
    if (answer.status === 401) throw new LinkError("signed_out", SIGNED_OUT);
    const text = await answer.text();
    if (answer.status === 200) {
      const reply = JSON.parse(text) as Reply;
      if ("ok" in reply) return reply.ok;
      throw new HelperError(reply.err.code, reply.err.message);
    }
    let parsed: { kind?: string; message?: string } = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { message: text.trim() };
    }
    throw new LinkError(parsed.kind ?? `http_${answer.status}`, parsed.message ?? `HTTP ${answer.status}`);
  }

  async appEntries(): Promise<Record<string, AppEntry>> {
    const answer = await this.fetchFn(`${this.base}/api/app-entries`, { credentials: "same-origin" });
    if (answer.status !== 200) throw new LinkError(`http_${answer.status}`, `app entries: HTTP ${answer.status}`);
    return (await answer.json()) as Record<string, AppEntry>;
  }

  /** The route serves only icons the scan found; the image loads when it is drawn. */
  appIcon(key: string): Promise<string | null> {
    return Promise.resolve(`${this.base}/api/app-icon?key=${encodeURIComponent(key)}`);
  }

  subscribe(handlers: { event(event: Event): void; link(state: LinkState): void }): () => void {
    const source = this.makeSource(`${this.base}/api/events`);
    source.addEventListener("helper", (m) => {
      const s = JSON.parse((m as MessageEvent<string>).data);
      if (s.state === "connected") handlers.link({ state: "connected", version: s.version });
      else handlers.link({ state: "down", kind: s.error.kind, message: s.error.message });
    });
    source.addEventListener("event", (m) => {
      handlers.event(JSON.parse((m as MessageEvent<string>).data) as Event);
    });
    source.onerror = () => {
      // EventSource retries by itself unless the server refused (then it is CLOSED).
      if (source.readyState === 2) {
        handlers.link({ state: "signed_out", message: SIGNED_OUT });
      } else {
        handlers.link({
          state: "down",
          kind: "unreachable",
          message: "Lost the connection to `portcullis --serve`; retrying…",
        });
      }
    };
    return () => source.close();
  }
}
