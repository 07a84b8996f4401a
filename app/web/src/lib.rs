//! Browser mode: `portcullis --serve` serves the frontend on 127.0.0.1 and bridges it to the
//! helper's socket, so the same UI that runs in the desktop window runs in any browser.
//!
//! This crate owns the HTTP side only: who may use the page ([`auth`]: a one-time token that
//! becomes an HttpOnly, SameSite=Strict session cookie; the Host header and the Origin must
//! name this very server), the built frontend held in memory ([`assets`]), and the bridge
//! ([`bridge`]) that carries `protocol` requests, responses and events as JSON through the
//! `ipc` client. It must not interpret requests (the helper decides and validates), must
//! never listen on anything but a loopback address, and must never log the token or a
//! session id.
//!
//! HTTP surface (every path refuses a wrong Host, a foreign Origin and cross-site fetches):
//!
//! | path | what |
//! |---|---|
//! | `GET /?token=T` | exchanges the one-time token for the session cookie, then loads the app |
//! | `GET /`, `GET /assets/…` | the frontend (session cookie required) |
//! | `POST /api/request` | body: a `Request`; answer: its `Reply` (`{"ok":…}` / `{"err":…}`), or status 502 with a [`BridgeError`] when the helper cannot be reached |
//! | `GET /api/events` | Server-Sent Events: `event: helper` with a [`HelperState`] whenever the link to the helper changes, `event: event` with each protocol `Event` |
//! | `GET /api/app-entries` | `{ KEY: { name, icon } }`: apps' names from their `.desktop` entries (`portcullis-desktop-entries`; scanned at most every few minutes) |
//! | `GET /api/app-icon?key=KEY` | the icon the scan found for that app key (PNG or SVG, ≤ 1 MB), else 404; never a file by path |

pub mod assets;
pub mod auth;
pub mod bridge;
mod error;
mod server;

pub use bridge::{BridgeError, HelperState};
pub use error::WebError;
pub use server::{ServeConfig, WebServer};
