// The one door between the UI and the helper. Every view talks through a `Transport`, so the
// same UI runs in the Tauri window (commands + events) and in browser mode (HTTP + SSE to
// `portcullis --serve`). Transports carry protocol values unchanged; they never decide.

import type { ErrorCode, Event, Request, Response } from "../protocol";

/** The state of the link between the UI and the helper. */
export type LinkState =
  | { state: "connecting" }
  | { state: "connected"; version: string }
  /** The helper cannot be reached; `kind` says why, `message` what to do. */
  | { state: "down"; kind: string; message: string }
  /** Browser mode only: this browser is not (or no longer) signed in. */
  | { state: "signed_out"; message: string };

/** An app's `.desktop` entry, as the lookup table gives it. */
export interface AppEntry {
  name: string;
  /** Whether `appIcon` has an icon for the key. */
  icon: boolean;
}

export interface Transport {
  /** Sends one request; resolves with the helper's response, rejects with
   * `HelperError` (the helper refused it; nothing changed) or `LinkError` (not delivered). */
  request(request: Request): Promise<Response>;
  /** Starts receiving events and link changes; returns a function that stops. */
  subscribe(handlers: { event(event: Event): void; link(state: LinkState): void }): () => void;
  /** Apps' names and icons from their `.desktop` entries, by app key (not the helper's:
   * the app scans them in the user's session). Optional: without it, file names show. */
  appEntries?(): Promise<Record<string, AppEntry>>;
  /** A URL (same origin or `data:`) of the icon of an app whose entry has one. */
  appIcon?(key: string): Promise<string | null>;
}

/** The helper answered with an error: its code and its one-line message for people (which
 * names the offending token for bad rule text). */
export class HelperError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "HelperError";
  }
}

/** The request did not reach the helper (helper down, not allowed, signed out, …). */
export class LinkError extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
    this.name = "LinkError";
  }
}

type Kind = Response["kind"];
export type ResponseOf<K extends Kind> = Extract<Response, { kind: K }>;
export type DataOf<K extends Kind> = ResponseOf<K> extends { data: infer D } ? D : undefined;

/** Sends `request` and checks that the answer is of kind `kind`, returning its data. */
export async function call<K extends Kind>(
  transport: Transport,
  request: Request,
  kind: K,
): Promise<DataOf<K>> {
  const response = await transport.request(request);
  if (response.kind !== kind) {
    throw new LinkError("protocol", `expected a ${kind} answer, got ${response.kind}`);
  }
  return ("data" in response ? response.data : undefined) as DataOf<K>;
}
