//! The history database: opening it (moving a corrupt one aside and starting fresh), writing
//! batches of records, retention, and clearing. Queries live in `query.rs` on the same type.
//!
//! What it must never do: touch any file but its own database (and that database's `-wal`
//! and `-shm`). User settings live elsewhere and a corrupt history never affects them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::limits::Limit;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};

use crate::coarse::{self, BLOCK_SHIFT, BlockKeys};
use crate::migrations;
use crate::{HistoryError, Record, Traffic};

/// How many distinct strings each intern cache keeps before it starts over.
const INTERN_CACHE_MAX: usize = 65_536;
/// Rows deleted per statement by retention, so one pass never holds a huge transaction.
const DELETE_CHUNK: i64 = 20_000;
/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// WAL pages (4 KiB) between automatic checkpoints.
const WAL_CHECKPOINT_PAGES: i64 = 16_384;
/// How long a reader waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The page size of new databases. Larger pages than SQLite's 4 KiB mean fewer page splits
/// and WAL frames per batch (measured: about a tenth more rows/s); existing files keep theirs.
const PAGE_SIZE: i64 = 16_384;
/// The longest statement any connection accepts, in bytes. Every statement this crate makes
/// is far shorter (the longest lists one page of row ids); a longer one would be a bug that
/// turned a filter into a giant literal list, and fails instead of running slowly.
const SQL_LENGTH_MAX: i32 = 64 * 1024;
/// SQLite virtual machine steps between two looks at a read's deadline.
const PROGRESS_STEPS: i32 = 1_000;

/// Bounds on each read ([`Store::query`], [`Store::top`], [`Store::bandwidth`],
/// [`Store::count`]; each page of [`Store::for_each`]), so that no query from a client can
/// hold a reader for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// A read running longer is interrupted and fails with [`HistoryError::TimedOut`]
    /// (`None`: no limit).
    pub max_time: Option<Duration>,
    /// Most rows a search that matches many names examines for one page. Past it the page
    /// ends early, possibly short or empty, with a cursor to continue from.
    pub max_scan_rows: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_time: Some(Duration::from_secs(3)),
            max_scan_rows: 200_000,
        }
    }
}

/// The deadline of the read in progress, which SQLite's progress handler checks.
#[derive(Debug)]
struct Deadline {
    base: Instant,
    /// Microseconds after `base`, plus one; 0: no read in progress.
    at: AtomicU64,
}

impl Deadline {
    fn new() -> Self {
        Deadline {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn since_base(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    fn set(&self, limit: Option<Duration>) {
        let at = limit.map_or(0, |l| self.since_base(Instant::now() + l).saturating_add(1));
        self.at.store(at, Ordering::Relaxed);
    }

    fn passed(&self) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        at != 0 && self.since_base(Instant::now()).saturating_add(1) >= at
    }
}

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
    limits: ReadLimits,
    deadline: Arc<Deadline>,
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
        Store::wrap(conn, path)
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
        // Only takes effect when the file is new (empty).
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(sql("set page_size"))?;
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
        Store::wrap(conn, path)
    }

    /// Sets up what every connection has: the statement length cap and the read deadline.
    fn wrap(mut conn: Connection, path: &Path) -> Result<Store, HistoryError> {
        let sql = |what| {
            move |source| HistoryError::Sqlite {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, SQL_LENGTH_MAX)
            .map_err(sql("cap statement length"))?;
        let deadline = Arc::new(Deadline::new());
        let check = Arc::clone(&deadline);
        conn.progress_handler(PROGRESS_STEPS, Some(move || check.passed()))
            .map_err(sql("set the read deadline"))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            cache: Interned::default(),
            limits: ReadLimits::default(),
            deadline,
        })
    }

    /// Sets the bounds of each read on this connection (see [`ReadLimits`]).
    pub fn set_read_limits(&mut self, limits: ReadLimits) {
        self.limits = limits;
    }

    /// The bounds of each read on this connection.
    pub fn read_limits(&self) -> ReadLimits {
        self.limits
    }

    /// Runs one read under the time limit: SQLite interrupts it once the limit has passed,
    /// and the error says so.
    pub(crate) fn timed<T>(
        &self,
        read: impl FnOnce() -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        self.deadline.set(self.limits.max_time);
        let result = read();
        self.deadline.set(None);
        match result {
            Err(HistoryError::Sqlite { source, .. })
                if source.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) =>
            {
                Err(HistoryError::TimedOut {
                    path: self.path.clone(),
                    limit: self.limits.max_time.unwrap_or_default(),
                })
            }
            other => other,
        }
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
                     DELETE FROM blocks; DELETE FROM block_keys;
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
                 DELETE FROM blocks WHERE block <
                     coalesce((SELECT min(id) FROM events), 9223372036854775807) >> 12; -- BLOCK_SHIFT
                 DELETE FROM block_keys WHERE block NOT IN (SELECT block FROM blocks);
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

