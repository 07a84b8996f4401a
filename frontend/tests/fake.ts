// A transport for tests: answers requests from a handler, records them, and lets the test
// push events and link changes.

import type { BandwidthPoint, ConnectionInfo, Event, HistoryFilter, HistoryRow, HistoryTopEntry, PromptInfo, Request, Response } from "../src/lib/protocol";
import { HelperError, type LinkState, type Transport } from "../src/lib/transport/transport";

export class FakeTransport implements Transport {
  requests: Request[] = [];
  handlers: { event(e: Event): void; link(s: LinkState): void } | null = null;

  constructor(public answer: (r: Request) => Response | HelperError | Promise<Response | HelperError> = defaultAnswer) {}

  async request(r: Request): Promise<Response> {
    this.requests.push(r);
    const a = await this.answer(r);
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
    case "history_query":
      return { kind: "history", data: { rows: [], next: null } };
    case "history_top":
      return { kind: "history_top", data: [] };
    case "history_bandwidth":
      return { kind: "bandwidth", data: [] };
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
    country: null,
    asn: null,
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

export function histRow(id: number, over: Partial<HistoryRow> = {}): HistoryRow {
  return {
    id,
    kind: "connection",
    unix_ms: 1_700_000_000_000 + id * 1000,
    app: "/usr/bin/curl",
    pid: 42,
    exe: "/usr/bin/curl",
    direction: "outbound",
    protocol: "tcp",
    local: "10.77.0.1",
    local_port: 40000 + (id % 1000),
    remote: "10.77.0.2",
    remote_port: 443,
    domain: null,
    country: null,
    asn: null,
    scope: "lan",
    verdict: "allow",
    explanation: "allowed by default_action=allow (built-in default)",
    bytes_out: 100,
    bytes_in: 200,
    packets_out: 1,
    packets_in: 1,
    end_ms: null,
    ...over,
  };
}

function matches(f: HistoryFilter, r: HistoryRow): boolean {
  const q = f.search?.toLowerCase();
  return (
    (f.app === null || r.app === f.app) &&
    (f.domain === null || r.domain === f.domain) &&
    (f.ip === null || r.remote === f.ip) &&
    (f.verdict === null || r.verdict === f.verdict) &&
    (f.direction === null || r.direction === f.direction) &&
    (f.kind === null || r.kind === f.kind) &&
    (f.since_ms === null || r.unix_ms >= f.since_ms) &&
    (f.until_ms === null || r.unix_ms < f.until_ms) &&
    (!q || r.app.toLowerCase().includes(q) || (r.domain ?? "").toLowerCase().includes(q))
  );
}

/** The helper's history requests answered from `rows` (in any order) as the helper does:
 * newest first by (time, id), keyset pages, top lists, clear. Other requests go to `rest`. */
export class FakeHistory {
  rows: HistoryRow[];
  constructor(rows: HistoryRow[]) {
    this.rows = [...rows].sort((a, b) => b.unix_ms - a.unix_ms || b.id - a.id);
  }

  answer(r: Request, rest: (r: Request) => Response | HelperError = defaultAnswer): Response | HelperError {
    switch (r.method) {
      case "history_query": {
        const { filter, after, limit } = r.params;
        if (limit < 1 || limit > 1000) return new HelperError("invalid_input", `limit ${limit} is out of range`);
        const out: HistoryRow[] = [];
        let more = false;
        for (const row of this.rows) {
          if (after && (row.unix_ms > after.unix_ms || (row.unix_ms === after.unix_ms && row.id >= after.id))) continue;
          if (!matches(filter, row)) continue;
          if (out.length === limit) {
            more = true;
            break;
          }
          out.push(row);
        }
        const last = out.at(-1);
        return { kind: "history", data: { rows: out, next: more && last ? { unix_ms: last.unix_ms, id: last.id } : null } };
      }
      case "history_top": {
        const { by, filter, by_bytes, limit } = r.params;
        const m = new Map<string, HistoryTopEntry>();
        for (const row of this.rows) {
          if (!matches(filter, row)) continue;
          const key = by === "app" ? row.app : by === "domain" ? row.domain : row.country;
          if (key === null) continue;
          const e = m.get(key) ?? { key, rows: 0, blocked: 0, bytes_out: 0, bytes_in: 0 };
          e.rows++;
          if (row.verdict !== "allow") e.blocked++;
          e.bytes_out += row.bytes_out;
          e.bytes_in += row.bytes_in;
          m.set(key, e);
        }
        const score = (e: HistoryTopEntry) => (by_bytes ? e.bytes_in + e.bytes_out : e.rows);
        return { kind: "history_top", data: [...m.values()].sort((a, b) => score(b) - score(a)).slice(0, limit) };
      }
      case "history_bandwidth": {
        const { app, since_ms, until_ms, bucket } = r.params;
        const step = bucket === "minute" ? 60_000 : 3_600_000;
        const m = new Map<string, BandwidthPoint>();
        for (const row of this.rows) {
          const t = row.end_ms ?? row.unix_ms;
          if ((app !== null && row.app !== app) || t < since_ms || t >= until_ms) continue;
          const start = Math.floor(t / step) * step;
          const k = `${row.app} ${start}`;
          const p = m.get(k) ?? { app: row.app, start_ms: start, bytes_out: 0, bytes_in: 0, packets_out: 0, packets_in: 0, connections: 0 };
          p.bytes_out += row.bytes_out;
          p.bytes_in += row.bytes_in;
          p.connections += row.kind === "connection" ? 1 : 0;
          m.set(k, p);
        }
        return { kind: "bandwidth", data: [...m.values()].sort((a, b) => a.start_ms - b.start_ms) };
      }
      case "history_clear": {
        const before = this.rows.length;
        this.rows = r.params.app === null ? [] : this.rows.filter((row) => row.app !== r.params.app);
        return { kind: "history_cleared", data: { rows: before - this.rows.length } };
      }
      default:
        return rest(r);
    }
  }
}
