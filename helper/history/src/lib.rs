//! Network history: every connection and DNS query the helper decided, kept in SQLite and
//! searchable, with bandwidth per app over time.
//!
//! - [`Writer`] takes [`Record`]s from the verdict path through a bounded channel (never
//!   blocking: a full channel counts the record as lost) and commits them in batches on its
//!   own thread, applying retention and the per-app "don't record" setting.
//! - [`Store`] is the database: opened with a corrupt file moved aside, written in batches,
//!   queried through [`Filter`]s (pages newest first, substring search, top lists,
//!   bandwidth per app per minute or hour).
//! - [`export`](export::export) writes a filtered query as JSON lines or CSV;
//!   [`import`](export::import) reads it back.
//!
//! What it must not do: block or slow a verdict, or touch any file but its own database.
//! Domains, addresses and paths are logged at DEBUG at most.

mod coarse;
mod error;
pub mod export;
mod migrations;
mod query;
mod record;
mod store;
mod writer;

pub use error::{ExportError, HistoryError};
pub use migrations::CURRENT as SCHEMA_VERSION;
pub use query::{BandwidthPoint, Bucket, Cursor, Filter, Page, TopBy, TopEntry, TopOrder};
pub use record::{Direction, Kind, Protocol, Record, Row, Scope, Traffic, UnknownWord, Verdict};
pub use store::{
    ClassRetention, Clear, Opened, ReadLimits, Removed, Retention, Store, Verify, now_ms,
};
pub use writer::{DontRecord, Reader, RecordSender, Stats, Writer, WriterConfig};