/// Width of a per-minute rollup bucket, in ms.
const MINUTE_MS: i64 = 60_000;
/// Width of a per-hour rollup bucket, in ms.
const HOUR_MS: i64 = 3_600_000;
/// Most minutes one connection's bytes are spread over in the per-minute rollup: its last
/// day. Bytes it carried before that are left out of the per-minute rollup (they are in the
/// hourly one), which bounds the work per connection.
const SPREAD_MINUTES_MAX: i64 = 1_440;
/// Most hours one connection's bytes are spread over in the per-hour rollup: its last 92
/// days (the longest range the helper serves by the hour). Earlier bytes are left out.
const SPREAD_HOURS_MAX: i64 = 92 * 24;

/// What a connection carried.
#[derive(Debug, Default, Clone, Copy)]
struct Amounts {
    bytes_out: i64,
    bytes_in: i64,
    packets_out: i64,
    packets_in: i64,
}

impl Amounts {
    fn is_zero(&self) -> bool {
        self.bytes_out == 0 && self.bytes_in == 0 && self.packets_out == 0 && self.packets_in == 0
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    bytes_out: i64,
    bytes_in: i64,
    packets_out: i64,
    packets_in: i64,
    connections: i64,
}

impl Totals {
    fn add(&mut self, a: &Amounts) {
        self.bytes_out = self.bytes_out.saturating_add(a.bytes_out);
        self.bytes_in = self.bytes_in.saturating_add(a.bytes_in);
        self.packets_out = self.packets_out.saturating_add(a.packets_out);
        self.packets_in = self.packets_in.saturating_add(a.packets_in);
    }
}

/// Per-app totals per minute and per hour, gathered for one batch.
#[derive(Debug, Default)]
struct Rollup {
    minutes: HashMap<(i64, i64), Totals>,
    hours: HashMap<(i64, i64), Totals>,
}

impl Rollup {
    /// Counts one connection of `app_id` open from `start` to `end` (in both rollups), in
    /// the bucket of its last moment.
    fn connection(&mut self, app_id: i64, start: i64, end: i64) {
        let t = last_moment(start, end);
        for (map, width) in [(&mut self.minutes, MINUTE_MS), (&mut self.hours, HOUR_MS)] {
            map.entry((t.div_euclid(width) * width, app_id))
                .or_default()
                .connections += 1;
        }
    }

