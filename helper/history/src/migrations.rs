//! Forward-only schema migrations of the history database. Each entry brings the schema from
//! version N to N+1 in one transaction; entries are never edited once released, only added.
//!
//! Layout (version 1), and why:
//! - `events` holds one row per connection or DNS query. Repeated strings (app keys, domains,
//!   explanations, executable paths) are interned into dictionary tables, so a row is mostly
//!   small integers and the per-app and per-domain indexes are on integers.
//! - `events` has only two secondary indexes, `(ts)` and `(app_id, ts)`, whose inserts land
//!   at (or near) the right edge of the b-tree: measured here, each index whose inserts land
//!   at random places (per domain, per address) cost more than the table itself, and five
//!   indexes cut batched inserts from ~600k to ~100k rows/s.
//! - Domains and remote addresses get a coarse index instead: `domain_blocks` and
//!   `ip_blocks` say which blocks of 4,096 row ids hold a name or an address (one entry per
//!   distinct key per block, written once per batch), and `blocks` keeps each block's time
//!   range. A query by domain or address scans only those blocks, newest first.
//! - Substring search runs over the dictionaries (distinct apps and domains, far fewer than
//!   rows) through FTS5 trigram indexes, then reads rows through `(app_id, ts)` and the
//!   domain blocks; it never scans all of `events`.
//! - Both indexes on `events` end in `ts` (and, implicitly, the rowid), so "newest first"
//!   pages with a `(ts, id)` keyset cursor are index walks that stop after one page.
//! - `blocked` splits rows into the two retention classes; age retention walks `(ts)`.
//! - `bandwidth_minute` and `bandwidth_hour` are per-app rollups maintained by the writer
//!   (one upsert per app and bucket per batch), so bytes per app over a day reads at most 24
//!   rows per app (or 1,440 by the minute) instead of every connection.

use std::path::Path;

use rusqlite::Connection;

use crate::HistoryError;

/// Migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE apps (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
    CREATE TABLE domains (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE texts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
    CREATE VIRTUAL TABLE apps_fts USING fts5(
        key, content='apps', content_rowid='id', tokenize='trigram');
    CREATE VIRTUAL TABLE domains_fts USING fts5(
        name, content='domains', content_rowid='id', tokenize='trigram');
    CREATE TRIGGER apps_ai AFTER INSERT ON apps BEGIN
        INSERT INTO apps_fts (rowid, key) VALUES (new.id, new.key);
    END;
    CREATE TRIGGER apps_ad AFTER DELETE ON apps BEGIN
        INSERT INTO apps_fts (apps_fts, rowid, key) VALUES ('delete', old.id, old.key);
    END;
    CREATE TRIGGER domains_ai AFTER INSERT ON domains BEGIN
        INSERT INTO domains_fts (rowid, name) VALUES (new.id, new.name);
    END;
    CREATE TRIGGER domains_ad AFTER DELETE ON domains BEGIN
        INSERT INTO domains_fts (domains_fts, rowid, name) VALUES ('delete', old.id, old.name);
    END;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        app_id INTEGER NOT NULL,
        pid INTEGER,
        exe_id INTEGER,
        direction INTEGER NOT NULL,
        protocol INTEGER NOT NULL,
        local_ip BLOB NOT NULL,
        local_port INTEGER,
        remote_ip BLOB NOT NULL,
        remote_port INTEGER,
        domain_id INTEGER,
        country TEXT,
        asn INTEGER,
        scope INTEGER NOT NULL,
        verdict INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        explanation_id INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        packets_out INTEGER NOT NULL,
        packets_in INTEGER NOT NULL,
        start_ms INTEGER,
        end_ms INTEGER
    );
    CREATE INDEX events_ts ON events (ts);
    CREATE INDEX events_app ON events (app_id, ts);
    CREATE TABLE blocks (
        block INTEGER PRIMARY KEY,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL
    );
    CREATE TABLE domain_blocks (
        domain_id INTEGER NOT NULL,
        block INTEGER NOT NULL,
        PRIMARY KEY (domain_id, block)
    ) WITHOUT ROWID;
    CREATE TABLE ip_blocks (
        ip BLOB NOT NULL,
        block INTEGER NOT NULL,
        PRIMARY KEY (ip, block)
    ) WITHOUT ROWID;
    CREATE TABLE bandwidth_minute (
        minute INTEGER NOT NULL,
        app_id INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        packets_out INTEGER NOT NULL,
        packets_in INTEGER NOT NULL,
        connections INTEGER NOT NULL,
        PRIMARY KEY (minute, app_id)
    ) WITHOUT ROWID;
    CREATE INDEX bandwidth_app ON bandwidth_minute (app_id, minute);
    CREATE TABLE bandwidth_hour (
        hour INTEGER NOT NULL,
        app_id INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        packets_out INTEGER NOT NULL,
        packets_in INTEGER NOT NULL,
        connections INTEGER NOT NULL,
        PRIMARY KEY (hour, app_id)
    ) WITHOUT ROWID;
    CREATE INDEX bandwidth_hour_app ON bandwidth_hour (app_id, hour);",
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Applies every migration after `found`. A database from a newer release is refused.
pub fn migrate(conn: &mut Connection, path: &Path, found: i64) -> Result<(), HistoryError> {
    if found > CURRENT {
        return Err(HistoryError::TooNew {
            path: path.to_path_buf(),
            found,
            known: CURRENT,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        let fail = |source| HistoryError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}
