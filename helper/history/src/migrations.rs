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
//!   domain blocks, or (when many names match) walks time backwards for at most a set
//!   number of rows per page.
//! - Both indexes on `events` end in `ts` (and, implicitly, the rowid), so "newest first"
//!   pages with a `(ts, id)` keyset cursor are index walks that stop after one page.
//! - `blocked` splits rows into the two retention classes; age retention walks `(ts)`.
//! - `bandwidth_minute` and `bandwidth_hour` are per-app rollups maintained by the writer
//!   (one upsert per app and bucket per batch), so bytes per app over a day reads at most 24
//!   rows per app (or 1,440 by the minute) instead of every connection.
//!
//! Version 2: the coarse index is one blob of keys per block (`block_keys`, see
//! `coarse.rs`) instead of the `(key, block)` tables `domain_blocks` and `ip_blocks`, whose
//! random inserts cost as much as the rows themselves; new files use 16 KiB pages.

use std::path::Path;

use rusqlite::{Connection, Transaction};

use crate::HistoryError;

/// One schema step: SQL, then (optionally) code that moves data, then more SQL.
struct Step {
    before: &'static str,
    run: Option<fn(&Transaction<'_>) -> rusqlite::Result<()>>,
    after: &'static str,
}

/// The schema of version 1, as released.
pub(crate) const V1: &str = "CREATE TABLE apps (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
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
    CREATE INDEX bandwidth_hour_app ON bandwidth_hour (app_id, hour);";

/// Migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[Step] = &[
    // 0 → 1
    Step {
        before: V1,
        run: None,
        after: "",
    },
    // 1 → 2: the coarse index as one blob per block.
    Step {
        before: "CREATE TABLE block_keys (
            block INTEGER PRIMARY KEY,
            domains BLOB NOT NULL,
            ips BLOB NOT NULL
        );",
        run: Some(crate::coarse::migrate_from_postings),
        after: "DROP TABLE domain_blocks; DROP TABLE ip_blocks;",
    },
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
    for (i, step) in MIGRATIONS
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
        tx.execute_batch(step.before).map_err(fail)?;
        if let Some(run) = step.run {
            run(&tx).map_err(fail)?;
        }
        tx.execute_batch(step.after).map_err(fail)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rusqlite::params;

    use super::*;
    use crate::{Filter, Store, Verify};

    /// A database as version 1 wrote it: its schema, and rows in two blocks with their
    /// `(key, block)` postings.
    fn v1_database(path: &Path) -> Vec<(i64, String, [u8; 4])> {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(V1).unwrap();
        conn.execute_batch(
            "INSERT INTO apps (id, key) VALUES (1, '/usr/bin/curl'), (2, '/usr/bin/wget');
             INSERT INTO domains (id, name) VALUES (1, 'example.com'), (2, 'example.org');
             INSERT INTO texts (id, text) VALUES (1, 'allowed by default');",
        )
        .unwrap();
        let mut rows = Vec::new();
        // Ids 1..3 in block 0, 5000..5002 in block 1.
        for (n, id) in [1_i64, 2, 3, 5_000, 5_001, 5_002].into_iter().enumerate() {
            let n = i64::try_from(n).unwrap();
            let domain = 1 + n % 2;
            let ip = [192, 0, 2, u8::try_from(10 + n).unwrap()];
            conn.execute(
                "INSERT INTO events (id, kind, ts, app_id, direction, protocol, local_ip,
                    local_port, remote_ip, remote_port, domain_id, scope, verdict, blocked,
                    explanation_id, bytes_out, bytes_in, packets_out, packets_in, start_ms)
                 VALUES (?1, 0, ?2, ?3, 0, 0, ?4, 40000, ?5, 443, ?6, 2, 0, 0, 1, 10, 20, 1, 2,
                    ?2)",
                params![
                    id,
                    1_000 * id,
                    1 + n % 2,
                    vec![10_u8, 0, 0, 2],
                    ip.to_vec(),
                    domain
                ],
            )
            .unwrap();
            let block = id >> 12;
            conn.execute(
                "INSERT OR IGNORE INTO domain_blocks VALUES (?1, ?2)",
                params![domain, block],
            )
            .unwrap();
            conn.execute(
                "INSERT OR IGNORE INTO ip_blocks VALUES (?1, ?2)",
                params![ip.to_vec(), block],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO blocks VALUES (?1, ?2, ?2)
                 ON CONFLICT (block) DO UPDATE SET max_ts = excluded.max_ts",
                params![block, 1_000 * id],
            )
            .unwrap();
            let name = if domain == 1 {
                "example.com"
            } else {
                "example.org"
            };
            rows.push((id, name.to_owned(), ip));
        }
        conn.pragma_update(None, "user_version", 1).unwrap();
        rows
    }

    #[test]
    fn a_version_1_database_is_upgraded_and_its_rows_stay_findable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite3");
        let rows = v1_database(&path);
        let opened = Store::open(&path, Verify::QuickCheck).unwrap();
        assert!(opened.moved_aside.is_none());
        let store = opened.store;
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT);
        let old_tables: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master
                 WHERE name IN ('domain_blocks', 'ip_blocks')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_tables, 0);
        assert_eq!(store.count().unwrap(), 6);
        // Every row is found again by its domain and by its address, through the new index.
        for (id, domain, ip) in &rows {
            let by_domain = store
                .query(
                    &Filter {
                        domain: Some(domain.clone()),
                        ..Filter::default()
                    },
                    None,
                    100,
                )
                .unwrap();
            assert!(
                by_domain.rows.iter().any(|r| r.id == *id),
                "{id} by {domain}"
            );
            assert_eq!(by_domain.rows.len(), 3);
            let by_ip = store
                .query(
                    &Filter {
                        ip: Some(IpAddr::V4(Ipv4Addr::from(*ip))),
                        ..Filter::default()
                    },
                    None,
                    100,
                )
                .unwrap();
            assert_eq!(
                by_ip.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
                vec![*id]
            );
            assert_eq!(
                by_ip.rows[0].record.app,
                if id % 2 == 1 {
                    "/usr/bin/curl"
                } else {
                    "/usr/bin/wget"
                }
                .to_owned()
            );
        }
        let keys: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM block_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, 2);
    }
}
