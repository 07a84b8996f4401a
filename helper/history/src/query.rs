//! Reading history: filtered pages (newest first, keyset cursors), substring search over
//! domains and apps, top lists, and bandwidth per app over time.
//!
//! Every query is bounded: a page by app or with no key filter is an index walk that stops
//! after `limit` rows; a page by domain or address scans only the blocks of 4,096 rows whose
//! coarse-index keys have it, newest first, and stops when no older block can hold a newer
//! row; substring search finds the matching apps and domains in their (small) dictionaries
//! (trigram-indexed for three characters or more) and then, for a few names, does both,
//! or for many names walks time backwards for at most `ReadLimits::max_scan_rows` rows per
//! page. Matched names are never spelled out in a statement. Every public read runs under
//! the time limit of `ReadLimits`. Bandwidth reads the per-minute and per-hour rollups.
//! Nothing here writes.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::coarse::{self, BLOCK_SHIFT};
use crate::store::{ip_from_blob, ip_to_blob};
use crate::{Direction, HistoryError, Kind, Protocol, Record, Row, Scope, Store, Verdict};

/// Above this many matching apps and domains, search scans the time index backwards instead
/// of walking each match's own index (many matches mean the rows are dense, so the scan
/// finds a page quickly).
const MERGE_MAX_KEYS: usize = 256;

/// Which rows a query covers. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
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
    /// This verdict.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// This direction.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Connections or DNS queries only.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Decided at or after this time (ms since the epoch).
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Decided before this time (ms since the epoch).
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// A substring (case-insensitive for ASCII) of the domain or of the app key.
    #[serde(default)]
    pub search: Option<String>,
}

/// Where the next page starts: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// That row's time.
    pub unix_ms: i64,
    /// That row's id.
    pub id: i64,
}

/// One page of rows, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The rows.
    pub rows: Vec<Row>,
    /// The cursor of the next page; `None` when this is the last one.
    pub next: Option<Cursor>,
}

/// What a top list counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    /// Apps.
    App,
    /// Domains (rows without one are left out).
    Domain,
    /// Countries (rows without one are left out).
    Country,
}

/// How a top list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopOrder {
    /// Most rows first.
    Rows,
    /// Most bytes (both ways) first.
    Bytes,
}

/// One line of a top list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    /// The app key, domain or country.
    pub key: String,
    /// Rows (connections and DNS queries).
    pub rows: u64,
    /// Of which blocked.
    pub blocked: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
}

/// The width of a bandwidth bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Bucket {
    fn ms(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
        }
    }
}

/// One app's traffic in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandwidthPoint {
    /// The app key.
    pub app: String,
    /// The bucket's start, in ms since the epoch.
    pub start_ms: i64,
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

