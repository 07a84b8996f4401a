// What the UI knows of the helper, kept current from events: status, apps, recent
// connections (at most 10,000), waiting prompts and global settings. Views read it and call
// its actions; every change goes to the helper through the transport and comes back as an
// event, so the helper stays the only source of truth.

import type {
  AppInfo,
  ConnectionInfo,
  Event,
  HistoryCursor,
  HistoryFilter,
  HistoryBucket,
  HistoryTopBy,
  PromptAnswer,
  PromptInfo,
  RuleLifetime,
  RuleOwner,
  SettingKey,
  SettingsView,
  SettingValue,
  Status,
} from "./protocol";
import { call, type LinkState, type Transport } from "./transport/transport";
import { Entries } from "./entries.svelte";

export const MAX_CONNECTIONS = 10_000;
/** Connection events are applied in batches: one re-render per batch, not per packet. */
const FLUSH_MS = 150;

export class Store {
  status = $state<Status | null>(null);
  link = $state<LinkState>({ state: "connecting" });
  apps = $state<AppInfo[]>([]);
  /** Oldest first, as the helper keeps them. Replaced, never mutated (for cheap updates). */
  connections = $state.raw<ConnectionInfo[]>([]);
  prompts = $state<PromptInfo[]>([]);
  global = $state<SettingsView | null>(null);
  /** Bumped whenever a rule list or setting changes, so open panels reload. */
  revision = $state(0);
  now = $state(Date.now());
  /** The last failure of a background load, for the banner. */
  loadError = $state<string | null>(null);

  #pending: ConnectionInfo[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  #stop: (() => void) | null = null;
  #clock: ReturnType<typeof setInterval> | null = null;
  #visibility: (() => void) | null = null;

  /** Apps' names and icons from their `.desktop` entries. */
  readonly entries: Entries;

  constructor(readonly transport: Transport) {
    this.entries = new Entries(transport);
  }

