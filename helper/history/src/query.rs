//! Reading history: filtered pages (newest first, keyset cursors), substring search over
//! domains and apps, top lists, and bandwidth per app over time.
//!
//! Every query is bounded: a page by app or with no key filter is an index walk that stops
//! after `limit` rows; a page by domain or address scans only the blocks of 4,096 rows the
//! coarse index names, newest first, and stops when no older block can hold a newer row;
//! substring search finds the matching apps and domains in their (small) trigram-indexed
//! dictionaries and then does both. Bandwidth reads the per-minute rollup. Nothing here
//! writes.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::store::{BLOCK_SHIFT, ip_from_blob, ip_to_blob};
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

/// What the filter resolved to before touching `events`.
enum Resolved {
    /// Nothing can match (an unknown app or domain, a search with no hits).
    Nothing,
    /// The conditions, the ids a search matched, and the coarse-index lookups that bound
    /// which blocks of rows can match.
    Rows {
        cond: Where,
        search: Option<(Vec<i64>, Vec<i64>)>,
        postings: Vec<Postings>,
        by_app: bool,
    },
}

/// A coarse-index lookup: the blocks holding a domain or an address.
enum Postings {
    Domain(i64),
    Ip(Vec<u8>),
}

/// A block of row ids and its time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Block {
    block: i64,
    min_ts: i64,
    max_ts: i64,
}