const SELECT_ROW: &str = "SELECT e.id, e.kind, e.ts, a.key, e.pid, x.text, e.direction,
    e.protocol, e.local_ip, e.local_port, e.remote_ip, e.remote_port, d.name, e.country,
    e.asn, e.scope, e.verdict, t.text, e.bytes_out, e.bytes_in, e.packets_out, e.packets_in,
    e.start_ms, e.end_ms
    FROM events e
    LEFT JOIN apps a ON a.id = e.app_id
    LEFT JOIN texts x ON x.id = e.exe_id
    LEFT JOIN domains d ON d.id = e.domain_id
    LEFT JOIN texts t ON t.id = e.explanation_id";

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A WHERE clause over `events e` and its parameters.
#[derive(Debug, Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn push(&mut self, clause: &str, value: Value) {
        self.params.push(value);
        let n = self.params.len();
        self.clauses.push(clause.replace('?', &format!("?{n}")));
    }

    fn push_raw(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// The escaped FTS5 phrase for a literal substring.
fn fts_phrase(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A LIKE pattern matching `s` anywhere, with `\` as the escape character.
fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn id_list(ids: &[i64]) -> String {
    let mut s = String::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{id}");
    }
    s
}

/// What a search matched: the apps and domains whose name contains the needle. The sets
/// are used in Rust (a row's app and domain are looked up in them); statements that run
/// once get the search as a subquery instead, so no statement ever lists them.
struct Matches {
    apps: HashSet<i64>,
    domains: HashSet<i64>,
    /// Whether the needle is searched with the trigram indexes (3 characters or more) or
    /// with LIKE over the dictionaries.
    fts: bool,
    /// The FTS5 phrase or the LIKE pattern.
    arg: String,
}

impl Matches {
    fn len(&self) -> usize {
        self.apps.len() + self.domains.len()
    }

    fn row(&self, app: i64, domain: Option<i64>) -> bool {
        self.apps.contains(&app) || domain.is_some_and(|d| self.domains.contains(&d))
    }

    /// Adds the search as one condition with one parameter: the dictionaries are searched
    /// once per statement, inside SQLite.
    fn push_sql(&self, w: &mut Where) {
        let clause = if self.fts {
            "(e.app_id IN (SELECT rowid FROM apps_fts WHERE apps_fts MATCH ?)
              OR e.domain_id IN (SELECT rowid FROM domains_fts WHERE domains_fts MATCH ?))"
        } else {
            "(e.app_id IN (SELECT id FROM apps WHERE key LIKE ? ESCAPE '\\')
              OR e.domain_id IN (SELECT id FROM domains WHERE name LIKE ? ESCAPE '\\'))"
        };
        w.push(clause, Value::Text(self.arg.clone()));
    }
}

/// What the filter resolved to before touching `events`.
enum Resolved {
    /// Nothing can match (an unknown app or domain, a search with no hits).
    Nothing,
    /// The conditions, what a search matched, and the coarse-index keys that bound which
    /// blocks of rows can match.
    Rows {
        cond: Where,
        search: Option<Box<Matches>>,
        postings: Vec<Postings>,
        by_app: bool,
    },
}

/// A coarse-index key: a block can hold the rows only if its blob has it.
enum Postings {
    Domain(u32),
    Ip(u32),
}

/// The `(ts, id)` keys of a page's rows, and where the scan stopped if it hit its limit.
type Keys = (BTreeSet<(i64, i64)>, Option<Cursor>);

/// Which key blobs of a block a scan reads.
#[derive(Debug, Clone, Copy)]
enum Need {
    Domains,
    Ips,
    Both,
}

impl Need {
    fn sql(self) -> &'static str {
        match self {
            Need::Domains => "SELECT domains, X'' FROM block_keys WHERE block = ?1",
            Need::Ips => "SELECT X'', ips FROM block_keys WHERE block = ?1",
            Need::Both => "SELECT domains, ips FROM block_keys WHERE block = ?1",
        }
    }
}

/// A block of row ids and its time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Block {
    block: i64,
    min_ts: i64,
    max_ts: i64,
}

/// Which blocks and rows a block scan keeps.
struct BlockScan<'a> {
    /// Which key blobs `block` looks at (the others are not read).
    need: Need,
    /// Whether a block with these domain and address key blobs can hold a match.
    block: &'a dyn Fn(&[u8], &[u8]) -> bool,
    /// Whether a row (its app and domain) matches.
    row: &'a dyn Fn(i64, Option<i64>) -> bool,
}

impl Store {
    fn dict_id(&self, sql: &str, key: &str) -> Result<Option<i64>, HistoryError> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(self.err("look up a name"))
    }

    /// The apps and domains containing `needle`. The dictionaries hold distinct names
    /// only, far fewer than rows.
    fn search_ids(&self, needle: &str) -> Result<Matches, HistoryError> {
        let err = self.err("search names");
        let run = |sql: &str, arg: &str| -> Result<HashSet<i64>, HistoryError> {
            let mut stmt = self.conn().prepare_cached(sql).map_err(&err)?;
            let ids = stmt
                .query_map([arg], |r| r.get(0))
                .and_then(|rows| rows.collect::<Result<HashSet<i64>, _>>())
                .map_err(&err)?;
            Ok(ids)
        };
        // The trigram index needs three characters; shorter needles scan the dictionaries.
        let (fts, arg) = if needle.chars().count() >= 3 {
            (true, fts_phrase(needle))
        } else {
            (false, like_pattern(needle))
        };
        let (apps, domains) = if fts {
            (
                run("SELECT rowid FROM apps_fts WHERE apps_fts MATCH ?1", &arg)?,
                run(
                    "SELECT rowid FROM domains_fts WHERE domains_fts MATCH ?1",
                    &arg,
                )?,
            )
        } else {
            (
                run("SELECT id FROM apps WHERE key LIKE ?1 ESCAPE '\\'", &arg)?,
                run(
                    "SELECT id FROM domains WHERE name LIKE ?1 ESCAPE '\\'",
                    &arg,
                )?,
            )
        };
        Ok(Matches {
            apps,
            domains,
            fts,
            arg,
        })
    }

    fn resolve(&self, f: &Filter) -> Result<Resolved, HistoryError> {
        let mut w = Where::default();
        let mut postings = Vec::new();
        if let Some(app) = &f.app {
            match self.dict_id("SELECT id FROM apps WHERE key = ?1", app)? {
                Some(id) => w.push("e.app_id = ?", Value::Integer(id)),
                None => return Ok(Resolved::Nothing),
            }
        }
        if let Some(domain) = &f.domain {
            match self.dict_id("SELECT id FROM domains WHERE name = ?1", domain)? {
                Some(id) => {
                    w.push("e.domain_id = ?", Value::Integer(id));
                    postings.push(Postings::Domain(coarse::domain_key(id)));
                }
                None => return Ok(Resolved::Nothing),
            }
        }
        if let Some(ip) = f.ip {
            w.push("e.remote_ip = ?", Value::Blob(ip_to_blob(ip)));
            postings.push(Postings::Ip(coarse::ip_key(&ip_to_blob(ip))));
        }
        if let Some(c) = &f.country {
            w.push("e.country = ?", Value::Text(c.clone()));
        }
        if let Some(asn) = f.asn {
            w.push("e.asn = ?", Value::Integer(i64::from(asn)));
        }
        if let Some(v) = f.verdict {
            w.push("e.verdict = ?", Value::Integer(v.code()));
        }
        if let Some(d) = f.direction {
            w.push("e.direction = ?", Value::Integer(d.code()));
        }
        if let Some(k) = f.kind {
            w.push("e.kind = ?", Value::Integer(k.code()));
        }
        if let Some(t) = f.since_ms {
            w.push("e.ts >= ?", Value::Integer(t));
        }
        if let Some(t) = f.until_ms {
            w.push("e.ts < ?", Value::Integer(t));
        }
        let search = match f.search.as_deref() {
            Some(needle) if !needle.is_empty() => {
                let m = self.search_ids(needle)?;
                if m.len() == 0 {
                    return Ok(Resolved::Nothing);
                }
                Some(Box::new(m))
            }
            _ => None,
        };
        Ok(Resolved::Rows {
            cond: w,
            search,
            postings,
            by_app: f.app.is_some(),
        })
    }

    /// Every block with its time range, newest first.
    fn all_blocks(&self) -> Result<Vec<Block>, HistoryError> {
        let err = self.err("read the coarse index");
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT block, min_ts, max_ts FROM blocks")
            .map_err(&err)?;
        let mut blocks = stmt
            .query_map([], |r| {
                Ok(Block {
                    block: r.get(0)?,
                    min_ts: r.get(1)?,
                    max_ts: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(&err)?;
        blocks.sort_by(|a, b| b.max_ts.cmp(&a.max_ts).then(b.block.cmp(&a.block)));
        Ok(blocks)
    }

    /// The newest `limit` `(ts, id)` keys matching `cond` and `scan` in the blocks whose
    /// keys `scan` accepts, newest block first; stops once no remaining block can hold a
    /// newer row.
    fn scan_blocks(
        &self,
        cond: &Where,
        scan: &BlockScan<'_>,
        before_ts: Option<i64>,
        limit: usize,
        best: &mut BTreeSet<(i64, i64)>,
    ) -> Result<(), HistoryError> {
        let err = self.err("scan blocks");
        let mut c = Where {
            clauses: cond.clauses.clone(),
            params: cond.params.clone(),
        };
        let lo = c.params.len() + 1;
        c.push_raw(format!("e.id BETWEEN ?{lo} AND ?{}", lo + 1));
        // NOT INDEXED: read the block through its rowid range, never through `(ts)`.
        let sql = format!(
            "SELECT e.ts, e.id, e.app_id, e.domain_id FROM events e NOT INDEXED{}",
            c.sql()
        );
        let mut stmt = self.conn().prepare_cached(&sql).map_err(&err)?;
        let mut keys = self.conn().prepare_cached(scan.need.sql()).map_err(&err)?;
        for b in self.all_blocks()? {
            if best.len() >= limit && best.first().is_some_and(|oldest| b.max_ts < oldest.0) {
                break;
            }
            if before_ts.is_some_and(|t| b.min_ts > t) {
                continue;
            }
            // Read in place, not copied. A block without keys (written before they existed)
            // may hold anything.
            let keep: Option<bool> = keys
                .query_row([b.block], |r| {
                    let domains = r.get_ref(0)?.as_blob()?;
                    let ips = r.get_ref(1)?.as_blob()?;
                    Ok((scan.block)(domains, ips))
                })
                .optional()
                .map_err(&err)?;
            if keep == Some(false) {
                continue;
            }
            let mut params = c.params.clone();
            params.push(Value::Integer(b.block << BLOCK_SHIFT));
            params.push(Value::Integer(((b.block + 1) << BLOCK_SHIFT) - 1));
            let mut rows = stmt.query(params_from_iter(params)).map_err(&err)?;
            while let Some(r) = rows.next().map_err(&err)? {
                let (app, domain): (i64, Option<i64>) =
                    (r.get(2).map_err(&err)?, r.get(3).map_err(&err)?);
                if !(scan.row)(app, domain) {
                    continue;
                }
                best.insert((r.get(0).map_err(&err)?, r.get(1).map_err(&err)?));
                if best.len() > limit {
                    best.pop_first();
                }
            }
        }
        Ok(())
    }

    /// The newest `limit` `(ts, id)` keys of rows matching `cond` and the search `m`, by
    /// walking time backwards and looking each row's app and domain up in `m`. Examines at
    /// most `max_scan_rows` rows: if it stops there, also returns where, so the next page
    /// starts after the rows already examined.
    fn scan_time(&self, cond: &Where, m: &Matches, limit: usize) -> Result<Keys, HistoryError> {
        let err = self.err("search rows");
        let sql = format!(
            "SELECT e.ts, e.id, e.app_id, e.domain_id FROM events e{}
             ORDER BY e.ts DESC, e.id DESC",
            cond.sql()
        );
        let mut stmt = self.conn().prepare_cached(&sql).map_err(&err)?;
        let mut rows = stmt
            .query(params_from_iter(cond.params.iter()))
            .map_err(&err)?;
        let mut best = BTreeSet::new();
        let mut examined = 0_u64;
        while let Some(r) = rows.next().map_err(&err)? {
            let key: (i64, i64) = (r.get(0).map_err(&err)?, r.get(1).map_err(&err)?);
            if m.row(r.get(2).map_err(&err)?, r.get(3).map_err(&err)?) {
                best.insert(key);
                if best.len() >= limit {
                    break;
                }
            }
            examined += 1;
            if examined >= self.read_limits().max_scan_rows.max(1) {
                let stop = Cursor {
                    unix_ms: key.0,
                    id: key.1,
                };
                return Ok((best, Some(stop)));
            }
        }
        Ok((best, None))
    }

    /// One page of rows matching `filter`, newest first, starting after `after`.
    ///
    /// A search that matches many names examines at most
    /// [`ReadLimits::max_scan_rows`](crate::ReadLimits) rows: its page may then be short, or
    /// empty, and still have a `next` cursor. Under the time limit.
    pub fn query(
        &self,
        filter: &Filter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
        self.timed(|| self.query_page(filter, after, limit))
    }

    fn query_page(
        &self,
        filter: &Filter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
        let limit = limit.max(1);
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        let (mut cond, search, postings, by_app) = match self.resolve(filter)? {
            Resolved::Nothing => {
                return Ok(Page {
                    rows: Vec::new(),
                    next: None,
                });
            }
            Resolved::Rows {
                cond,
                search,
                postings,
                by_app,
            } => (cond, search, postings, by_app),
        };
        if let Some(c) = after {
            // `ts <= ?` is the index range; the rest only sorts out the boundary rows.
            cond.params.push(Value::Integer(c.unix_ms));
            let ts = cond.params.len();
            cond.params.push(Value::Integer(c.id));
            let id = cond.params.len();
            cond.push_raw(format!("e.ts <= ?{ts} AND (e.ts < ?{ts} OR e.id < ?{id})"));
        }
        let before_ts = after.map(|c| c.unix_ms);
        let mut stopped = None;
        let rows = match search {
            // One app's index bounds everything else: the other filters are checked on it.
            _ if by_app => {
                if let Some(m) = &search {
                    m.push_sql(&mut cond);
                }
                self.fetch(&cond, limit_i)?
            }
            // A domain or an address: only the blocks whose keys have it.
            _ if !postings.is_empty() => {
                let block = |domains: &[u8], ips: &[u8]| {
                    postings.iter().all(|p| match p {
                        Postings::Domain(k) => coarse::contains(domains, *k),
                        Postings::Ip(k) => coarse::contains(ips, *k),
                    })
                };
                let row = |app: i64, domain: Option<i64>| {
                    search.as_ref().is_none_or(|m| m.row(app, domain))
                };
                let mut best = BTreeSet::new();
                let has = |k| {
                    postings.iter().any(|p| {
                        matches!(
                            (p, k),
                            (Postings::Domain(_), Need::Domains) | (Postings::Ip(_), Need::Ips)
                        )
                    })
                };
                let need = match (has(Need::Domains), has(Need::Ips)) {
                    (true, false) => Need::Domains,
                    (false, true) => Need::Ips,
                    _ => Need::Both,
                };
                let scan = BlockScan {
                    need,
                    block: &block,
                    row: &row,
                };
                self.scan_blocks(&cond, &scan, before_ts, limit, &mut best)?;
                self.rows_by_keys(&best)?
            }
            None => self.fetch(&cond, limit_i)?,
            // Few names: each app's own index, and the blocks holding one of the domains.
            Some(m) if m.len() <= MERGE_MAX_KEYS => {
                let apps: Vec<i64> = m.apps.iter().copied().collect();
                let mut best = self.search_apps(&cond, &apps, limit)?;
                if !m.domains.is_empty() {
                    let wanted: Vec<u32> =
                        m.domains.iter().map(|d| coarse::domain_key(*d)).collect();
                    let block = |domains: &[u8], _: &[u8]| {
                        wanted.iter().any(|k| coarse::contains(domains, *k))
                    };
                    let row = |_: i64, domain: Option<i64>| {
                        domain.is_some_and(|d| m.domains.contains(&d))
                    };
                    let scan = BlockScan {
                        need: Need::Domains,
                        block: &block,
                        row: &row,
                    };
                    self.scan_blocks(&cond, &scan, before_ts, limit, &mut best)?;
                }
                self.rows_by_keys(&best)?
            }
            // Many names: the rows are dense, so walking time backwards finds a page soon;
            // bounded by the scan limit when they are not.
            Some(m) => {
                let (best, stop) = self.scan_time(&cond, &m, limit)?;
                stopped = stop;
                self.rows_by_keys(&best)?
            }
        };
        let next = if rows.len() == limit {
            rows.last().map(|r| Cursor {
                unix_ms: r.record.unix_ms,
                id: r.id,
            })
        } else {
            stopped
        };
        Ok(Page { rows, next })
    }

    fn fetch(&self, cond: &Where, limit: i64) -> Result<Vec<Row>, HistoryError> {
        let sql = format!(
            "{SELECT_ROW}{} ORDER BY e.ts DESC, e.id DESC LIMIT {limit}",
            cond.sql()
        );
        self.rows(&sql, &cond.params)
    }

    /// The newest `limit` `(ts, id)` keys of each app in `apps` through its own index.
    fn search_apps(
        &self,
        cond: &Where,
        apps: &[i64],
        limit: usize,
    ) -> Result<BTreeSet<(i64, i64)>, HistoryError> {
        let err = self.err("search rows");
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut best: BTreeSet<(i64, i64)> = BTreeSet::new();
        if apps.is_empty() {
            return Ok(best);
        }
        let mut c = Where {
            clauses: cond.clauses.clone(),
            params: cond.params.clone(),
        };
        let n = c.params.len() + 1;
        c.push_raw(format!("e.app_id = ?{n}"));
        let sql = format!(
            "SELECT e.ts, e.id FROM events e{} ORDER BY e.ts DESC, e.id DESC LIMIT {limit_i}",
            c.sql()
        );
        let mut stmt = self.conn().prepare_cached(&sql).map_err(&err)?;
        for id in apps {
            let mut params = c.params.clone();
            params.push(Value::Integer(*id));
            let mut rows = stmt.query(params_from_iter(params)).map_err(&err)?;
            while let Some(r) = rows.next().map_err(&err)? {
                let key: (i64, i64) = (r.get(0).map_err(&err)?, r.get(1).map_err(&err)?);
                // Rows come newest first: once one is older than the oldest kept of a full
                // set, the rest of this app's rows are too.
                if best.len() >= limit && best.first().is_some_and(|oldest| key <= *oldest) {
                    break;
                }
                best.insert(key);
                if best.len() > limit {
                    best.pop_first();
                }
            }
        }
        Ok(best)
    }

    /// The rows with these keys, newest first.
    fn rows_by_keys(&self, keys: &BTreeSet<(i64, i64)>) -> Result<Vec<Row>, HistoryError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = keys.iter().map(|(_, id)| *id).collect();
        let sql = format!(
            "{SELECT_ROW} WHERE e.id IN ({}) ORDER BY e.ts DESC, e.id DESC",
            id_list(&ids)
        );
        self.rows(&sql, &[])
    }

    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, HistoryError> {
        let err = self.err("read rows");
        let mut stmt = self.conn().prepare_cached(sql).map_err(&err)?;
        let mut rows = stmt.query(params_from_iter(params)).map_err(&err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(&err)? {
            out.push(self.row(r)?);
        }
        Ok(out)
    }

    fn row(&self, r: &rusqlite::Row<'_>) -> Result<Row, HistoryError> {
        let err = self.err("read a row");
        let id: i64 = r.get(0).map_err(&err)?;
        let bad = |column| HistoryError::BadRow {
            path: self.path().to_path_buf(),
            id,
            column,
        };
        let code = |i: usize| -> Result<i64, HistoryError> { r.get(i).map_err(&err) };
        let ip = |i: usize, column| -> Result<IpAddr, HistoryError> {
            let blob: Vec<u8> = r.get(i).map_err(&err)?;
            ip_from_blob(&blob).ok_or_else(|| bad(column))
        };
        let port = |i: usize, column| -> Result<Option<u16>, HistoryError> {
            let v: Option<i64> = r.get(i).map_err(&err)?;
            v.map(|p| u16::try_from(p).map_err(|_| bad(column)))
                .transpose()
        };
        let record = Record {
            kind: Kind::from_code(code(1)?).ok_or_else(|| bad("kind"))?,
            unix_ms: r.get(2).map_err(&err)?,
            app: r
                .get::<_, Option<String>>(3)
                .map_err(&err)?
                .ok_or_else(|| bad("app_id"))?,
            pid: r
                .get::<_, Option<i64>>(4)
                .map_err(&err)?
                .map(|p| u32::try_from(p).map_err(|_| bad("pid")))
                .transpose()?,
            exe: r.get(5).map_err(&err)?,
            direction: Direction::from_code(code(6)?).ok_or_else(|| bad("direction"))?,
            protocol: Protocol::from_code(code(7)?).ok_or_else(|| bad("protocol"))?,
            local: ip(8, "local_ip")?,
            local_port: port(9, "local_port")?,
            remote: ip(10, "remote_ip")?,
            remote_port: port(11, "remote_port")?,
            domain: r.get(12).map_err(&err)?,
            country: r.get(13).map_err(&err)?,
            asn: r
                .get::<_, Option<i64>>(14)
                .map_err(&err)?
                .map(|a| u32::try_from(a).map_err(|_| bad("asn")))
                .transpose()?,
            scope: Scope::from_code(code(15)?).ok_or_else(|| bad("scope"))?,
            verdict: Verdict::from_code(code(16)?).ok_or_else(|| bad("verdict"))?,
            explanation: r
                .get::<_, Option<String>>(17)
                .map_err(&err)?
                .ok_or_else(|| bad("explanation_id"))?,
            bytes_out: u64_of(code(18)?),
            bytes_in: u64_of(code(19)?),
            packets_out: u64_of(code(20)?),
            packets_in: u64_of(code(21)?),
            start_ms: r.get(22).map_err(&err)?,
            end_ms: r.get(23).map_err(&err)?,
        };
        Ok(Row { id, record })
    }

    /// Calls `each` for every row matching `filter`, newest first, reading `page` rows at a
    /// time (so memory stays bounded for any size of history).
    pub fn for_each<E: From<HistoryError>>(
        &self,
        filter: &Filter,
        page: usize,
        mut each: impl FnMut(Row) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut after = None;
        loop {
            let p = self.query(filter, after, page.max(1))?;
            for row in p.rows {
                each(row)?;
            }
            match p.next {
                Some(c) => after = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// The top `limit` apps, domains or countries among rows matching `filter`. Under the
    /// time limit.
    pub fn top(
        &self,
        by: TopBy,
        order: TopOrder,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<TopEntry>, HistoryError> {
        self.timed(|| self.top_list(by, order, filter, limit))
    }

    fn top_list(
        &self,
        by: TopBy,
        order: TopOrder,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<TopEntry>, HistoryError> {
        let mut cond = match self.resolve(filter)? {
            Resolved::Nothing => return Ok(Vec::new()),
            Resolved::Rows {
                mut cond, search, ..
            } => {
                if let Some(m) = search {
                    m.push_sql(&mut cond);
                }
                cond
            }
        };
        let (group, name) = match by {
            TopBy::App => ("e.app_id", "(SELECT key FROM apps WHERE id = g.k)"),
            TopBy::Domain => {
                cond.push_raw("e.domain_id IS NOT NULL".into());
                ("e.domain_id", "(SELECT name FROM domains WHERE id = g.k)")
            }
            TopBy::Country => {
                cond.push_raw("e.country IS NOT NULL".into());
                ("e.country", "g.k")
            }
        };
        let order = match order {
            TopOrder::Rows => "n DESC, bytes DESC",
            TopOrder::Bytes => "bytes DESC, n DESC",
        };
        let sql = format!(
            "SELECT {name}, g.n, g.blocked, g.bo, g.bi FROM (
                SELECT {group} AS k, count(*) AS n, sum(e.blocked) AS blocked,
                    sum(e.bytes_out) AS bo, sum(e.bytes_in) AS bi,
                    sum(e.bytes_out) + sum(e.bytes_in) AS bytes
                FROM events e{} GROUP BY {group} ORDER BY {order} LIMIT {}) g
             ORDER BY {order}",
            cond.sql(),
            i64::try_from(limit).unwrap_or(i64::MAX)
        );
        let err = self.err("compute a top list");
        let mut stmt = self.conn().prepare_cached(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(params_from_iter(cond.params.iter()), |r| {
                Ok(TopEntry {
                    key: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    rows: u64_of(r.get(1)?),
                    blocked: u64_of(r.get(2)?),
                    bytes_out: u64_of(r.get(3)?),
                    bytes_in: u64_of(r.get(4)?),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(&err)?;
        Ok(rows)
    }

    /// Bytes, packets and connections per app per bucket, for buckets starting in
    /// `[since_ms, until_ms)`, oldest first; one app or all. At most 100,000 points. Under
    /// the time limit.
    pub fn bandwidth(
        &self,
        since_ms: i64,
        until_ms: i64,
        bucket: Bucket,
        app: Option<&str>,
    ) -> Result<Vec<BandwidthPoint>, HistoryError> {
        self.timed(|| self.bandwidth_points(since_ms, until_ms, bucket, app))
    }

    fn bandwidth_points(
        &self,
        since_ms: i64,
        until_ms: i64,
        bucket: Bucket,
        app: Option<&str>,
    ) -> Result<Vec<BandwidthPoint>, HistoryError> {
        let app_id = match app {
            Some(key) => match self.dict_id("SELECT id FROM apps WHERE key = ?1", key)? {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let width = bucket.ms();
        // Each bucket width has its own rollup; `(b / width) * width` is the identity there,
        // and keeps one statement shape for both.
        let sql = match bucket {
            Bucket::Minute => {
                "SELECT (SELECT key FROM apps WHERE id = g.app_id), g.* FROM (
                    SELECT app_id, (minute / ?3) * ?3 AS b, sum(bytes_out), sum(bytes_in),
                        sum(packets_out), sum(packets_in), sum(connections)
                    FROM bandwidth_minute
                    WHERE minute >= ?1 AND minute < ?2 AND (?4 IS NULL OR app_id = ?4)
                    GROUP BY app_id, b) g
                ORDER BY g.b, 1 LIMIT 100000"
            }
            Bucket::Hour => {
                "SELECT (SELECT key FROM apps WHERE id = g.app_id), g.* FROM (
                    SELECT app_id, (hour / ?3) * ?3 AS b, sum(bytes_out), sum(bytes_in),
                        sum(packets_out), sum(packets_in), sum(connections)
                    FROM bandwidth_hour
                    WHERE hour >= ?1 AND hour < ?2 AND (?4 IS NULL OR app_id = ?4)
                    GROUP BY app_id, b) g
                ORDER BY g.b, 1 LIMIT 100000"
            }
        };
        let err = self.err("compute bandwidth");
        let mut stmt = self.conn().prepare_cached(sql).map_err(&err)?;
        let points = stmt
            .query_map(rusqlite::params![since_ms, until_ms, width, app_id], |r| {
                Ok(BandwidthPoint {
                    app: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    start_ms: r.get(2)?,
                    bytes_out: u64_of(r.get(3)?),
                    bytes_in: u64_of(r.get(4)?),
                    packets_out: u64_of(r.get(5)?),
                    packets_in: u64_of(r.get(6)?),
                    connections: u64_of(r.get(7)?),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(&err)?;
        Ok(points)
    }

    /// How many rows the database holds. Under the time limit.
    pub fn count(&self) -> Result<u64, HistoryError> {
        self.timed(|| {
            let n: i64 = self
                .conn()
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .map_err(self.err("count rows"))?;
            Ok(u64_of(n))
        })
    }
}