  /** Subscribes and loads everything; call once. */
  start(): void {
    this.#stop = this.transport.subscribe({
      event: (e) => this.handle(e),
      link: (s) => {
        const wasUp = this.link.state === "connected";
        this.link = s;
        if (s.state === "connected" && !wasUp) void this.reload();
      },
    });
    // The clock only ticks while the page can be seen: a hidden window (closed to the tray)
    // must not wake up every second for a time nobody reads.
    this.#visibility = () => this.#syncClock();
    document.addEventListener("visibilitychange", this.#visibility);
    this.#syncClock();
    void this.reload();
    void this.entries.load();
  }

  /** Starts the clock when the page shows (catching up at once), stops it when hidden. */
  #syncClock(): void {
    if (document.hidden) {
      if (this.#clock) clearInterval(this.#clock);
      this.#clock = null;
    } else if (this.#clock === null) {
      this.now = Date.now();
      this.#clock = setInterval(() => (this.now = Date.now()), 1000);
    }
  }

  stop(): void {
    this.#stop?.();
    if (this.#visibility) document.removeEventListener("visibilitychange", this.#visibility);
    if (this.#clock) clearInterval(this.#clock);
    this.#clock = null;
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
  }

  async reload(): Promise<void> {
    try {
      const [status, apps, connections, prompts, global] = await Promise.all([
        call(this.transport, { method: "status" }, "status"),
        call(this.transport, { method: "list_apps" }, "apps"),
        call(this.transport, { method: "list_connections" }, "connections"),
        call(this.transport, { method: "list_prompts" }, "prompts"),
        call(this.transport, { method: "get_settings", params: { app: null } }, "settings"),
      ]);
      this.status = status;
      this.apps = apps;
      this.#pending = [];
      this.connections = connections.slice(-MAX_CONNECTIONS);
      this.prompts = prompts;
      this.global = global;
      this.loadError = null;
      this.revision++;
    } catch (e) {
      this.loadError = e instanceof Error ? e.message : String(e);
    }
  }

  handle(e: Event): void {
    switch (e.event) {
      case "connection":
        this.#pending.push(e.connection);
        this.#scheduleFlush();
        break;
      case "app_added":
        if (!this.apps.some((a) => a.key === e.app.key)) this.apps.push(e.app);
        this.entries.seen(e.app.key);
        break;
      case "prompt_added":
        if (!this.prompts.some((p) => p.id === e.prompt.id)) this.prompts.push(e.prompt);
        break;
      case "prompt_closed":
        this.prompts = this.prompts.filter((p) => p.id !== e.id);
        break;
      case "setting_changed":
        if (e.app === null) void this.#reloadGlobal();
        else void this.#reloadApps();
        this.revision++;
        break;
      case "rules_changed":
        void this.#reloadApps();
        void this.#reloadStatus();
        this.revision++;
        break;
      case "lagged":
        void this.reload();
        break;
      case "unknown":
        break;
    }
  }

  /** Applies queued connection events now (tests call it; otherwise a timer does). */
  flush(): void {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    if (this.#pending.length === 0) return;
    const next = this.connections.concat(this.#pending);
    this.#pending = [];
    this.connections = next.length > MAX_CONNECTIONS ? next.slice(-MAX_CONNECTIONS) : next;
    const seen = new Map<string, number>();
    for (const c of this.connections) seen.set(c.app, Math.max(seen.get(c.app) ?? 0, c.unix_ms));
    for (const a of this.apps) {
      const t = seen.get(a.key);
      if (t !== undefined && t > a.last_seen_unix_ms) a.last_seen_unix_ms = t;
    }
  }

  #scheduleFlush(): void {
    if (this.#flushTimer === null) this.#flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  async #reloadApps(): Promise<void> {
    try {
      this.apps = await call(this.transport, { method: "list_apps" }, "apps");
    } catch {
      /* the next event or reload catches up */
    }
  }

  async #reloadStatus(): Promise<void> {
    try {
      this.status = await call(this.transport, { method: "status" }, "status");
    } catch {
      /* as above */
    }
  }

  async #reloadGlobal(): Promise<void> {
    try {
      this.global = await call(this.transport, { method: "get_settings", params: { app: null } }, "settings");
    } catch {
      /* as above */
    }
  }

  // Actions: each resolves when the helper accepted, or rejects with its error.

  async setSetting(app: string | null, key: SettingKey, value: SettingValue | null): Promise<SettingsView> {
    const view = await call(this.transport, { method: "set_setting", params: { app, key, value } }, "settings");
    if (app === null) this.global = view;
    return view;
  }

  showApp(app: string) {
    return call(this.transport, { method: "show_app", params: { app } }, "app");
  }

  listRules(owner: RuleOwner) {
    return call(this.transport, { method: "list_rules", params: { owner } }, "rules");
  }

  addRule(owner: RuleOwner, text: string, position: number | null = null, lifetime: RuleLifetime = { kind: "forever" }) {
    return call(this.transport, { method: "add_rule", params: { owner, text, position, lifetime } }, "rule");
  }

  removeRule(id: number) {
    return call(this.transport, { method: "remove_rule", params: { id } }, "rule");
  }

  moveRule(id: number, position: number) {
    return call(this.transport, { method: "move_rule", params: { id, position } }, "rules");
  }

  async answerPrompt(id: number, answer: PromptAnswer) {
    const answered = await call(this.transport, { method: "answer_prompt", params: { id, answer } }, "answered");
    this.prompts = this.prompts.filter((p) => p.id !== id);
    return answered;
  }

  historyQuery(filter: HistoryFilter, after: HistoryCursor | null, limit: number) {
    return call(this.transport, { method: "history_query", params: { filter, after, limit } }, "history");
  }

  historyTop(by: HistoryTopBy, filter: HistoryFilter, limit: number, byBytes = false) {
    return call(this.transport, { method: "history_top", params: { by, filter, by_bytes: byBytes, limit } }, "history_top");
  }

  /** Each app's traffic in the last second, busiest first. */
  liveRates() {
    return call(this.transport, { method: "live_rates" }, "rates");
  }

  /** The signed data updates' state, or (with `check`) a check now. */
  updates(check = false) {
    return call(this.transport, { method: check ? "update_check" : "update_status" }, "updates");
  }

  /** Every filter list, what it holds and whether it is in force. */
  lists() {
    return call(this.transport, { method: "lists_status" }, "lists");
  }

  /** Bytes per bucket for one app (or all), oldest first. */
  historyBandwidth(app: string | null, sinceMs: number, untilMs: number, bucket: HistoryBucket) {
    return call(
      this.transport,
      { method: "history_bandwidth", params: { app, since_ms: sinceMs, until_ms: untilMs, bucket } },
      "bandwidth",
    );
  }

  /** Forgets one app's history, or all of it (`null`); resolves with the rows removed. */
  async historyClear(app: string | null): Promise<number> {
    const done = await call(this.transport, { method: "history_clear", params: { app } }, "history_cleared");
    return done.rows;
  }

  appByKey(key: string): AppInfo | undefined {
    return this.apps.find((a) => a.key === key);
  }
}