impl Store {
    fn dict_id(&self, sql: &str, key: &str) -> Result<Option<i64>, HistoryError> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(self.err("look up a name"))
    }

    /// Ids of apps and domains containing `needle`.
    fn search_ids(&self, needle: &str) -> Result<(Vec<i64>, Vec<i64>), HistoryError> {
        let err = self.err("search names");
        let run = |sql: &str, arg: String| -> Result<Vec<i64>, HistoryError> {
            let mut stmt = self.conn().prepare_cached(sql).map_err(&err)?;
            let ids = stmt
                .query_map([arg], |r| r.get(0))
                .and_then(|rows| rows.collect::<Result<Vec<i64>, _>>())
                .map_err(&err)?;
            Ok(ids)
        };
        // The trigram index needs three characters; shorter needles scan the dictionaries,
        // which hold distinct names only.
        if needle.chars().count() >= 3 {
            let phrase = fts_phrase(needle);
            Ok((
                run(
                    "SELECT rowid FROM apps_fts WHERE apps_fts MATCH ?1",
                    phrase.clone(),
                )?,
                run(
                    "SELECT rowid FROM domains_fts WHERE domains_fts MATCH ?1",
                    phrase,
                )?,
            ))
        } else {
            let pattern = like_pattern(needle);
            Ok((
                run(
                    "SELECT id FROM apps WHERE key LIKE ?1 ESCAPE '\\'",
                    pattern.clone(),
                )?,
                run(
                    "SELECT id FROM domains WHERE name LIKE ?1 ESCAPE '\\'",
                    pattern,
                )?,
            ))
        }
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
                    postings.push(Postings::Domain(id));
                }
                None => return Ok(Resolved::Nothing),
            }
        }
        if let Some(ip) = f.ip {
            w.push("e.remote_ip = ?", Value::Blob(ip_to_blob(ip)));
            postings.push(Postings::Ip(ip_to_blob(ip)));
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
                let (apps, domains) = self.search_ids(needle)?;
                if apps.is_empty() && domains.is_empty() {
                    return Ok(Resolved::Nothing);
                }
                Some((apps, domains))
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

    /// The blocks that can hold rows matching every lookup in `postings`.
    fn candidate_blocks(&self, postings: &[Postings]) -> Result<Vec<Block>, HistoryError> {
        let err = self.err("read the coarse index");
        let mut result: Option<HashSet<Block>> = None;
        for p in postings {
            let (sql, arg) = match p {
                Postings::Domain(id) => (
                    "SELECT b.block, b.min_ts, b.max_ts FROM domain_blocks p
                     JOIN blocks b ON b.block = p.block WHERE p.domain_id = ?1",
                    Value::Integer(*id),
                ),
                Postings::Ip(ip) => (
                    "SELECT b.block, b.min_ts, b.max_ts FROM ip_blocks p
                     JOIN blocks b ON b.block = p.block WHERE p.ip = ?1",
                    Value::Blob(ip.clone()),
                ),
            };
            let mut stmt = self.conn().prepare_cached(sql).map_err(&err)?;
            let found: HashSet<Block> = stmt
                .query_map([arg], |r| {
                    Ok(Block {
                        block: r.get(0)?,
                        min_ts: r.get(1)?,
                        max_ts: r.get(2)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<_, _>>())
                .map_err(&err)?;
            result = Some(match result {
                None => found,
                Some(prev) => prev.intersection(&found).copied().collect(),
            });
        }
        Ok(result.map(|s| s.into_iter().collect()).unwrap_or_default())
    }

    /// The blocks holding any of `domains`.
    fn domain_blocks(&self, domains: &[i64]) -> Result<Vec<Block>, HistoryError> {
        let err = self.err("read the coarse index");
        let sql = format!(
            "SELECT DISTINCT b.block, b.min_ts, b.max_ts FROM domain_blocks p
             JOIN blocks b ON b.block = p.block WHERE p.domain_id IN ({})",
            id_list(domains)
        );
        let mut stmt = self.conn().prepare(&sql).map_err(&err)?;
        let blocks = stmt
            .query_map([], |r| {
                Ok(Block {
                    block: r.get(0)?,
                    min_ts: r.get(1)?,
                    max_ts: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(&err)?;
        Ok(blocks)
    }

    /// The newest `limit` `(ts, id)` keys matching `cond` (and `extra`) in `blocks`, newest
    /// block first; stops once no remaining block can hold a newer row.
    fn scan_blocks(
        &self,
        cond: &Where,
        extra: Option<&str>,
        mut blocks: Vec<Block>,
        before_ts: Option<i64>,
        limit: usize,
        best: &mut BTreeSet<(i64, i64)>,
    ) -> Result<(), HistoryError> {
        let err = self.err("scan blocks");
        blocks.sort_by(|a, b| b.max_ts.cmp(&a.max_ts).then(b.block.cmp(&a.block)));
        let mut c = Where {
            clauses: cond.clauses.clone(),
            params: cond.params.clone(),
        };
        let lo = c.params.len() + 1;
        c.push_raw(format!("e.id BETWEEN ?{lo} AND ?{}", lo + 1));
        if let Some(extra) = extra {
            c.push_raw(extra.to_owned());
        }
        // NOT INDEXED: read the block through its rowid range, never through `(ts)`.
        let sql = format!("SELECT e.ts, e.id FROM events e NOT INDEXED{}", c.sql());
        let mut stmt = self.conn().prepare_cached(&sql).map_err(&err)?;
        for b in blocks {
            if best.len() >= limit && best.first().is_some_and(|oldest| b.max_ts < oldest.0) {
                break;
            }
            if before_ts.is_some_and(|t| b.min_ts > t) {
                continue;
            }
            let mut params = c.params.clone();
            params.push(Value::Integer(b.block << BLOCK_SHIFT));
            params.push(Value::Integer(((b.block + 1) << BLOCK_SHIFT) - 1));
            let mut rows = stmt.query(params_from_iter(params)).map_err(&err)?;
            while let Some(r) = rows.next().map_err(&err)? {
                best.insert((r.get(0).map_err(&err)?, r.get(1).map_err(&err)?));
                if best.len() > limit {
                    best.pop_first();
                }
            }
        }
        Ok(())
    }

    /// One page of rows matching `filter`, newest first, starting after `after`.
    pub fn query(
        &self,
        filter: &Filter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
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
        let search_cond = |(apps, domains): &(Vec<i64>, Vec<i64>)| {
            format!(
                "(+e.app_id IN ({}) OR +e.domain_id IN ({}))",
                id_list(apps),
                id_list(domains)
            )
        };
        let before_ts = after.map(|c| c.unix_ms);
        let rows = match search {
            // One app's index bounds everything else: the other filters are checked on it.
            _ if by_app => {
                if let Some(s) = &search {
                    cond.push_raw(search_cond(s));
                }
                self.fetch(&cond, limit_i)?
            }
            // A domain or an address: only the blocks that hold it.
            _ if !postings.is_empty() => {
                let blocks = self.candidate_blocks(&postings)?;
                let extra = search.as_ref().map(search_cond);
                let mut best = BTreeSet::new();
                self.scan_blocks(&cond, extra.as_deref(), blocks, before_ts, limit, &mut best)?;
                self.rows_by_keys(&best)?
            }
            None => self.fetch(&cond, limit_i)?,
            Some((apps, domains)) if apps.len() + domains.len() <= MERGE_MAX_KEYS => {
                let mut best = self.search_apps(&cond, &apps, limit)?;
                if !domains.is_empty() {
                    let blocks = self.domain_blocks(&domains)?;
                    let extra = format!("e.domain_id IN ({})", id_list(&domains));
                    self.scan_blocks(&cond, Some(&extra), blocks, before_ts, limit, &mut best)?;
                }
                self.rows_by_keys(&best)?
            }
            Some((apps, domains)) => {
                // Unary `+` keeps these off the per-key indexes: walk time backwards.
                cond.push_raw(format!(
                    "(+e.app_id IN ({}) OR +e.domain_id IN ({}))",
                    id_list(&apps),
                    id_list(&domains)
                ));
                self.fetch(&cond, limit_i)?
            }
        };
        let next = if rows.len() == limit {
            rows.last().map(|r| Cursor {
                unix_ms: r.record.unix_ms,
                id: r.id,
            })
        } else {
            None
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

    /// The top `limit` apps, domains or countries among rows matching `filter`.
    pub fn top(
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
                if let Some((apps, domains)) = search {
                    cond.push_raw(format!(
                        "(e.app_id IN ({}) OR e.domain_id IN ({}))",
                        id_list(&apps),
                        id_list(&domains)
                    ));
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
    /// `[since_ms, until_ms)`, oldest first; one app or all. At most 100,000 points.
    pub fn bandwidth(
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

    /// How many rows the database holds.
    pub fn count(&self) -> Result<u64, HistoryError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .map_err(self.err("count rows"))?;
        Ok(u64_of(n))
    }
}
