//! Forward-only schema migrations of the settings database. Each entry brings the schema from
//! version N to N+1 in one transaction; entries are never edited once released, only added.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: profiles, their settings, their ordered rules; the global and special profiles.
    "CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    );
    CREATE TABLE settings (
        profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (profile_id, key)
    );
    CREATE TABLE rules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        until_restart INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX rules_by_profile ON rules (profile_id, position);
    INSERT INTO profiles (key, kind, name, created_ms, last_seen_ms) VALUES
        ('global', 'global', 'Global settings', 0, 0),
        ('system:kernel', 'kernel', 'Kernel and unattributed traffic', 0, 0),
        ('system:dns', 'system_dns', 'System DNS client', 0, 0);",
    // 1 → 2: rules that live until a process exits ("until the app quits" answers); they
    // also have until_restart set, so a restart ends them whatever their process does.
    "ALTER TABLE rules ADD COLUMN until_pid INTEGER;
    ALTER TABLE rules ADD COLUMN until_pid_start INTEGER;",
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Applies every migration after `found`. A database from a newer release is refused.
pub fn migrate(conn: &mut Connection, path: &Path, found: i64) -> Result<(), StoreError> {
    if found > CURRENT {
        return Err(StoreError::TooNew {
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
        let fail = |source| StoreError::Migrate {
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
