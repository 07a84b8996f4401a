// Presentation helpers: how times, destinations, verdicts, settings and rules read to people.
// Pure functions, no state; the helper stays the only place that decides anything.

import type {
  Action,
  ConnectionInfo,
  DecidedBy,
  HistoryRow,
  ListCategory,
  PromptInfo,
  RuleLifetime,
  Scope,
  SettingKey,
  SettingSource,
  SettingValue,
  Verdict,
} from "./protocol";

export function relativeTime(unixMs: number, now: number): string {
  if (unixMs <= 0) return "never";
  const s = Math.round((now - unixMs) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  return `${d} d ago`;
}

export function clockTime(unixMs: number): string {
  const d = new Date(unixMs);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** `10.0.0.1:443`, `[fd00::1]:443`, or the bare address when there is no port. */
export function endpoint(ip: string, port: number | null): string {
  if (port === null) return ip;
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The remote end as people know it: the domain when known, else the address. */
export function destination(c: Pick<ConnectionInfo, "remote" | "remote_port" | "domain" | "direction" | "local_port">): string {
  const port = c.direction === "inbound" ? c.local_port : c.remote_port;
  const host = c.domain ?? c.remote;
  return endpoint(host, port);
}

export const verdictLabel: Record<Verdict, string> = {
  allow: "Allowed",
  block: "Blocked",
  drop: "Dropped",
  ask: "Asked",
};

export const actionLabel: Record<Action, string> = { allow: "Allow", block: "Block", ask: "Ask" };

export const scopeLabel: Record<Scope, string> = {
  localhost: "This computer",
  lan: "Local network",
  internet: "Internet",
  p2p: "Peer-to-peer",
  inbound: "Incoming",
};

export const scopeKeyword: Record<Scope, string> = {
  localhost: "Localhost",
  lan: "LAN",
  internet: "Internet",
  p2p: "P2P",
  inbound: "Inbound",
};

export const ALL_SCOPES: Scope[] = ["localhost", "lan", "internet", "p2p", "inbound"];

export const ALL_CATEGORIES: ListCategory[] = ["ads", "trackers", "malware", "phishing"];

export const categoryLabel: Record<ListCategory, string> = {
  ads: "Ads",
  trackers: "Trackers",
  malware: "Malware",
  phishing: "Phishing & scams",
};

export const settingLabel: Record<SettingKey, string> = {
  default_action: "Default action",
  block_inbound: "Block incoming connections",
  block_scopes: "Blocked scopes",
  prompt_timeout_secs: "Prompt timeout",
  prompt_fallback: "When nobody answers",
  fail_open: "While the helper is not running",
  block_doh: "Apps' own secure DNS",
  record_history: "Keep in network history",
  filter_lists: "Filter lists",
};

export const sourceLabel: Record<SettingSource, string> = {
  app: "set for this app",
  global: "from global settings",
  default: "built-in default",
};

export function valueText(v: SettingValue): string {
  switch (v.type) {
    case "action":
      return actionLabel[v.value];
    case "bool":
      return v.value ? "On" : "Off";
    case "scopes":
      return v.value.length === 0 ? "None" : v.value.map((s) => scopeLabel[s]).join(", ");
    case "seconds":
      return `${v.value} s`;
    case "categories":
      return v.value.length === 0 ? "None" : v.value.map((c) => categoryLabel[c]).join(", ");
  }
}

/** Why, in a few words, for a table cell: the rule text or the setting that decided. */
export function decidedByShort(d: DecidedBy): string {
  if (d.kind === "rule") return `rule ${d.text}`;
  if (d.kind === "paused") return "protection paused";
  if (d.kind === "list") return `${d.name} (${categoryLabel[d.category].toLowerCase()})`;
  return `${settingLabel[d.key].toLowerCase()} (${sourceLabel[d.source]})`;
}

export function lifetimeText(l: RuleLifetime, now: number): string | null {
  switch (l.kind) {
    case "forever":
      return null;
    case "until": {
      const mins = Math.max(0, Math.ceil((l.unix_ms - now) / 60000));
      return mins <= 1 ? "ends in a minute" : `ends in ${mins} min`;
    }
    case "until_restart":
      return "until restart";
    case "until_exit":
      return `until process ${l.pid} quits`;
  }
}

/** The rule that allows or blocks exactly this destination for its app (address, protocol and
 * port), as the Monitor's row actions add it. */
export function ruleFor(c: Pick<ConnectionInfo, "remote" | "remote_port" | "local_port" | "protocol" | "direction">, allow: boolean): string {
  const sign = allow ? "+" : "-";
  const inbound = c.direction === "inbound" ? " Inbound" : "";
  const port = c.direction === "inbound" ? c.local_port : c.remote_port;
  const spec = c.protocol === "icmp" || port === null ? c.protocol : `${c.protocol}/${port}`;
  return `${sign}${inbound} ${c.remote} ${spec}`;
}

/** The rule "block (or allow) this for this app" adds from a history row: the domain when the
 * row has one (it outlives the addresses behind it), else the address as the Monitor does.
 * `null` for a DNS query without a name (its remote is the DNS server, not a destination). */
export function historyRuleFor(r: Pick<HistoryRow, "kind" | "domain" | "remote" | "remote_port" | "local_port" | "protocol" | "direction">, allow: boolean): string | null {
  if (r.domain && r.direction === "outbound") return `${allow ? "+" : "-"} ${r.domain}`;
  if (r.kind === "dns") return null;
  return ruleFor(r, allow);
}

/** Where a history row went, for people: a DNS query's name, else the destination. */
export function historyDestination(r: HistoryRow): string {
  if (r.kind === "dns") return r.domain ?? endpoint(r.remote, r.remote_port);
  return destination(r);
}

/** A history time: the clock for today, else the day and the minute (older than a year: the
 * year too). Local time, as the rest of the UI. */
export function historyTime(unixMs: number, now: number): string {
  const d = new Date(unixMs);
  const n = new Date(now);
  if (d.toDateString() === n.toDateString()) return clockTime(unixMs);
  const day = d.toLocaleDateString("en-GB", { day: "numeric", month: "short" });
  if (now - unixMs > 330 * 86_400_000) return `${day} ${d.getFullYear()}`;
  const two = (x: number) => String(x).padStart(2, "0");
  return `${day} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

/** `1.2 kB`, `34 MB` (powers of 1000, as file managers show). */
export function bytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** What a rule's text matches, in words; `null` when it does not look like a rule (the helper
 * has the final say and names the bad token). */
export function describeRule(text: string): string | null {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const sign = words.shift();
  if (sign !== "+" && sign !== "-") return null;
  const verb = sign === "+" ? "Allows" : "Blocks";
  let inbound = false;
  if (words[0]?.toLowerCase() === "inbound") {
    inbound = true;
    words.shift();
  }
  let entity = "any address";
  let ports = "";
  for (const w of words) {
    const port = /^(tcp|udp|icmp|\*)(?:\/(\d+(?:-\d+)?))?$/i.exec(w);
    if (port) {
      const proto = port[1] === "*" ? "any protocol" : port[1].toUpperCase();
      ports = port[2] ? ` on ${proto} port ${port[2]}` : ` over ${proto}`;
      continue;
    }
    entity = describeEntity(w);
  }
  const dir = inbound ? "connections from" : "connections to";
  return `${verb} ${dir} ${entity}${ports}`;
}

function describeEntity(w: string): string {
  if (w === "*") return "any address";
  const scope = ALL_SCOPES.find((s) => scopeKeyword[s].toLowerCase() === w.toLowerCase());
  if (scope) return `the ${scopeLabel[scope].toLowerCase()} scope`;
  if (/^AS\d+$/i.test(w)) return `network ${w.toUpperCase()}`;
  if (/^[A-Z]{2}$/.test(w)) return `country ${w}`;
  if (w.startsWith("*.")) return `subdomains of ${w.slice(2)}`;
  if (w.startsWith(".")) return `${w.slice(1)} and its subdomains`;
  if (w.includes("/")) return `addresses in ${w}`;
  return w;
}

/** Initials and a stable hue for an app's avatar. */
export function avatar(name: string): { letters: string; hue: number } {
  const clean = name.replace(/^system:/, "").replace(/[^A-Za-z0-9]/g, " ").trim();
  const letters = (clean.slice(0, 2) || "?").toUpperCase();
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return { letters, hue: h };
}

/** The app's name for people from its key (file name of the executable). */
export function appName(key: string): string {
  if (key === "system:kernel") return "System (kernel)";
  if (key === "system:dns") return "System DNS";
  const i = key.lastIndexOf("/");
  return i >= 0 ? key.slice(i + 1) : key;
}

export function promptDestination(p: PromptInfo): string {
  return destination({ ...p, direction: p.direction });
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}

export const settingHelp: Record<SettingKey, string> = {
  default_action: "What happens to a connection that no rule decides.",
  block_inbound: "Connections other machines open to this one (this computer itself is exempt).",
  block_scopes: "Whole kinds of destinations to refuse.",
  prompt_timeout_secs: "How long a question waits for your answer.",
  prompt_fallback: "The answer when a question times out.",
  fail_open: "If the helper stops or crashes: keep the network working, or cut it.",
  block_doh:
    "Refuse well-known DNS-over-HTTPS services, so apps ask Portcullis' resolver (where your DNS rules apply).",
  filter_lists:
    "Block names that known lists mark as ads, trackers, malware or scams. Your own allow rules always win.",
  record_history: "Keep this app's connections and DNS lookups in the history on this machine. Turn off for apps you want forgotten.",
};

/** Connections and blocks per app, from the recent connections. */
export function countsByApp(conns: ConnectionInfo[]): Map<string, { total: number; blocked: number }> {
  const m = new Map<string, { total: number; blocked: number }>();
  for (const c of conns) {
    let e = m.get(c.app);
    if (!e) {
      e = { total: 0, blocked: 0 };
      m.set(c.app, e);
    }
    e.total++;
    if (c.explanation.verdict === "block" || c.explanation.verdict === "drop") e.blocked++;
  }
  return m;
}
