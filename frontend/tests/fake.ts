// A transport for tests: answers requests from a handler, records them, and lets the test
// push events and link changes.

import type { ConnectionInfo, Event, PromptInfo, Request, Response } from "../src/lib/protocol";
import { HelperError, type LinkState, type Transport } from "../src/lib/transport/transport";

export class FakeTransport implements Transport {
  requests: Request[] = [];
  handlers: { event(e: Event): void; link(s: LinkState): void } | null = null;

  constructor(public answer: (r: Request) => Response | HelperError = defaultAnswer) {}

  async request(r: Request): Promise<Response> {
    this.requests.push(r);
    const a = this.answer(r);
    if (a instanceof HelperError) throw a;
    return a;
  }

  subscribe(h: { event(e: Event): void; link(s: LinkState): void }): () => void {
    this.handlers = h;
    return () => (this.handlers = null);
  }

  emit(e: Event) {
    this.handlers?.event(e);
  }
}

export function defaultAnswer(r: Request): Response {
  switch (r.method) {
    case "status":
      return {
        kind: "status",
        data: {
          version: "0.1.0",
          protocol_version: 2,
          uptime_secs: 60,
          pid: 1,
          enforcement: { state: "enforcing" },
          apps: 1,
          rules: 0,
          clients: 1,
          attribution: "ebpf",
        },
      };
    case "list_apps":
      return {
        kind: "apps",
        data: [
          { key: "/usr/bin/curl", kind: "executable", name: "curl", created_unix_ms: 1, last_seen_unix_ms: 1, overrides: 0, rules: 0 },
        ],
      };
    case "list_connections":
      return { kind: "connections", data: [conn(1)] };
    case "list_prompts":
      return { kind: "prompts", data: [] };
    case "get_settings":
      return {
        kind: "settings",
        data: {
          app: r.params.app,
          entries: [
            { key: "default_action", value: { type: "action", value: "allow" }, source: "default" },
            { key: "block_inbound", value: { type: "bool", value: true }, source: "default" },
            { key: "block_scopes", value: { type: "scopes", value: [] }, source: "default" },
            { key: "prompt_timeout_secs", value: { type: "seconds", value: 30 }, source: "default" },
            { key: "prompt_fallback", value: { type: "action", value: "block" }, source: "default" },
            { key: "fail_open", value: { type: "bool", value: true }, source: "default" },
          ],
        },
      };
    case "list_rules":
      return { kind: "rules", data: [] };
    default:
      throw new Error(`unexpected request ${r.method}`);
  }
}

export function conn(id: number, over: Partial<ConnectionInfo> = {}): ConnectionInfo {
  return {
    id,
    unix_ms: Date.now(),
    app: "/usr/bin/curl",
    pid: 42,
    direction: "outbound",
    protocol: "tcp",
    local: "10.77.0.1",
    local_port: 40000 + (id % 1000),
    remote: "10.77.0.2",
    remote_port: 443,
    domain: null,
    scope: "lan",
    explanation: {
      verdict: "allow",
      decided_by: { kind: "setting", key: "default_action", value: { type: "action", value: "allow" }, source: "default" },
      summary: "allowed by default_action=allow (built-in default)",
    },
    decided_in_kernel: false,
    ...over,
  };
}

export function prompt(id: number, over: Partial<PromptInfo> = {}): PromptInfo {
  const now = Date.now();
  return {
    id,
    app: "/usr/bin/curl",
    app_name: "curl",
    pid: 42,
    direction: "outbound",
    protocol: "tcp",
    remote: "10.77.0.2",
    remote_port: 7,
    local_port: null,
    domain: null,
    scope: "lan",
    created_unix_ms: now,
    expires_unix_ms: now + 30_000,
    fallback: "block",
    waiting: 1,
    ...over,
  };
}

export async function settle() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
}
