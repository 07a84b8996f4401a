//! Network history as the wire carries it: filters, pages of past connections and DNS
//! queries, top lists. The helper keeps history in its own database (`portcullis-history`);
//! these are the client-facing shapes, independent of how it is stored.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::connection::{Direction, Protocol};
use crate::explain::Verdict;
use crate::settings::Scope;

/// What a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// A connection (or a refused attempt at one).
    Connection,
    /// A DNS query an app sent.
    Dns,
}

/// Which rows a history query covers. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryFilter {
    /// Exactly this app key.
    #[serde(default)]
    pub app: Option<String>,
    /// Exactly this domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// This remote address.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// This country (ISO 3166-1 alpha-2).
    #[serde(default)]
    pub country: Option<String>,
    /// This autonomous system.
    #[serde(default)]
    pub asn: Option<u32>,
    /// This verdict (`allow`, `block` or `drop`).
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// This direction.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Connections or DNS queries only.
    #[serde(default)]
    pub kind: Option<HistoryKind>,
    /// Decided at or after this time (ms since the epoch).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Decided before this time (ms since the epoch).
    #[serde(default)]
    pub until_ms: Option<u64>,
    /// A substring (case-insensitive for ASCII) of the domain or of the app key.
    #[serde(default)]
    pub search: Option<String>,
}

/// Where the next page starts: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryCursor {
    /// That row's time.
    pub unix_ms: u64,
    /// That row's id.
    pub id: u64,
}

/// One connection or DNS query from history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryRow {
    /// The row id (unique in this database).
    pub id: u64,
    /// Connection or DNS query.
    pub kind: HistoryKind,
    /// When it was decided, in ms since the epoch.
    pub unix_ms: u64,
    /// The app's profile key.
    pub app: String,
    /// The process, when one was found.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process' executable, when known.
    #[serde(default)]
    pub exe: Option<String>,
    /// Who opened it.
    pub direction: Direction,
    /// The transport protocol.
    pub protocol: Protocol,
    /// Our address.
    pub local: IpAddr,
    /// Our port (`None` for ICMP).
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The other end (for a DNS query: the server the app asked).
    pub remote: IpAddr,
    /// The other end's port (`None` for ICMP).
    #[serde(default)]
    pub remote_port: Option<u16>,
    /// The name the app looked the remote up by (for a DNS query: the name asked).
    #[serde(default)]
    pub domain: Option<String>,
    /// The remote's country, when known.
    #[serde(default)]
    pub country: Option<String>,
    /// The remote's autonomous system, when known.
    #[serde(default)]
    pub asn: Option<u32>,
    /// The scope the policy put it in.
    pub scope: Scope,
    /// The verdict applied (never `ask`: an asked connection is recorded with its answer).
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub explanation: String,
    /// Bytes sent.
    #[serde(default)]
    pub bytes_out: u64,
    /// Bytes received.
    #[serde(default)]
    pub bytes_in: u64,
    /// Packets sent. For a DNS row: the number of queries it stands for (the identical
    /// queries an app makes within a second after a recorded one are one row, from its time
    /// to `end_ms`).
    #[serde(default)]
    pub packets_out: u64,
    /// Packets received.
    #[serde(default)]
    pub packets_in: u64,
    /// When it ended, in ms since the epoch; `None` while open or for refused attempts.
    #[serde(default)]
    pub end_ms: Option<u64>,
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryPage {
    /// The rows.
    pub rows: Vec<HistoryRow>,
    /// Where the next page starts; `None` on the last page.
    #[serde(default)]
    pub next: Option<HistoryCursor>,
}

/// What a top list counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum HistoryTopBy {
    /// Apps.
    App,
    /// Domains.
    Domain,
    /// Countries.
    Country,
}

/// One line of a top list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryTopEntry {
    /// The app key, domain or country.
    pub key: String,
    /// Connections and DNS queries.
    pub rows: u64,
    /// Of which blocked.
    pub blocked: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
}

/// The most rows one history page may ask for.
pub const HISTORY_PAGE_MAX: u32 = 1000;

/// The width of a bandwidth bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum HistoryBucket {
    /// One minute (ranges up to 48 hours).
    Minute,
    /// One hour (ranges up to 90 days).
    Hour,
}

/// One app's traffic in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BandwidthPoint {
    /// The app key.
    pub app: String,
    /// The bucket's start, in ms since the epoch.
    pub start_ms: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Connections counted.
    pub connections: u64,
}

/// The most bandwidth points one answer carries.
pub const BANDWIDTH_POINTS_MAX: usize = 20_000;

/// An app's traffic in the last second (TCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppRate {
    /// The app key.
    pub app: String,
    /// Bytes sent per second.
    pub bytes_out_per_sec: u64,
    /// Bytes received per second.
    pub bytes_in_per_sec: u64,
}
