// Apps' names and icons from their `.desktop` entries, as the app (desktop window or
// `portcullis --serve`) scanned them in the user's session: one lookup table fetched once
// (and again when an app appears that it does not know, at most every 30 s), icons fetched
// only when a row that shows one is drawn. Labels only: keys stay what the helper calls apps,
// and an app without an entry keeps its file name and a lettered avatar.

import { appName } from "./format";
import type { AppEntry, Transport } from "./transport/transport";

/** How often an unknown app may trigger a new fetch of the table. */
const REFRESH_MS = 30_000;

export class Entries {
  table = $state.raw<Record<string, AppEntry>>({});
  /** Icon URLs by app key once known (`null`: none could be had). */
  #icons = $state<Record<string, string | null>>({});
  #asked = new Set<string>();
  #loadedAt = -Infinity;
  #loading: Promise<void> | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly clock: () => number = () => Date.now(),
  ) {}

  /** Fetches the table (quietly keeps the old one when that fails). */
  load(): Promise<void> {
    if (!this.transport.appEntries) return Promise.resolve();
    if (this.#loading) return this.#loading;
    this.#loadedAt = this.clock();
    this.#loading = this.transport
      .appEntries()
      .then((t) => {
        this.table = t;
      })
      .catch(() => {
        /* names fall back to file names */
      })
      .finally(() => {
        this.#loading = null;
      });
    return this.#loading;
  }

  /** An app appeared: fetch the table again if it has no entry for it (rate-limited). */
  seen(key: string): void {
    if (key in this.table || this.clock() - this.#loadedAt < REFRESH_MS) return;
    void this.load();
  }

  /** The name to show: the entry's, else `fallback` (the helper's), else the file name. */
  name(key: string, fallback?: string): string {
    return this.table[key]?.name ?? fallback ?? appName(key);
  }

  /** The icon's URL when the entry has one and it has been fetched; starts fetching it. */
  icon(key: string): string | null {
    if (!this.table[key]?.icon || !this.transport.appIcon) return null;
    const have = this.#icons[key];
    if (have !== undefined) return have;
    if (!this.#asked.has(key)) {
      this.#asked.add(key);
      this.transport
        .appIcon(key)
        .then((url) => (this.#icons[key] = url))
        .catch(() => (this.#icons[key] = null));
    }
    return null;
  }
}
