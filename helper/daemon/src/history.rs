//! The network history in the running helper: every decided connection and DNS query goes to
//! `portcullis-history`'s batched writer (never blocking a verdict: a full channel counts the
//! record as lost), and clients read pages, top lists and clear it over IPC. Queries run on a
//! reader connection of their own, off the service lock, so a slow search never holds up
//! prompts or rule changes; each read is stopped at a time limit (`query_time_limit_ms`), so
//! no request holds the reader for long. The reader follows the writer: when a corrupt file
//! is moved aside, it is closed at once and the next read opens the fresh one.
//!
//! History is expendable and enforcement is not: a history database that cannot be opened is
//! logged and history is off for this run; a corrupt one is moved aside by the crate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use portcullis_history as h;
use portcullis_protocol::{
    ConnectionInfo, ErrorCode, ErrorFrame, HISTORY_PAGE_MAX, HistoryCursor, HistoryFilter,
    HistoryKind, HistoryPage, HistoryRow, HistoryTopBy, HistoryTopEntry, SettingKey, SettingValue,
    Verdict,
};
use serde::Deserialize;

use crate::live::SharedPolicy;

/// The `[history]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    /// Keep a history at all (default true). Per app, the `record_history` setting decides.
    pub enabled: bool,
    /// Days allowed connections are kept (default 30; 0: no age limit).
    pub keep_allowed_days: u32,
    /// Days blocked connections are kept (default 90; 0: no age limit).
    pub keep_blocked_days: u32,
    /// Most rows kept of each class, allowed and blocked (default 2,000,000 each; about
    /// 150 bytes a row on disk). The oldest go first.
    pub max_rows: u64,
    /// Days the per-app bandwidth totals are kept (default 365; 0: no age limit).
    pub keep_bandwidth_days: u32,
    /// The largest the history file may grow, in MiB (default 1024): past it new records
    /// are lost (counted), never the disk the settings live on.
    pub max_size_mb: u64,
    /// The longest one history read (a page, a top list, a bandwidth chart) may run, in
    /// milliseconds (default 3,000; 0: no limit). A read past it is stopped and the client
    /// told to narrow it.
    pub query_time_limit_ms: u64,
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            enabled: true,
            keep_allowed_days: 30,
            keep_blocked_days: 90,
            max_rows: 2_000_000,
            keep_bandwidth_days: 365,
            max_size_mb: 1024,
            query_time_limit_ms: 3_000,
        }
    }
}

impl HistorySection {
    fn read_limits(&self) -> h::ReadLimits {
        h::ReadLimits {
            max_time: (self.query_time_limit_ms > 0)
                .then(|| Duration::from_millis(self.query_time_limit_ms)),
            ..h::ReadLimits::default()
        }
    }

    fn retention(&self) -> h::Retention {
        let days = |d: u32| (d > 0).then(|| Duration::from_secs(u64::from(d) * 86_400));
        let rows = (self.max_rows > 0).then_some(self.max_rows);
        h::Retention {
            allowed: h::ClassRetention {
                max_age: days(self.keep_allowed_days),
                max_rows: rows,
            },
            blocked: h::ClassRetention {
                max_age: days(self.keep_blocked_days),
                max_rows: rows,
            },
            bandwidth_max_age: days(self.keep_bandwidth_days),
        }
    }
}

/// The handle the verdict path records through: set once history has started, so records
/// made before then (or with history off) are simply not kept.
#[derive(Debug, Default)]
pub struct Recorder {
    sender: OnceLock<h::RecordSender>,
}

impl Recorder {
    /// Starts recording into `sender`.
    pub fn attach(&self, sender: h::RecordSender) {
        let _ = self.sender.set(sender);
    }

    /// Records a decided connection. An `ask` is not recorded: it is recorded when settled.
    pub fn connection(&self, info: &ConnectionInfo) {
        if let Some(sender) = self.sender.get()
            && let Some(record) = connection_record(info)
        {
            sender.record(record);
        }
    }

