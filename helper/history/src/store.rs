//! The history database: opening it (moving a corrupt one aside and starting fresh), writing
//! batches of records, retention, and clearing. Queries live in `query.rs` on the same type.
//!
//! What it must never do: touch any file but its own database (and that database's `-wal`
//! and `-shm`). User settings live elsewhere and a corrupt history never affects them.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};

use crate::migrations;
use crate::{HistoryError, Record, Traffic};

/// How many distinct strings each intern cache keeps before it starts over.
const INTERN_CACHE_MAX: usize = 65_536;
/// Rows deleted per statement by retention, so one pass never holds a huge transaction.
const DELETE_CHUNK: i64 = 20_000;
/// Row ids per block of the coarse domain and address indexes: `block = id >> BLOCK_SHIFT`.
pub(crate) const BLOCK_SHIFT: i64 = 12;
/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// WAL pages (4 KiB) between automatic checkpoints.
const WAL_CHECKPOINT_PAGES: i64 = 16_384;
/// How long a reader waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How thoroughly [`Store::open`] checks an existing database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Read the header and the schema only (instant).
    #[default]
    Schema,
    /// Also run `PRAGMA quick_check` (reads every page: about a second per GB).
    QuickCheck,
}

/// Retention for one class of rows (allowed or blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassRetention {
    /// Rows older than this are removed.
    pub max_age: Option<Duration>,
    /// Beyond this many rows, the oldest are removed.
    pub max_rows: Option<u64>,
}

/// What retention keeps. Allowed and blocked rows are kept separately: a user may want a
/// year of blocks and a week of everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Rows whose verdict was allow.
    pub allowed: ClassRetention,
    /// Rows whose verdict was block or drop.
    pub blocked: ClassRetention,
    /// The per-app per-minute bandwidth rollup.
    pub bandwidth_max_age: Option<Duration>,
}

/// What a retention pass or a clear removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removed {
    /// Connection and DNS rows.
    pub rows: u64,
    /// Per-app per-minute bandwidth rows.
    pub bandwidth_rows: u64,
}

/// What to clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clear {
    /// Everything one app did (rows and bandwidth).
    App(String),
    /// The whole history.
    All,
}

/// An open history database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    cache: Interned,
}

/// Ids of strings already in the dictionary tables, so a batch rarely looks them up.
#[derive(Debug, Default)]
struct Interned {
    apps: HashMap<String, i64>,
    domains: HashMap<String, i64>,
    texts: HashMap<String, i64>,
}

impl Interned {
    fn clear(&mut self) {
        self.apps.clear();
        self.domains.clear();
        self.texts.clear();
    }
}

/// A dictionary table.
#[derive(Debug, Clone, Copy)]
enum Dict {
    Apps,
    Domains,
    Texts,
}

impl Dict {
    fn select(self) -> &'static str {
        match self {
            Dict::Apps => "SELECT id FROM apps WHERE key = ?1",
            Dict::Domains => "SELECT id FROM domains WHERE name = ?1",
            Dict::Texts => "SELECT id FROM texts WHERE text = ?1",
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Dict::Apps => "INSERT INTO apps (key) VALUES (?1)",
            Dict::Domains => "INSERT INTO domains (name) VALUES (?1)",
            Dict::Texts => "INSERT INTO texts (text) VALUES (?1)",
        }
    }
}

