// Reading the helper's network history a page at a time: the History view's filters as a
// `HistoryFilter`, and a pager that follows the helper's keyset cursor (newest first). Only
// the pages asked for are held, so a history of millions of rows costs what its first page
// does; an answer to an older filter is dropped, so fast typing never shows stale rows.

import type { Direction, HistoryCursor, HistoryFilter, HistoryKind, HistoryRow, Verdict } from "./protocol";
import { call, type Transport } from "./transport/transport";

/** Rows asked for per page (the helper allows up to 1,000). */
export const HISTORY_PAGE = 200;
/** Most rows held at once: past this the view asks to narrow the filter instead of paging on
 * (the helper would answer, but a browser tab holding millions of rows would not). */
export const HISTORY_HELD_MAX = 50_000;

export type TimeRange = "hour" | "day" | "week" | "all";

const RANGE_MS: Record<Exclude<TimeRange, "all">, number> = {
  hour: 3600_000,
  day: 24 * 3600_000,
  week: 7 * 24 * 3600_000,
};

/** What the History view's controls select; "all" means no condition. */
export interface HistoryControls {
  search: string;
  verdict: Verdict | "all";
  kind: HistoryKind | "all";
  direction: Direction | "all";
  range: TimeRange;
  app: string | null;
}

export const NO_FILTER: HistoryFilter = {
  app: null,
  domain: null,
  ip: null,
  country: null,
  asn: null,
  verdict: null,
  direction: null,
  kind: null,
  since_ms: null,
  until_ms: null,
  search: null,
};

/** The helper's filter for the view's controls at time `now`. */
export function historyFilter(c: HistoryControls, now: number): HistoryFilter {
  const search = c.search.trim();
  return {
    ...NO_FILTER,
    app: c.app,
    verdict: c.verdict === "all" ? null : c.verdict,
    kind: c.kind === "all" ? null : c.kind,
    direction: c.direction === "all" ? null : c.direction,
    since_ms: c.range === "all" ? null : now - RANGE_MS[c.range],
    search: search === "" ? null : search,
  };
}

export class HistoryPager {
  /** The rows loaded so far, newest first. Replaced on every page (cheap for the list). */
  rows = $state.raw<HistoryRow[]>([]);
  /** A page is on its way. */
  loading = $state(false);
  /** The helper said there is nothing older. */
  done = $state(false);
  /** The last page could not be loaded (the helper's message). */
  error = $state<string | null>(null);

  #next = $state<HistoryCursor | null>(null);
  #filter: HistoryFilter = NO_FILTER;
  /** Bumped by every reset: an answer for an older generation is stale. */
  #generation = 0;

  constructor(
    readonly transport: Transport,
    readonly pageSize = HISTORY_PAGE,
    readonly heldMax = HISTORY_HELD_MAX,
  ) {}

  /** Held the most rows allowed while the helper has more. */
  get full(): boolean {
    return !this.done && this.rows.length >= this.heldMax;
  }

  /** Whether a next page exists and may be loaded. */
  get more(): boolean {
    return !this.done && !this.full && this.#next !== null;
  }

  /** Starts over with `filter`: forgets the rows and loads the newest page. */
  reset(filter: HistoryFilter): Promise<void> {
    const generation = ++this.#generation;
    this.#filter = filter;
    this.#next = null;
    this.rows = [];
    this.done = false;
    this.error = null;
    return this.#load(generation, null);
  }

  /** Loads the next page, unless one is on its way, there is none, or enough are held. */
  loadMore(): Promise<void> {
    if (this.loading || !this.more) return Promise.resolve();
    return this.#load(this.#generation, this.#next);
  }

  async #load(generation: number, after: HistoryCursor | null): Promise<void> {
    this.loading = true;
    try {
      const page = await call(
        this.transport,
        { method: "history_query", params: { filter: this.#filter, after, limit: this.pageSize } },
        "history",
      );
      if (generation !== this.#generation) return;
      this.rows = after === null ? page.rows : this.rows.concat(page.rows);
      this.#next = page.next;
      this.done = page.next === null;
      this.error = null;
    } catch (e) {
      if (generation !== this.#generation) return;
      this.error = e instanceof Error ? e.message : String(e);
    } finally {
      if (generation === this.#generation) this.loading = false;
    }
  }
}