    /// Records what an ended connection of `app` carried.
    pub fn traffic(&self, app: &str, event: &portcullis_attribution::TrafficEvent) {
        if let Some(sender) = self.sender.get() {
            sender.traffic(h::Traffic {
                app: app.to_owned(),
                protocol: protocol(event.protocol),
                local_port: event.local.port(),
                remote: event.remote.ip(),
                remote_port: event.remote.port(),
                bytes_out: event.bytes_out,
                bytes_in: event.bytes_in,
                packets_out: event.packets_out,
                packets_in: event.packets_in,
                end_ms: ms(crate::now_ms()),
            });
        }
    }

    /// Records a DNS query.
    pub fn record(&self, record: h::Record) {
        if let Some(sender) = self.sender.get() {
            sender.record(record);
        }
    }

    /// Whether anything is recorded.
    pub fn is_on(&self) -> bool {
        self.sender.get().is_some()
    }
}

/// The history of the running helper.
#[derive(Debug)]
pub struct History {
    writer: h::Writer,
    reader: h::Reader,
    time_limit_ms: u64,
}

impl History {
    /// Opens (or creates) `path` and starts the writer. Apps whose `record_history` setting
    /// is off are not recorded; the setting is read from the live policy at each record.
    pub fn start(
        section: &HistorySection,
        path: &Path,
        policy: Arc<SharedPolicy>,
    ) -> Result<History, h::HistoryError> {
        let config = h::WriterConfig {
            retention: section.retention(),
            max_bytes: Some(section.max_size_mb.max(1).saturating_mul(1 << 20)),
            ..h::WriterConfig::default()
        };
        let dont_record: h::DontRecord = Arc::new(move |app: &str| !records(&policy, app));
        let (writer, moved) = h::Writer::start(path, config, Some(dont_record))?;
        if let Some(aside) = moved {
            tracing::error!(
                aside = %aside.display(),
                "the history database was corrupt: it was moved aside and a fresh one started"
            );
        }
        let mut reader = writer.reader();
        reader.set_limits(section.read_limits());
        Ok(History {
            writer,
            reader,
            time_limit_ms: section.query_time_limit_ms,
        })
    }

    /// A handle for the verdict path.
    pub fn sender(&self) -> h::RecordSender {
        self.writer.sender()
    }

    /// Runs `f` on the reader connection (opened on first use, again after a failure, and
    /// on the fresh file after the writer moved a corrupt one aside), under the time limit.
    fn read<T>(
        &self,
        f: impl FnOnce(&h::Store) -> Result<T, h::HistoryError>,
    ) -> Result<T, ErrorFrame> {
        // What was decided before the request is in the answer.
        self.writer.flush().map_err(failed)?;
        self.reader.read(f).map_err(|e| match e {
            h::HistoryError::TimedOut { .. } => {
                tracing::info!(
                    limit_ms = self.time_limit_ms,
                    "a history read ran out of time"
                );
                invalid(format!(
                    "the history query took longer than its limit of {} ms \
                     ([history] query_time_limit_ms) and was stopped: narrow it with an app, \
                     a domain, a shorter time range or a longer search text",
                    self.time_limit_ms
                ))
            }
            other => failed(other),
        })
    }