    /// Adds what a connection of `app_id` carried from `start` to `end` to both rollups,
    /// spread over their buckets in proportion to the time it was open in each.
    fn carried(&mut self, app_id: i64, start: i64, end: i64, a: &Amounts) {
        if a.is_zero() {
            return;
        }
        spread(
            &mut self.minutes,
            app_id,
            start,
            end,
            MINUTE_MS,
            SPREAD_MINUTES_MAX,
            a,
        );
        spread(
            &mut self.hours,
            app_id,
            start,
            end,
            HOUR_MS,
            SPREAD_HOURS_MAX,
            a,
        );
    }
}

/// The last moment a connection open over `[start, end)` was open (its end, if it had no
/// duration).
fn last_moment(start: i64, end: i64) -> i64 {
    if end > start { end - 1 } else { end }
}

/// Adds `a`, carried from `start` to `end`, to the buckets of `width` ms it overlaps, each in
/// proportion to the overlap, over at most `max_buckets` buckets ending with `end`'s (what
/// was carried before them is left out: the share of each bucket stays its true one). The
/// split is exact: each bucket gets `⌊total·(b−s)/d⌋ − ⌊total·(a−s)/d⌋` of its `[a, b)`, so the
/// buckets of a connection seen whole sum to its total. A connection with no duration (or
/// an end before its start) counts wholly at its end.
fn spread(
    map: &mut HashMap<(i64, i64), Totals>,
    app_id: i64,
    start: i64,
    end: i64,
    width: i64,
    max_buckets: i64,
    a: &Amounts,
) {
    let last = last_moment(start, end).div_euclid(width);
    if start >= end || start.div_euclid(width) == last {
        map.entry((last * width, app_id)).or_default().add(a);
        return;
    }
    let first = start.div_euclid(width).max(last - (max_buckets - 1));
    let d = i128::from(end) - i128::from(start);
    // The part of `total` carried before `t` (clamped to the connection).
    let cum = |total: i64, t: i64| -> i64 {
        let t = t.clamp(start, end);
        let part = i128::from(total) * (i128::from(t) - i128::from(start)) / d;
        i64::try_from(part).unwrap_or(i64::MAX)
    };
    for k in first..=last {
        let (lo, hi) = (k * width, (k + 1) * width);
        let share = |total: i64| cum(total, hi) - cum(total, lo);
        let part = Amounts {
            bytes_out: share(a.bytes_out),
            bytes_in: share(a.bytes_in),
            packets_out: share(a.packets_out),
            packets_in: share(a.packets_in),
        };
        if !part.is_zero() {
            map.entry((lo, app_id)).or_default().add(&part);
        }
    }
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
    let mut rollup = Rollup::default();
    let mut keys: HashMap<i64, BlockKeys> = HashMap::new();
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
            let k = keys.entry(block).or_default();
            if let Some(d) = domain_id {
                k.domains.push(coarse::domain_key(d));
            }
            k.ips.push(coarse::ip_key(&remote));
            let range = blocks.entry(block).or_insert((r.unix_ms, r.unix_ms));
            range.0 = range.0.min(r.unix_ms);
            range.1 = range.1.max(r.unix_ms);
            // Bytes over the time the connection was open; the connection at its end.
            let (start, end) = (
                r.start_ms.unwrap_or(r.unix_ms),
                r.end_ms.unwrap_or(r.unix_ms),
            );
            rollup.carried(
                app_id,
                start,
                end,
                &Amounts {
                    bytes_out: to_i64(r.bytes_out),
                    bytes_in: to_i64(r.bytes_in),
                    packets_out: to_i64(r.packets_out),
                    packets_in: to_i64(r.packets_in),
                },
            );
            if r.kind == crate::Kind::Connection {
                rollup.connection(app_id, start, end);
            }
        }
        for (block, k) in keys {
            coarse::merge(&tx, block, k)?;
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

/// Adds a batch's per-app totals to the minute and hour rollups.
fn upsert_rollup(tx: &Transaction<'_>, rollup: &Rollup) -> rusqlite::Result<()> {
    for (sql, map) in [
        (
            "INSERT INTO bandwidth_minute
                (minute, app_id, bytes_out, bytes_in, packets_out, packets_in, connections)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (minute, app_id) DO UPDATE SET
                bytes_out = bytes_out + excluded.bytes_out,
                bytes_in = bytes_in + excluded.bytes_in,
                packets_out = packets_out + excluded.packets_out,
                packets_in = packets_in + excluded.packets_in,
                connections = connections + excluded.connections",
            &rollup.minutes,
        ),
        (
            "INSERT INTO bandwidth_hour
                (hour, app_id, bytes_out, bytes_in, packets_out, packets_in, connections)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (hour, app_id) DO UPDATE SET
                bytes_out = bytes_out + excluded.bytes_out,
                bytes_in = bytes_in + excluded.bytes_in,
                packets_out = packets_out + excluded.packets_out,
                packets_in = packets_in + excluded.packets_in,
                connections = connections + excluded.connections",
            &rollup.hours,
        ),
    ] {
        let mut upsert = tx.prepare_cached(sql)?;
        for ((bucket, app_id), t) in map {
            upsert.execute(params![
                bucket,
                app_id,
                t.bytes_out,
                t.bytes_in,
                t.packets_out,
                t.packets_in,
                t.connections
            ])?;
        }
    }
    Ok(())
}

/// How far back a connection's row is looked for when its traffic is reported: connections
/// open longer than this keep their bytes in the app's bandwidth only.
const TRAFFIC_WINDOW_MS: i64 = 7 * 86_400_000;

/// Writes what ended connections carried into their rows (the newest open row of the app
/// with the same ports and remote address) and into the bandwidth rollups, spread over the
/// time from the row's start to the end. Returns how many rows were found. A connection
/// whose row is not found still counts in its app's bandwidth, at the minute it ended; an
/// app history has never seen is left out.
fn add_traffic_batch(conn: &mut Connection, items: &[Traffic]) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    let mut rollup = Rollup::default();
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
                ORDER BY ts DESC, id DESC LIMIT 1)
             RETURNING coalesce(start_ms, ts)",
        )?;
        for t in items {
            let Some(app_id): Option<i64> = app.query_row([&t.app], |r| r.get(0)).optional()?
            else {
                continue;
            };
            let start: Option<i64> = update
                .query_row(
                    params![
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
                        // Bounded: a report whose row is gone (lost, retention) never walks
                        // the app's whole history.
                        t.end_ms.saturating_sub(TRAFFIC_WINDOW_MS),
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            found += u64::from(start.is_some());
            rollup.carried(
                app_id,
                start.unwrap_or(t.end_ms),
                t.end_ms,
                &Amounts {
                    bytes_out: to_i64(t.bytes_out),
                    bytes_in: to_i64(t.bytes_in),
                    packets_out: to_i64(t.packets_out),
                    packets_in: to_i64(t.packets_in),
                },
            );
        }
        upsert_rollup(&tx, &rollup)?;
    }
    tx.commit()?;
    Ok(found)
}