/// The database opened, and where a corrupt predecessor went, if one was moved aside.
#[derive(Debug)]
pub struct Opened {
    /// The database.
    pub store: Store,
    /// The corrupt file that was renamed before a fresh database was started.
    pub moved_aside: Option<PathBuf>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Counters are `u64` in records and `INTEGER` (i64) in SQLite: values past `i64::MAX`
/// (never seen in practice) are stored as `i64::MAX`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn ip_to_blob(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

pub(crate) fn ip_from_blob(blob: &[u8]) -> Option<IpAddr> {
    if let Ok(b) = <[u8; 4]>::try_from(blob) {
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    } else if let Ok(b) = <[u8; 16]>::try_from(blob) {
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        None
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether SQLite says the file is not a database or is damaged.
pub(crate) fn is_corrupt(e: &HistoryError) -> bool {
    let code = match e {
        HistoryError::Corrupt { .. } => return true,
        HistoryError::Sqlite { source, .. } | HistoryError::Migrate { source, .. } => {
            source.sqlite_error_code()
        }
        _ => None,
    };
    matches!(
        code,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Renames `path` (and its `-wal`; its `-shm` is only an index and is removed) to
/// `<path>.corrupt-<unix ms>` and returns the new name.
fn move_aside(path: &Path) -> Result<PathBuf, HistoryError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{}", now_ms()));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|source| HistoryError::MoveAside {
        path: path.to_path_buf(),
        aside: aside.clone(),
        source,
    })?;
    let side = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    // Best effort: a leftover WAL would be replayed into the fresh database otherwise, so it
    // goes with the file it belongs to; failing that, it is removed.
    let wal = side(path, "-wal");
    if wal.exists() && std::fs::rename(&wal, side(&aside, "-wal")).is_err() {
        let _ = std::fs::remove_file(&wal);
    }
    let _ = std::fs::remove_file(side(path, "-shm"));
    Ok(aside)
}

impl Store {
    /// Opens (creating if needed) the history database at `path` and brings its schema up to
    /// date. A file that is not a database or is damaged is renamed with a timestamp, an
    /// error is logged, and a fresh database is started: history is expendable, enforcement
    /// is not. Other failures (permissions, a newer schema) are returned as errors and the
    /// file is left alone.
    pub fn open(path: &Path, verify: Verify) -> Result<Opened, HistoryError> {
        match Self::open_rw(path, verify) {
            Ok(store) => Ok(Opened {
                store,
                moved_aside: None,
            }),
            Err(e) if is_corrupt(&e) => {
                let aside = move_aside(path)?;
                tracing::error!(
                    error = %e,
                    aside = %aside.display(),
                    "history database is corrupt; moved it aside and started a fresh one"
                );
                let store = Self::open_rw(path, Verify::Schema)?;
                Ok(Opened {
                    store,
                    moved_aside: Some(aside),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the database at `path` aside (it was found corrupt while in use) and starts a
    /// fresh one.
    pub fn move_aside_and_open(path: &Path) -> Result<Opened, HistoryError> {
        let aside = move_aside(path)?;
        tracing::error!(
            aside = %aside.display(),
            "history database turned out corrupt; moved it aside and started a fresh one"
        );
        let store = Self::open_rw(path, Verify::Schema)?;
        Ok(Opened {
            store,
            moved_aside: Some(aside),
        })
    }

    /// Opens an existing database for queries only. Readers never block the writer (WAL).
    pub fn open_reader(path: &Path) -> Result<Store, HistoryError> {
        let sql = |what| {
            move |source| HistoryError::Sqlite {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set busy timeout"))?;
        conn.pragma_update(None, "query_only", true)
            .map_err(sql("set query_only"))?;
        conn.set_prepared_statement_cache_capacity(64);
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql("read schema version"))?;
        if found != migrations::CURRENT {
            return Err(HistoryError::TooNew {
                path: path.to_path_buf(),
                found,
                known: migrations::CURRENT,
            });
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            cache: Interned::default(),
        })
    }

    fn open_rw(path: &Path, verify: Verify) -> Result<Store, HistoryError> {
        let sql = |what| {
            move |source| HistoryError::Sqlite {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let mut conn = Connection::open(path).map_err(sql("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set busy timeout"))?;
        // The first statement that reads the header: a file that is not SQLite fails here.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sql("enable WAL"))?;
        // NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the file.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("set synchronous"))?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(sql("set temp_store"))?;
        // Index inserts land all over the per-app, per-domain and per-address indexes; a
        // page cache that holds their hot pages is what makes batches fast. Bounded.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(sql("set cache_size"))?;
        // Checkpoint less often than the default 1,000 pages: a hot index page rewritten by
        // many batches is copied into the database once per checkpoint, not once per batch.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(sql("set wal_autocheckpoint"))?;
        conn.set_prepared_statement_cache_capacity(64);
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql("read schema version"))?;
        migrations::migrate(&mut conn, path, found)?;
        // Reads the schema and the right edge of the main table: cheap, and catches most
        // damage that a header check cannot.
        let _: Option<i64> = conn
            .query_row("SELECT max(id) FROM events", [], |r| r.get(0))
            .map_err(sql("read the events table"))?;
        if verify == Verify::QuickCheck {
            let result: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(sql("check integrity"))?;
            if result != "ok" {
                return Err(HistoryError::Corrupt {
                    path: path.to_path_buf(),
                    detail: result,
                });
            }
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            cache: Interned::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn err(
        &self,
        what: &'static str,
    ) -> impl Fn(rusqlite::Error) -> HistoryError + use<> {
        let path = self.path.clone();
        move |source| HistoryError::Sqlite {
            path: path.clone(),
            what,
            source,
        }
    }

    /// Caps the database file at about `bytes`: past it, inserts fail (counted by the writer)
    /// while queries, retention and clearing go on, and the space retention frees is reused.
    /// A history flood can thus never fill the disk the settings live on.
    pub fn set_max_bytes(&mut self, bytes: u64) -> Result<(), HistoryError> {
        let err = self.err("cap the database size");
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(&err)?;
        let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page.max(512);
        self.conn
            .pragma_update(None, "max_page_count", pages.max(64))
            .map_err(&err)?;
        Ok(())
    }

    /// Writes `records` in one transaction, and adds their bytes to the per-minute rollup.
    /// On failure nothing of the batch is written.
    pub fn insert(&mut self, records: &[Record]) -> Result<(), HistoryError> {
        let err = self.err("write a batch");
        let result = insert_batch(&mut self.conn, &mut self.cache, records);
        if result.is_err() {
            // Ids interned by the rolled-back transaction do not exist.
            self.cache.clear();
        }
        result.map_err(err)
    }

    /// Writes what ended connections carried (see [`Traffic`]) in one transaction; returns
    /// how many of them had a row. On failure nothing of the batch is written.
    pub fn add_traffic(&mut self, items: &[Traffic]) -> Result<u64, HistoryError> {
        let err = self.err("write connections' traffic");
        add_traffic_batch(&mut self.conn, items).map_err(err)
    }

    /// Removes rows past the retention limits; `now_ms` is the current time.
    pub fn apply_retention(
        &mut self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<Removed, HistoryError> {
        let err = self.err("apply retention");
        let mut removed = Removed::default();
        for (blocked, class) in [(false, &retention.allowed), (true, &retention.blocked)] {
            if let Some(age) = class.max_age {
                let cutoff = now_ms.saturating_sub(ms(age));
                loop {
                    let n = self
                        .conn
                        .prepare_cached(
                            "DELETE FROM events WHERE id IN (SELECT id FROM events
                             WHERE blocked = ?1 AND ts < ?2 LIMIT ?3)",
                        )
                        .and_then(|mut s| s.execute(params![blocked, cutoff, DELETE_CHUNK]))
                        .map_err(&err)?;
                    removed.rows += n as u64;
                    if i64::try_from(n).unwrap_or(i64::MAX) < DELETE_CHUNK {
                        break;
                    }
                }
            }
            if let Some(max) = class.max_rows {
                let count: i64 = self
                    .conn
                    .prepare_cached("SELECT count(*) FROM events WHERE blocked = ?1")
                    .and_then(|mut s| s.query_row([blocked], |r| r.get(0)))
                    .map_err(&err)?;
                let mut excess = count.saturating_sub(to_i64(max));
                while excess > 0 {
                    let n = self
                        .conn
                        .prepare_cached(
                            "DELETE FROM events WHERE id IN (SELECT id FROM events
                             WHERE blocked = ?1 ORDER BY ts, id LIMIT ?2)",
                        )
                        .and_then(|mut s| s.execute(params![blocked, excess.min(DELETE_CHUNK)]))
                        .map_err(&err)?;
                    if n == 0 {
                        break;
                    }
                    removed.rows += n as u64;
                    excess = excess.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
        }
        if let Some(age) = retention.bandwidth_max_age {
            let cutoff = now_ms.saturating_sub(ms(age));
            let n = self
                .conn
                .execute("DELETE FROM bandwidth_minute WHERE minute < ?1", [cutoff])
                .map_err(&err)?;
            // An hour is kept while any of it is within the limit.
            let h = self
                .conn
                .execute(
                    "DELETE FROM bandwidth_hour WHERE hour < ?1 - 3600000",
                    [cutoff],
                )
                .map_err(&err)?;
            removed.bandwidth_rows = (n + h) as u64;
        }
        if removed.rows > 0 || removed.bandwidth_rows > 0 {
            self.collect_garbage()?;
        }
        Ok(removed)
    }

    /// Removes one app's history, or all of it. Deleted content is overwritten
    /// (`secure_delete`) and the WAL is truncated, so "clear" does not leave the data in free
    /// pages of the file.
    pub fn clear(&mut self, what: &Clear) -> Result<Removed, HistoryError> {
        let err = self.err("clear history");
        self.conn
            .pragma_update(None, "secure_delete", true)
            .map_err(&err)?;
        let result = self.clear_inner(what);
        let reset = self
            .conn
            .pragma_update(None, "secure_delete", false)
            .map_err(&err);
        let removed = result?;
        reset?;
        let _: (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(&err)?;
        Ok(removed)
    }

    fn clear_inner(&mut self, what: &Clear) -> Result<Removed, HistoryError> {
        let err = self.err("clear history");
        let mut removed = Removed::default();
        match what {
            Clear::All => {
                let tx = self.conn.transaction().map_err(&err)?;
                removed.rows = tx.execute("DELETE FROM events", []).map_err(&err)? as u64;
                removed.bandwidth_rows = (tx
                    .execute("DELETE FROM bandwidth_minute", [])
                    .map_err(&err)?
                    + tx.execute("DELETE FROM bandwidth_hour", []).map_err(&err)?)
                    as u64;
                tx.execute_batch(
                    "DELETE FROM apps; DELETE FROM domains; DELETE FROM texts;
                     DELETE FROM blocks; DELETE FROM domain_blocks; DELETE FROM ip_blocks;
                     INSERT INTO apps_fts (apps_fts) VALUES ('rebuild');
                     INSERT INTO domains_fts (domains_fts) VALUES ('rebuild');",
                )
                .map_err(&err)?;
                tx.commit().map_err(&err)?;
                self.cache.clear();
            }
            Clear::App(key) => {
                let tx = self.conn.transaction().map_err(&err)?;
                let id: Option<i64> = tx
                    .query_row("SELECT id FROM apps WHERE key = ?1", [key], |r| r.get(0))
                    .optional()
                    .map_err(&err)?;
                if let Some(id) = id {
                    removed.rows = tx
                        .execute("DELETE FROM events WHERE app_id = ?1", [id])
                        .map_err(&err)? as u64;
                    removed.bandwidth_rows = (tx
                        .execute("DELETE FROM bandwidth_minute WHERE app_id = ?1", [id])
                        .map_err(&err)?
                        + tx.execute("DELETE FROM bandwidth_hour WHERE app_id = ?1", [id])
                            .map_err(&err)?) as u64;
                }
                tx.commit().map_err(&err)?;
                self.collect_garbage()?;
            }
        }
        Ok(removed)
    }

    /// Removes dictionary entries no row refers to any more (after retention or a clear), so
    /// a cleared domain is not left findable by search.
    fn collect_garbage(&mut self) -> Result<(), HistoryError> {
        let err = self.err("remove unused names");
        self.conn
            .execute_batch(
                "BEGIN;
                 DELETE FROM domains WHERE id NOT IN
                     (SELECT domain_id FROM events WHERE domain_id IS NOT NULL);
                 DELETE FROM domain_blocks WHERE domain_id NOT IN (SELECT id FROM domains);
                 DELETE FROM blocks WHERE block <
                     coalesce((SELECT min(id) FROM events), 9223372036854775807) >> 12; -- BLOCK_SHIFT
                 DELETE FROM domain_blocks WHERE block < (SELECT coalesce(min(block), 0) FROM blocks)
                     OR NOT EXISTS (SELECT 1 FROM blocks);
                 DELETE FROM ip_blocks WHERE block < (SELECT coalesce(min(block), 0) FROM blocks)
                     OR NOT EXISTS (SELECT 1 FROM blocks);
                 DELETE FROM apps WHERE NOT EXISTS
                     (SELECT 1 FROM events WHERE app_id = apps.id)
                   AND NOT EXISTS (SELECT 1 FROM bandwidth_minute WHERE app_id = apps.id)
                   AND NOT EXISTS (SELECT 1 FROM bandwidth_hour WHERE app_id = apps.id);
                 DELETE FROM texts WHERE id NOT IN
                     (SELECT explanation_id FROM events
                      UNION SELECT exe_id FROM events WHERE exe_id IS NOT NULL);
                 COMMIT;",
            )
            .map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                err(e)
            })?;
        self.cache.clear();
        Ok(())
    }
}

/// The rollup bucket of a record: the minute its bytes were counted in (its end, or when it
/// was decided).
fn minute_of(r: &Record) -> i64 {
    let t = r.end_ms.unwrap_or(r.unix_ms);
    t.div_euclid(60_000) * 60_000
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    bytes_out: i64,
    bytes_in: i64,
    packets_out: i64,
    packets_in: i64,
    connections: i64,
}

fn intern(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, i64>,
    dict: Dict,
    value: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(value) {
        return Ok(*id);
    }
    let found: Option<i64> = tx
        .prepare_cached(dict.select())?
        .query_row([value], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached(dict.insert())?.execute([value])?;
            tx.last_insert_rowid()
        }
    };
    if cache.len() >= INTERN_CACHE_MAX {
        cache.clear();
    }
    cache.insert(value.to_owned(), id);
    Ok(id)
}

fn insert_batch(
    conn: &mut Connection,
    cache: &mut Interned,
    records: &[Record],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut rollup: HashMap<(i64, i64), Totals> = HashMap::new();
    let mut domain_blocks: HashSet<(i64, i64)> = HashSet::new();
    let mut ip_blocks: HashSet<(Vec<u8>, i64)> = HashSet::new();
    let mut blocks: HashMap<i64, (i64, i64)> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (kind, ts, app_id, pid, exe_id, direction, protocol,
                local_ip, local_port, remote_ip, remote_port, domain_id, country, asn, scope,
                verdict, blocked, explanation_id, bytes_out, bytes_in, packets_out,
                packets_in, start_ms, end_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        )?;
        for r in records {
            let app_id = intern(&tx, &mut cache.apps, Dict::Apps, &r.app)?;
            let exe_id = match &r.exe {
                Some(exe) => Some(intern(&tx, &mut cache.texts, Dict::Texts, exe)?),
                None => None,
            };
            let domain_id = match &r.domain {
                Some(d) => Some(intern(&tx, &mut cache.domains, Dict::Domains, d)?),
                None => None,
            };
            let explanation_id = intern(&tx, &mut cache.texts, Dict::Texts, &r.explanation)?;
            let remote = ip_to_blob(r.remote);
            insert.execute(params![
                r.kind.code(),
                r.unix_ms,
                app_id,
                r.pid,
                exe_id,
                r.direction.code(),
                r.protocol.code(),
                ip_to_blob(r.local),
                r.local_port,
                remote,
                r.remote_port,
                domain_id,
                r.country,
                r.asn,
                r.scope.code(),
                r.verdict.code(),
                r.verdict.is_blocked(),
                explanation_id,
                to_i64(r.bytes_out),
                to_i64(r.bytes_in),
                to_i64(r.packets_out),
                to_i64(r.packets_in),
                r.start_ms,
                r.end_ms,
            ])?;
            let block = tx.last_insert_rowid() >> BLOCK_SHIFT;
            if let Some(d) = domain_id {
                domain_blocks.insert((d, block));
            }
            ip_blocks.insert((remote, block));
            let range = blocks.entry(block).or_insert((r.unix_ms, r.unix_ms));
            range.0 = range.0.min(r.unix_ms);
            range.1 = range.1.max(r.unix_ms);
            let t = rollup.entry((minute_of(r), app_id)).or_default();
            t.bytes_out = t.bytes_out.saturating_add(to_i64(r.bytes_out));
            t.bytes_in = t.bytes_in.saturating_add(to_i64(r.bytes_in));
            t.packets_out = t.packets_out.saturating_add(to_i64(r.packets_out));
            t.packets_in = t.packets_in.saturating_add(to_i64(r.packets_in));
            if r.kind == crate::Kind::Connection {
                t.connections += 1;
            }
        }
        let mut posting =
            tx.prepare_cached("INSERT OR IGNORE INTO domain_blocks VALUES (?1, ?2)")?;
        for (d, b) in &domain_blocks {
            posting.execute(params![d, b])?;
        }
        let mut posting = tx.prepare_cached("INSERT OR IGNORE INTO ip_blocks VALUES (?1, ?2)")?;
        for (ip, b) in &ip_blocks {
            posting.execute(params![ip, b])?;
        }
        let mut range = tx.prepare_cached(
            "INSERT INTO blocks (block, min_ts, max_ts) VALUES (?1, ?2, ?3)
             ON CONFLICT (block) DO UPDATE SET
                min_ts = min(min_ts, excluded.min_ts), max_ts = max(max_ts, excluded.max_ts)",
        )?;
        for (b, (lo, hi)) in &blocks {
            range.execute(params![b, lo, hi])?;
        }
        upsert_rollup(&tx, &rollup)?;
    }
    tx.commit()
}

/// Adds per-app per-minute totals to the minute and hour rollups.
fn upsert_rollup(
    tx: &Transaction<'_>,
    rollup: &HashMap<(i64, i64), Totals>,
) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO bandwidth_minute
            (minute, app_id, bytes_out, bytes_in, packets_out, packets_in, connections)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (minute, app_id) DO UPDATE SET
            bytes_out = bytes_out + excluded.bytes_out,
            bytes_in = bytes_in + excluded.bytes_in,
            packets_out = packets_out + excluded.packets_out,
            packets_in = packets_in + excluded.packets_in,
            connections = connections + excluded.connections",
    )?;
    let mut hourly: HashMap<(i64, i64), Totals> = HashMap::new();
    for ((minute, app_id), t) in rollup {
        upsert.execute(params![
            minute,
            app_id,
            t.bytes_out,
            t.bytes_in,
            t.packets_out,
            t.packets_in,
            t.connections
        ])?;
        let h = hourly
            .entry((minute.div_euclid(3_600_000) * 3_600_000, *app_id))
            .or_default();
        h.bytes_out = h.bytes_out.saturating_add(t.bytes_out);
        h.bytes_in = h.bytes_in.saturating_add(t.bytes_in);
        h.packets_out = h.packets_out.saturating_add(t.packets_out);
        h.packets_in = h.packets_in.saturating_add(t.packets_in);
        h.connections += t.connections;
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO bandwidth_hour
            (hour, app_id, bytes_out, bytes_in, packets_out, packets_in, connections)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (hour, app_id) DO UPDATE SET
            bytes_out = bytes_out + excluded.bytes_out,
            bytes_in = bytes_in + excluded.bytes_in,
            packets_out = packets_out + excluded.packets_out,
            packets_in = packets_in + excluded.packets_in,
            connections = connections + excluded.connections",
    )?;
    for ((hour, app_id), t) in &hourly {
        upsert.execute(params![
            hour,
            app_id,
            t.bytes_out,
            t.bytes_in,
            t.packets_out,
            t.packets_in,
            t.connections
        ])?;
    }
    Ok(())
}

/// How far back a connection's row is looked for when its traffic is reported: connections
/// open longer than this keep their bytes in the app's bandwidth only.
const TRAFFIC_WINDOW_MS: i64 = 7 * 86_400_000;

/// Writes what ended connections carried into their rows (the newest open row of the app
/// with the same ports and remote address) and into the bandwidth rollups, at the minute
/// each ended. Returns how many rows were found. A connection whose row is not found still
/// counts in its app's bandwidth; an app history has never seen is left out.
fn add_traffic_batch(conn: &mut Connection, items: &[Traffic]) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    let mut rollup: HashMap<(i64, i64), Totals> = HashMap::new();
    let mut found = 0;
    {
        let mut app = tx.prepare_cached(Dict::Apps.select())?;
        let mut update = tx.prepare_cached(
            "UPDATE events SET bytes_out = ?1, bytes_in = ?2, packets_out = ?3,
                packets_in = ?4, end_ms = ?5
             WHERE id = (SELECT id FROM events
                WHERE app_id = ?6 AND ts <= ?5 AND ts >= ?11 AND kind = 0 AND end_ms IS NULL
                    AND protocol = ?7 AND local_port = ?8 AND remote_port = ?9
                    AND remote_ip = ?10
                ORDER BY ts DESC, id DESC LIMIT 1)",
        )?;
        for t in items {
            let Some(app_id): Option<i64> = app.query_row([&t.app], |r| r.get(0)).optional()?
            else {
                continue;
            };
            found += update.execute(params![
                to_i64(t.bytes_out),
                to_i64(t.bytes_in),
                to_i64(t.packets_out),
                to_i64(t.packets_in),
                t.end_ms,
                app_id,
                t.protocol.code(),
                t.local_port,
                t.remote_port,
                ip_to_blob(t.remote),
                // Bounded: a report whose row is gone (lost, retention) never walks the app's
                // whole history.
                t.end_ms.saturating_sub(TRAFFIC_WINDOW_MS),
            ])? as u64;
            let r = rollup
                .entry((t.end_ms.div_euclid(60_000) * 60_000, app_id))
                .or_default();
            r.bytes_out = r.bytes_out.saturating_add(to_i64(t.bytes_out));
            r.bytes_in = r.bytes_in.saturating_add(to_i64(t.bytes_in));
            r.packets_out = r.packets_out.saturating_add(to_i64(t.packets_out));
            r.packets_in = r.packets_in.saturating_add(to_i64(t.packets_in));
        }
        upsert_rollup(&tx, &rollup)?;
    }
    tx.commit()?;
    Ok(found)
}