    /// A page of rows matching `filter`.
    pub fn query(
        &self,
        filter: &HistoryFilter,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPage, ErrorFrame> {
        let filter = to_filter(filter)?;
        let limit = check_limit(limit)?;
        let after = after.map(|c| h::Cursor {
            unix_ms: ms(c.unix_ms),
            id: i64::try_from(c.id).unwrap_or(i64::MAX),
        });
        let page = self.read(|s| s.query(&filter, after, limit))?;
        let mut next = page.next.map(|c| HistoryCursor {
            unix_ms: u64::try_from(c.unix_ms).unwrap_or(0),
            id: u64::try_from(c.id).unwrap_or(0),
        });
        // A page must fit in one frame: rows with long paths and explanations end it early.
        let mut rows = Vec::with_capacity(page.rows.len());
        let mut size = 0_usize;
        for row in page.rows.into_iter().map(to_row) {
            size += serde_json::to_vec(&row).map_or(0, |v| v.len());
            if size > PAGE_BYTES_MAX
                && let Some(last) = rows.last()
            {
                let last: &HistoryRow = last;
                next = Some(HistoryCursor {
                    unix_ms: last.unix_ms,
                    id: last.id,
                });
                break;
            }
            rows.push(row);
        }
        Ok(HistoryPage { rows, next })
    }

    /// The top apps, domains or countries among rows matching `filter`.
    pub fn top(
        &self,
        by: HistoryTopBy,
        filter: &HistoryFilter,
        by_bytes: bool,
        limit: u32,
    ) -> Result<Vec<HistoryTopEntry>, ErrorFrame> {
        let filter = to_filter(filter)?;
        let limit = check_limit(limit)?;
        let by = match by {
            HistoryTopBy::App => h::TopBy::App,
            HistoryTopBy::Domain => h::TopBy::Domain,
            HistoryTopBy::Country => h::TopBy::Country,
        };
        let order = if by_bytes {
            h::TopOrder::Bytes
        } else {
            h::TopOrder::Rows
        };
        let top = self.read(|s| s.top(by, order, &filter, limit))?;
        Ok(top
            .into_iter()
            .map(|t| HistoryTopEntry {
                key: t.key,
                rows: t.rows,
                blocked: t.blocked,
                bytes_out: t.bytes_out,
                bytes_in: t.bytes_in,
            })
            .collect())
    }

    /// Bytes, packets and connections per app per bucket in `[since_ms, until_ms)`.
    pub fn bandwidth(
        &self,
        app: Option<&str>,
        since_ms: u64,
        until_ms: u64,
        bucket: portcullis_protocol::HistoryBucket,
    ) -> Result<Vec<portcullis_protocol::BandwidthPoint>, ErrorFrame> {
        use portcullis_protocol::HistoryBucket as B;
        let (width, longest, what) = match bucket {
            B::Minute => (h::Bucket::Minute, 48 * 3_600_000, "48 hours by the minute"),
            B::Hour => (h::Bucket::Hour, 90 * 86_400_000, "90 days by the hour"),
        };
        if since_ms >= until_ms || until_ms - since_ms > longest {
            return Err(invalid(format!(
                "invalid range: `since` must be before `until`, at most {what}"
            )));
        }
        let points = self.read(|s| s.bandwidth(ms(since_ms), ms(until_ms), width, app))?;
        if points.len() > portcullis_protocol::BANDWIDTH_POINTS_MAX {
            return Err(invalid(format!(
                "{} points: more than {}; ask for one app, hours, or a shorter range",
                points.len(),
                portcullis_protocol::BANDWIDTH_POINTS_MAX
            )));
        }
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(points
            .into_iter()
            .map(|p| portcullis_protocol::BandwidthPoint {
                app: p.app,
                start_ms: u(p.start_ms),
                bytes_out: p.bytes_out,
                bytes_in: p.bytes_in,
                packets_out: p.packets_out,
                packets_in: p.packets_in,
                connections: p.connections,
            })
            .collect())
    }

    /// Removes one app's history (`app` checked by the caller), or all of it.
    pub fn clear(&self, app: Option<String>) -> Result<u64, ErrorFrame> {
        let what = match app {
            Some(key) => h::Clear::App(key),
            None => h::Clear::All,
        };
        let removed = self.writer.clear(what).map_err(failed)?;
        Ok(removed.rows)
    }

    /// What the writer has done since the helper started.
    pub fn stats(&self) -> h::Stats {
        self.writer.stats()
    }
}

/// Whether `app`'s activity is recorded under the live policy.
fn records(policy: &SharedPolicy, app: &str) -> bool {
    let snapshot = policy.load();
    let entry = portcullis_policy::resolve(
        SettingKey::RecordHistory,
        snapshot.apps.get(app).map(|a| &a.overrides),
        &snapshot.global.overrides,
    );
    !matches!(entry.value, SettingValue::Bool(false))
}

fn failed(e: impl std::fmt::Display) -> ErrorFrame {
    // The error can name the database's path: that is the helper's own, not the user's.
    tracing::warn!(error = %e, "history request failed");
    ErrorFrame::new(
        ErrorCode::Internal,
        format!("the history could not be read or changed: {e}"),
    )
}

fn invalid(message: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::InvalidInput, message)
}

fn check_limit(limit: u32) -> Result<usize, ErrorFrame> {
    if (1..=HISTORY_PAGE_MAX).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(invalid(format!(
            "invalid limit {limit}: ask for 1 to {HISTORY_PAGE_MAX} rows"
        )))
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Most bytes of rows in one page (the frame limit is 1 MiB).
const PAGE_BYTES_MAX: usize = 768 * 1024;

/// Longest domain or search text a filter may carry (a domain is at most 253 bytes).
const MAX_FILTER_TEXT: usize = 256;

/// Checks a client's filter and converts it.
fn to_filter(f: &HistoryFilter) -> Result<h::Filter, ErrorFrame> {
    let text = |what: &str, v: &Option<String>| -> Result<Option<String>, ErrorFrame> {
        match v {
            Some(s) if s.len() > MAX_FILTER_TEXT || s.chars().any(char::is_control) => {
                Err(invalid(format!(
                    "invalid {what} filter: at most {MAX_FILTER_TEXT} bytes, no control characters"
                )))
            }
            Some(s) if s.is_empty() => Ok(None),
            other => Ok(other.clone()),
        }
    };
    if let Some(app) = &f.app {
        crate::service::check_app_key(app)?;
    }
    let country = match &f.country {
        Some(c) if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        Some(c) => {
            return Err(invalid(format!(
                "invalid country `{}`: expected a two-letter code such as DE",
                c.chars().take(20).collect::<String>().escape_debug()
            )));
        }
        None => None,
    };
    let verdict = match f.verdict {
        None => None,
        Some(Verdict::Allow) => Some(h::Verdict::Allow),
        Some(Verdict::Block) => Some(h::Verdict::Block),
        Some(Verdict::Drop) => Some(h::Verdict::Drop),
        Some(Verdict::Ask) => {
            return Err(invalid(
                "invalid verdict filter `ask`: history records what a prompt's answer was (allow, block or drop)",
            ));
        }
    };
    if let (Some(a), Some(b)) = (f.since_ms, f.until_ms)
        && a > b
    {
        return Err(invalid("invalid time range: `since` is after `until`"));
    }
    Ok(h::Filter {
        app: f.app.clone(),
        domain: text("domain", &f.domain)?.map(|d| d.trim_end_matches('.').to_ascii_lowercase()),
        ip: f.ip,
        country,
        asn: f.asn,
        verdict,
        direction: f.direction.map(direction),
        kind: f.kind.map(|k| match k {
            HistoryKind::Connection => h::Kind::Connection,
            HistoryKind::Dns => h::Kind::Dns,
        }),
        since_ms: f.since_ms.map(ms),
        until_ms: f.until_ms.map(ms),
        search: text("search", &f.search)?,
    })
}

fn direction(d: portcullis_protocol::Direction) -> h::Direction {
    match d {
        portcullis_protocol::Direction::Outbound => h::Direction::Outbound,
        portcullis_protocol::Direction::Inbound => h::Direction::Inbound,
    }
}

fn protocol(p: portcullis_protocol::Protocol) -> h::Protocol {
    match p {
        portcullis_protocol::Protocol::Tcp => h::Protocol::Tcp,
        portcullis_protocol::Protocol::Udp => h::Protocol::Udp,
        portcullis_protocol::Protocol::Icmp => h::Protocol::Icmp,
    }
}

fn scope(s: portcullis_protocol::Scope) -> h::Scope {
    use portcullis_protocol::Scope as S;
    match s {
        S::Localhost => h::Scope::Localhost,
        S::Lan => h::Scope::Lan,
        S::Internet => h::Scope::Internet,
        S::P2p => h::Scope::P2p,
        S::Inbound => h::Scope::Inbound,
    }
}

/// The history record of a decided connection; `None` while it waits for an answer.
pub fn connection_record(info: &ConnectionInfo) -> Option<h::Record> {
    let verdict = match info.explanation.verdict {
        Verdict::Allow => h::Verdict::Allow,
        Verdict::Block => h::Verdict::Block,
        Verdict::Drop => h::Verdict::Drop,
        Verdict::Ask => return None,
    };
    Some(h::Record {
        kind: h::Kind::Connection,
        unix_ms: ms(info.unix_ms),
        app: info.app.clone(),
        pid: info.pid,
        exe: None,
        direction: direction(info.direction),
        protocol: protocol(info.protocol),
        local: info.local,
        local_port: info.local_port,
        remote: info.remote,
        remote_port: info.remote_port,
        domain: info.domain.clone(),
        country: info.country.clone(),
        asn: info.asn,
        scope: scope(info.scope),
        verdict,
        explanation: info.explanation.summary.clone(),
        bytes_out: 0,
        bytes_in: 0,
        packets_out: 0,
        packets_in: 0,
        start_ms: Some(ms(info.unix_ms)),
        end_ms: None,
    })
}

/// The history record of a DNS query for `name` that `app` sent from `source`, and whether
/// it was blocked and why.
pub fn dns_record(
    app: &str,
    source: &portcullis_dns::policy::QuerySource,
    name: &str,
    (blocked, explanation): (bool, String),
    now_ms: u64,
) -> h::Record {
    // From the app's side: its own socket is local, the server it asked is remote.
    let (local, server) = (source.peer, source.local);
    let protocol_tcp = matches!(source.protocol, portcullis_dns::policy::Protocol::Tcp);
    let remote: IpAddr = server.ip();
    h::Record {
        kind: h::Kind::Dns,
        unix_ms: ms(now_ms),
        app: app.to_owned(),
        pid: None,
        exe: None,
        direction: h::Direction::Outbound,
        protocol: if protocol_tcp {
            h::Protocol::Tcp
        } else {
            h::Protocol::Udp
        },
        local: local.ip(),
        local_port: Some(local.port()),
        remote,
        remote_port: Some(server.port()),
        domain: Some(name.to_owned()),
        country: None,
        asn: None,
        scope: if remote.is_loopback() {
            h::Scope::Localhost
        } else {
            h::Scope::Lan
        },
        verdict: if blocked {
            h::Verdict::Block
        } else {
            h::Verdict::Allow
        },
        explanation,
        bytes_out: 0,
        bytes_in: 0,
        // The number of queries the row stands for (see `DnsCoalescer`).
        packets_out: 1,
        packets_in: 0,
        start_ms: Some(ms(now_ms)),
        end_ms: None,
    }
}

fn to_row(row: h::Row) -> HistoryRow {
    let r = row.record;
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    HistoryRow {
        id: u(row.id),
        kind: match r.kind {
            h::Kind::Connection => HistoryKind::Connection,
            h::Kind::Dns => HistoryKind::Dns,
        },
        unix_ms: u(r.unix_ms),
        app: r.app,
        pid: r.pid,
        exe: r.exe,
        direction: match r.direction {
            h::Direction::Outbound => portcullis_protocol::Direction::Outbound,
            h::Direction::Inbound => portcullis_protocol::Direction::Inbound,
        },
        protocol: match r.protocol {
            h::Protocol::Tcp => portcullis_protocol::Protocol::Tcp,
            h::Protocol::Udp => portcullis_protocol::Protocol::Udp,
            h::Protocol::Icmp => portcullis_protocol::Protocol::Icmp,
        },
        local: r.local,
        local_port: r.local_port,
        remote: r.remote,
        remote_port: r.remote_port,
        domain: r.domain,
        country: r.country,
        asn: r.asn,
        scope: match r.scope {
            h::Scope::Localhost => portcullis_protocol::Scope::Localhost,
            h::Scope::Lan => portcullis_protocol::Scope::Lan,
            h::Scope::Internet => portcullis_protocol::Scope::Internet,
            h::Scope::P2p => portcullis_protocol::Scope::P2p,
            h::Scope::Inbound => portcullis_protocol::Scope::Inbound,
        },
        verdict: match r.verdict {
            h::Verdict::Allow => Verdict::Allow,
            h::Verdict::Block => Verdict::Block,
            h::Verdict::Drop => Verdict::Drop,
        },
        explanation: r.explanation,
        bytes_out: r.bytes_out,
        bytes_in: r.bytes_in,
        packets_out: r.packets_out,
        packets_in: r.packets_in,
        end_ms: r.end_ms.map(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(app: &str, name: &str, at_ms: u64) -> h::Record {
        let source = portcullis_dns::policy::QuerySource {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.153:53".parse().unwrap(),
            protocol: portcullis_dns::policy::Protocol::Udp,
        };
        dns_record(app, &source, name, (false, "answered".into()), at_ms)
    }

    #[test]
    fn identical_queries_in_a_second_are_one_counted_row() {
        let c = DnsCoalescer::default();
        // The first is recorded at once, with a count of one.
        let now = c.offer(query("/usr/bin/a", "x.example", 10_000));
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].packets_out, 1);
        // The next 500 within the second are counted, not recorded; another name or app is not
        // one of them.
        for k in 1..=500 {
            assert!(
                c.offer(query("/usr/bin/a", "x.example", 10_000 + k))
                    .is_empty()
            );
        }
        assert_eq!(c.offer(query("/usr/bin/a", "y.example", 10_200)).len(), 1);
        assert_eq!(c.offer(query("/usr/bin/b", "x.example", 10_200)).len(), 1);
        // Nothing has passed yet.
        assert!(c.expired(10_900).is_empty());
        // After the window: one row for the 500, spanning them.
        let rows = c.expired(11_000);
        let row = rows
            .iter()
            .find(|r| r.domain.as_deref() == Some("x.example") && r.app == "/usr/bin/a")
            .unwrap();
        assert_eq!(row.packets_out, 500);
        assert_eq!(row.start_ms, Some(10_001));
        assert_eq!(row.end_ms, Some(10_500));
        assert_eq!(rows.len(), 1, "windows without counted queries make no row");
        // The next query opens a new window and is recorded at once.
        assert_eq!(c.offer(query("/usr/bin/a", "x.example", 11_001)).len(), 1);
    }

    #[test]
    fn a_window_that_passed_unswept_hands_over_its_count() {
        let c = DnsCoalescer::default();
        assert_eq!(c.offer(query("/a", "x.example", 0)).len(), 1);
        assert!(c.offer(query("/a", "x.example", 5)).is_empty());
        assert!(c.offer(query("/a", "x.example", 6)).is_empty());
        let rows = c.offer(query("/a", "x.example", 2_000));
        assert_eq!(
            rows.iter().map(|r| r.packets_out).collect::<Vec<_>>(),
            [2, 1]
        );
        // A clock step back closes the window too, never a negative span.
        assert!(c.offer(query("/a", "x.example", 2_001)).is_empty());
        let rows = c.offer(query("/a", "x.example", 1_000));
        assert_eq!(
            rows.iter().map(|r| r.packets_out).collect::<Vec<_>>(),
            [1, 1]
        );
        assert!(c.offer(query("/a", "x.example", 1_001)).is_empty());
        assert_eq!(c.drain().len(), 1, "drain at stop keeps the last counts");
    }

    #[test]
    fn too_many_open_windows_record_one_row_each() {
        let c = DnsCoalescer::default();
        for k in 0..DnsCoalescer::MAX_OPEN {
            assert_eq!(c.offer(query("/a", &format!("n{k}.example"), 0)).len(), 1);
        }
        let extra = query("/a", "one-more.example", 1);
        assert_eq!(c.offer(extra.clone()).len(), 1);
        assert_eq!(c.offer(extra).len(), 1, "not counted: no window could open");
    }

    #[test]
    fn a_bad_filter_is_named_and_a_good_one_converts() {
        let bad = |f: HistoryFilter| to_filter(&f).unwrap_err().message;
        assert!(
            bad(HistoryFilter {
                country: Some("Germany".into()),
                ..Default::default()
            })
            .contains("Germany")
        );
        assert!(
            bad(HistoryFilter {
                verdict: Some(Verdict::Ask),
                ..Default::default()
            })
            .contains("ask")
        );
        assert!(
            bad(HistoryFilter {
                app: Some("relative/path".into()),
                ..Default::default()
            })
            .contains("relative/path")
        );
        assert!(
            bad(HistoryFilter {
                search: Some("x".repeat(300)),
                ..Default::default()
            })
            .contains("search")
        );
        assert!(
            bad(HistoryFilter {
                since_ms: Some(10),
                until_ms: Some(5),
                ..Default::default()
            })
            .contains("since")
        );
        let good = to_filter(&HistoryFilter {
            country: Some("de".into()),
            domain: Some("Example.COM.".into()),
            search: Some(String::new()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(good.country.as_deref(), Some("DE"));
        assert_eq!(good.domain.as_deref(), Some("example.com"));
        assert_eq!(good.search, None);
        assert!(check_limit(0).is_err() && check_limit(HISTORY_PAGE_MAX + 1).is_err());
    }

    #[test]
    fn a_read_past_the_time_limit_tells_the_client_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::store::Store::open(&dir.path().join("s.db")).unwrap();
        let policy = Arc::new(SharedPolicy::new(settings.load().unwrap()));
        let section = HistorySection {
            query_time_limit_ms: 1,
            ..HistorySection::default()
        };
        let history = History::start(&section, &dir.path().join("h.db"), policy).unwrap();
        let sender = history.sender();
        for i in 0..40_000_u32 {
            let source = portcullis_dns::policy::QuerySource {
                peer: std::net::SocketAddr::from(([10, 0, 0, 2], 40_000)),
                local: std::net::SocketAddr::from(([127, 0, 0, 1], 53)),
                protocol: portcullis_dns::policy::Protocol::Udp,
            };
            let name = format!("host{i}.example.com");
            let mut record = dns_record(
                "/usr/bin/app",
                &source,
                &name,
                (false, "allowed".into()),
                1_767_225_600_000 + u64::from(i),
            );
            record.bytes_in = 1;
            while !sender.record(record.clone()) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Slow on purpose: every name matches, grouped by domain.
        let filter = HistoryFilter {
            search: Some(".".into()),
            ..HistoryFilter::default()
        };
        let err = history
            .top(HistoryTopBy::Domain, &filter, true, 1_000)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(err.message.contains("limit of 1 ms"), "{}", err.message);
        assert!(
            err.message.contains("query_time_limit_ms"),
            "{}",
            err.message
        );
        // A cheap read still works on the same reader.
        let page = history
            .query(
                &HistoryFilter {
                    app: Some("/usr/bin/app".into()),
                    ..HistoryFilter::default()
                },
                None,
                1,
            )
            .unwrap();
        assert_eq!(page.rows.len(), 1);
    }

    #[test]
    fn the_config_section_has_bounded_defaults_and_zero_means_no_limit() {
        let r = HistorySection::default().retention();
        assert_eq!(r.allowed.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(r.blocked.max_rows, Some(2_000_000));
        let r = HistorySection {
            keep_allowed_days: 0,
            max_rows: 0,
            ..HistorySection::default()
        }
        .retention();
        assert_eq!((r.allowed.max_age, r.allowed.max_rows), (None, None));
        let limits = HistorySection::default().read_limits();
        assert_eq!(limits.max_time, Some(Duration::from_secs(3)));
        let off = HistorySection {
            query_time_limit_ms: 0,
            ..HistorySection::default()
        };
        assert_eq!(off.read_limits().max_time, None);
    }
}

/// Identical DNS queries of an app close together become two history rows, not one per
/// query: the first is recorded at once; the ones that follow within [`DnsCoalescer::WINDOW_MS`]
/// (same app, name and outcome) are counted, and recorded as one row whose `packets_out` is
/// their number, spanning `start_ms`..`end_ms`, once the window has passed. An app that asks
/// the same name thousands of times a second (or a flood meant to churn the disk) thus costs
/// the history two rows a second, and the DNS thread no writer work per query.
#[derive(Debug, Default)]
pub struct DnsCoalescer {
    open: Mutex<HashMap<CoalesceKey, Window>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CoalesceKey {
    app: String,
    domain: Option<String>,
    allowed: bool,
    explanation: String,
}

#[derive(Debug)]
struct Window {
    /// When it opened (the recorded query's time).
    opened_ms: i64,
    /// The first query counted in it, which becomes the count's row, and how many there were.
    counted: Option<(h::Record, u64)>,
}

impl Window {
    /// The row of the queries counted in it, if any.
    fn into_row(self) -> Option<h::Record> {
        self.counted.map(|(mut row, n)| {
            row.packets_out = n;
            row
        })
    }
}

impl DnsCoalescer {
    /// How long identical queries are counted into one row.
    pub const WINDOW_MS: i64 = 1_000;
    /// Most windows open at once; beyond, queries are recorded one row each.
    const MAX_OPEN: usize = 8_192;

    /// Takes one query's record (`packets_out` 1, `unix_ms` its time); returns what to record
    /// now: nothing (counted), the query, or the count of a window that had passed and the
    /// query.
    pub fn offer(&self, record: h::Record) -> Vec<h::Record> {
        let key = CoalesceKey {
            app: record.app.clone(),
            domain: record.domain.clone(),
            allowed: matches!(record.verdict, h::Verdict::Allow),
            explanation: record.explanation.clone(),
        };
        let now = record.unix_ms;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = open.get_mut(&key)
            && (window.opened_ms..window.opened_ms.saturating_add(Self::WINDOW_MS)).contains(&now)
        {
            match &mut window.counted {
                Some((row, n)) => {
                    *n += 1;
                    row.end_ms = Some(now);
                }
                None => {
                    let mut row = record;
                    row.end_ms = Some(now);
                    window.counted = Some((row, 1));
                }
            }
            return Vec::new();
        }
        if open.len() >= Self::MAX_OPEN && !open.contains_key(&key) {
            return vec![record];
        }
        let passed = open.insert(
            key,
            Window {
                opened_ms: now,
                counted: None,
            },
        );
        let mut out: Vec<h::Record> = passed.and_then(Window::into_row).into_iter().collect();
        out.push(record);
        out
    }

    /// The counts of windows that have passed by `now_ms`, to record; their windows close.
    pub fn expired(&self, now_ms: i64) -> Vec<h::Record> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let passed: Vec<CoalesceKey> = open
            .iter()
            .filter(|(_, w)| {
                now_ms.saturating_sub(w.opened_ms) >= Self::WINDOW_MS || now_ms < w.opened_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        passed
            .into_iter()
            .filter_map(|k| open.remove(&k))
            .filter_map(Window::into_row)
            .collect()
    }

    /// Every count still open (at stop).
    pub fn drain(&self) -> Vec<h::Record> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.drain().filter_map(|(_, w)| w.into_row()).collect()
    }
}
