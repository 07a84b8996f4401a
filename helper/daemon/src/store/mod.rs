//! The settings database: profiles, their settings and their rules, in SQLite under the state
//! directory. Every change is one transaction, so a crash never leaves half a change. The
//! schema is versioned (`PRAGMA user_version`) with forward-only migrations (`migrations.rs`).
//!
//! What it must never do: reset, drop or "repair" user data. A database it cannot read, one
//! from a newer release, or a stored rule or setting that no longer parses stops the helper
//! with an error that names the file and the problem, and the file stays as it was.

mod migrations;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis_policy::{Overrides, Rule, StoredRule};
use portcullis_protocol::{
    AppInfo, AppKind, RuleInfo, RuleLifetime, RuleOwner, SettingKey, SettingValue,
};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

/// The key of the global profile in the database. App keys are absolute paths or
/// `system:…`, so this cannot collide with one.
const GLOBAL_KEY: &str = "global";
/// The special profile for traffic of the kernel or of no process we could find.
pub const KERNEL_KEY: &str = "system:kernel";
/// The special profile for the system's DNS client.
pub const SYSTEM_DNS_KEY: &str = "system:dns";

/// Why the settings database could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite could not open or read the file (missing permissions, not a database, corrupt).
    #[error("cannot use settings database {path}: {source}; the file was left untouched")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer Portcullis; we must not touch it.
    #[error(
        "settings database {path} has schema version {found}, newer than this portcullisd \
         understands ({known}); install the newer release or restore a backup"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version we know.
        known: i64,
    },
    /// A schema migration failed; the transaction was rolled back.
    #[error("cannot upgrade settings database {path} to schema version {version}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version being applied.
        version: i64,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored rule no longer parses (a hand edit or a bug); nothing was changed.
    #[error("settings database {path}: rule {id} of {profile} is invalid: {message}")]
    BadRule {
        /// The database file.
        path: PathBuf,
        /// The rule's id.
        id: i64,
        /// Its profile's key.
        profile: String,
        /// The parser's message.
        message: String,
    },
    /// A stored setting no longer parses; nothing was changed.
    #[error("settings database {path}: setting {key} of {profile} is invalid: {message}")]
    BadSetting {
        /// The database file.
        path: PathBuf,
        /// The stored key.
        key: String,
        /// Its profile's key.
        profile: String,
        /// What was wrong.
        message: String,
    },
    /// A query or write failed; the transaction was rolled back.
    #[error("settings database {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },
}

/// A profile to create in the same transaction as a change to it, if it does not exist, so
/// that a failed change never leaves a new, empty profile behind.
#[derive(Debug, Clone, Copy)]
pub struct NewApp<'a> {
    /// Its kind.
    pub kind: AppKind,
    /// Its name for people.
    pub name: &'a str,
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// One profile with its settings and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    /// As clients see it (for the global profile only the times and counts mean anything).
    pub info: AppInfo,
    /// Settings it overrides.
    pub overrides: Overrides,
    /// Its rules in order, as clients see them.
    pub rules: Vec<RuleInfo>,
    /// The same rules parsed, as the decision engine reads them (same order).
    pub compiled: Vec<StoredRule>,
}

/// Everything in the database, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The global profile.
    pub global: ProfileRow,
    /// App profiles by key.
    pub apps: BTreeMap<String, ProfileRow>,
}

/// An open settings database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Whether `open` made the schema (a new database).
    created: bool,
}

/// Maps an SQLite error of this database to [`StoreError::Sql`] naming the file.
fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

fn kind_to_sql(kind: AppKind) -> &'static str {
    match kind {
        AppKind::Executable => "executable",
        AppKind::Kernel => "kernel",
        AppKind::SystemDns => "system_dns",
    }
}

fn kind_from_sql(kind: &str) -> Option<AppKind> {
    match kind {
        "executable" => Some(AppKind::Executable),
        "kernel" => Some(AppKind::Kernel),
        "system_dns" => Some(AppKind::SystemDns),
        _ => None,
    }
}

fn owner_key(owner: &RuleOwner) -> &str {
    match owner {
        RuleOwner::Global => GLOBAL_KEY,
        RuleOwner::App(key) => key,
    }
}

fn owner_of(key: &str) -> RuleOwner {
    if key == GLOBAL_KEY {
        RuleOwner::Global
    } else {
        RuleOwner::App(key.to_string())
    }
}

fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_from_sql(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        // Reading the schema version is the first real read: a file that is not a database
        // fails here, before anything is written to it.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .map_err(open_err)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            created: version == 0,
        };
        migrations::migrate(&mut store.conn, &store.path, version)?;
        Ok(store)
    }

    /// Whether [`Store::open`] created this database (it had no schema yet).
    pub fn created(&self) -> bool {
        self.created
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
        sql_err(&self.path)
    }

    /// Loads and validates every profile, setting and rule.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let keys: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT key FROM profiles ORDER BY id")
                .map_err(self.sql())?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(self.sql())?;
            rows.collect::<Result<_, _>>().map_err(self.sql())?
        };
        let mut global = None;
        let mut apps = BTreeMap::new();
        for key in keys {
            let Some(row) = self.load_profile_row(&key)? else {
                continue;
            };
            if key == GLOBAL_KEY {
                global = Some(row);
            } else {
                apps.insert(key, row);
            }
        }
        let global = global.ok_or_else(|| StoreError::Sql {
            path: self.path.clone(),
            source: rusqlite::Error::QueryReturnedNoRows,
        })?;
        Ok(Snapshot { global, apps })
    }

    /// Loads one profile by key (`None`: no such profile). For the global profile use
    /// [`Store::load_owner`].
    fn load_profile_row(&self, key: &str) -> Result<Option<ProfileRow>, StoreError> {
        let head = self
            .conn
            .query_row(
                "SELECT id, kind, name, created_ms, last_seen_ms FROM profiles WHERE key = ?1",
                [key],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(self.sql())?;
        let Some((id, kind, name, created, last_seen)) = head else {
            return Ok(None);
        };
        let kind = if key == GLOBAL_KEY {
            AppKind::Executable
        } else {
            kind_from_sql(&kind).ok_or_else(|| StoreError::BadSetting {
                path: self.path.clone(),
                key: "kind".into(),
                profile: key.into(),
                message: format!("unknown profile kind `{kind}`"),
            })?
        };

        let mut overrides = Overrides::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM settings WHERE profile_id = ?1 ORDER BY key")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.sql())?;
        for row in rows {
            let (k, v) = row.map_err(self.sql())?;
            let bad = |message: String| StoreError::BadSetting {
                path: self.path.clone(),
                key: k.clone(),
                profile: key.into(),
                message,
            };
            let setting: SettingKey = k.parse().map_err(|e| bad(format!("{e}")))?;
            let value: SettingValue =
                serde_json::from_str(&v).map_err(|e| bad(format!("value `{v}`: {e}")))?;
            value.check(setting).map_err(|e| bad(e.message))?;
            overrides.insert(setting, value);
        }
        drop(stmt);

        let owner = owner_of(key);
        let mut rules = Vec::new();
        let mut compiled = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, position, text, created_ms, expires_ms, until_restart, until_pid, \
                 until_pid_start FROM rules WHERE profile_id = ?1 ORDER BY position",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(self.sql())?;
        for row in rows {
            let (rule_id, position, text, created, expires, until_restart, pid, pid_start) =
                row.map_err(self.sql())?;
            let rule: Rule =
                text.parse()
                    .map_err(|e: portcullis_policy::RuleError| StoreError::BadRule {
                        path: self.path.clone(),
                        id: rule_id,
                        profile: key.into(),
                        message: e.to_string(),
                    })?;
            let lifetime = match (expires, until_restart) {
                (_, true) => match (pid, pid_start) {
                    (Some(pid), Some(start)) => RuleLifetime::UntilExit {
                        pid: u32::try_from(pid).unwrap_or(0),
                        start_time: u64::try_from(start).unwrap_or(0),
                    },
                    _ => RuleLifetime::UntilRestart,
                },
                (Some(ms), false) => RuleLifetime::Until {
                    unix_ms: ms_from_sql(ms),
                },
                (None, false) => RuleLifetime::Forever,
            };
            rules.push(RuleInfo {
                id: rule_id,
                owner: owner.clone(),
                position: u32::try_from(position).unwrap_or(u32::MAX),
                text: rule.to_string(),
                lifetime,
                created_unix_ms: ms_from_sql(created),
            });
            compiled.push(StoredRule {
                id: Some(rule_id),
                rule,
            });
        }
        drop(stmt);

        let info = AppInfo {
            key: key.to_string(),
            kind,
            name,
            created_unix_ms: ms_from_sql(created),
            last_seen_unix_ms: ms_from_sql(last_seen),
            overrides: u32::try_from(overrides.len()).unwrap_or(u32::MAX),
            rules: u32::try_from(rules.len()).unwrap_or(u32::MAX),
        };
        Ok(Some(ProfileRow {
            info,
            overrides,
            rules,
            compiled,
        }))
    }

    /// Loads the profile that owns a rule list (`None`: no such app).
    pub fn load_owner(&self, owner: &RuleOwner) -> Result<Option<ProfileRow>, StoreError> {
        self.load_profile_row(owner_key(owner))
    }

    fn profile_id(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<i64>> {
        tx.query_row("SELECT id FROM profiles WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
    }

    /// Creates `owner`'s profile inside `tx` if it is an app without one and `create` says how.
    fn create_in(
        tx: &Transaction<'_>,
        owner: &RuleOwner,
        create: Option<&NewApp<'_>>,
    ) -> rusqlite::Result<()> {
        if let (RuleOwner::App(key), Some(new)) = (owner, create) {
            tx.execute(
                "INSERT INTO profiles (key, kind, name, created_ms, last_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(key) DO NOTHING",
                params![key, kind_to_sql(new.kind), new.name, ms_to_sql(new.now_ms)],
            )?;
        }
        Ok(())
    }

    /// Deletes the app profile without rules and settings that was created or changed least
    /// recently, and returns its key; `None` when every app profile is configured. Special
    /// profiles are never deleted.
    pub fn evict_unconfigured(&mut self) -> Result<Option<String>, StoreError> {
        let sql = sql_err(&self.path);
        self.conn
            .query_row(
                "DELETE FROM profiles WHERE id = (\
                   SELECT p.id FROM profiles p WHERE p.kind = 'executable' \
                   AND NOT EXISTS (SELECT 1 FROM rules r WHERE r.profile_id = p.id) \
                   AND NOT EXISTS (SELECT 1 FROM settings s WHERE s.profile_id = p.id) \
                   ORDER BY p.last_seen_ms, p.id LIMIT 1) \
                 RETURNING key",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)
    }

    /// Makes sure an app profile exists; returns whether it was created.
    pub fn ensure_app(
        &mut self,
        key: &str,
        kind: AppKind,
        name: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let sql = sql_err(&self.path);
        let n = self
            .conn
            .execute(
                "INSERT INTO profiles (key, kind, name, created_ms, last_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(key) DO NOTHING",
                params![key, kind_to_sql(kind), name, ms_to_sql(now_ms)],
            )
            .map_err(sql)?;
        Ok(n == 1)
    }

    /// Sets (`Some`) or clears (`None`) a setting of the profile `owner`, which must exist.
    /// Returns false when it does not.
    #[cfg(test)]
    pub fn set_setting(
        &mut self,
        owner: &RuleOwner,
        key: SettingKey,
        value: Option<&SettingValue>,
    ) -> Result<bool, StoreError> {
        self.set_setting_creating(owner, key, value, None)
    }

    /// As [`Store::set_setting`], creating the app's profile first (same transaction) when
    /// `create` is given and it does not exist.
    pub fn set_setting_creating(
        &mut self,
        owner: &RuleOwner,
        key: SettingKey,
        value: Option<&SettingValue>,
        create: Option<&NewApp<'_>>,
    ) -> Result<bool, StoreError> {
        let sql = sql_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        Self::create_in(&tx, owner, create).map_err(sql)?;
        let Some(id) = Self::profile_id(&tx, owner_key(owner)).map_err(sql)? else {
            return Ok(false);
        };
        match value {
            Some(v) => {
                let json = serde_json::to_string(v).map_err(|e| StoreError::BadSetting {
                    path: self.path.clone(),
                    key: key.to_string(),
                    profile: owner_key(owner).into(),
                    message: e.to_string(),
                })?;
                tx.execute(
                    "INSERT INTO settings (profile_id, key, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(profile_id, key) DO UPDATE SET value = excluded.value",
                    params![id, key.as_str(), json],
                )
                .map_err(sql)?;
            }
            None => {
                tx.execute(
                    "DELETE FROM settings WHERE profile_id = ?1 AND key = ?2",
                    params![id, key.as_str()],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    /// Inserts a rule (already parsed and in canonical text) into `owner`'s list at the
    /// 1-based `position` (`None` or past the end: last). Returns its id, or `None` when the
    /// owner does not exist.
    #[cfg(test)]
    pub fn add_rule(
        &mut self,
        owner: &RuleOwner,
        rule: &Rule,
        position: Option<u32>,
        lifetime: RuleLifetime,
        now_ms: u64,
    ) -> Result<Option<i64>, StoreError> {
        self.add_rule_creating(owner, rule, position, lifetime, now_ms, None)
    }

    /// As [`Store::add_rule`], creating the app's profile first (same transaction) when
    /// `create` is given and it does not exist.
    pub fn add_rule_creating(
        &mut self,
        owner: &RuleOwner,
        rule: &Rule,
        position: Option<u32>,
        lifetime: RuleLifetime,
        now_ms: u64,
        create: Option<&NewApp<'_>>,
    ) -> Result<Option<i64>, StoreError> {
        let sql = sql_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        Self::create_in(&tx, owner, create).map_err(sql)?;
        let Some(pid) = Self::profile_id(&tx, owner_key(owner)).map_err(sql)? else {
            return Ok(None);
        };
        let count: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM rules WHERE profile_id = ?1",
                [pid],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let pos = match position {
            Some(p) => i64::from(p).clamp(1, count + 1),
            None => count + 1,
        };
        tx.execute(
            "UPDATE rules SET position = position + 1 WHERE profile_id = ?1 AND position >= ?2",
            params![pid, pos],
        )
        .map_err(sql)?;
        let (expires, until_restart, until_pid, until_pid_start) = match lifetime {
            RuleLifetime::Forever => (None, false, None, None),
            RuleLifetime::Until { unix_ms } => (Some(ms_to_sql(unix_ms)), false, None, None),
            RuleLifetime::UntilRestart => (None, true, None, None),
            RuleLifetime::UntilExit { pid, start_time } => (
                None,
                true,
                Some(i64::from(pid)),
                Some(ms_to_sql(start_time)),
            ),
        };
        tx.execute(
            "INSERT INTO rules (profile_id, position, text, created_ms, expires_ms, until_restart, \
             until_pid, until_pid_start) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                pid,
                pos,
                rule.to_string(),
                ms_to_sql(now_ms),
                expires,
                until_restart,
                until_pid,
                until_pid_start
            ],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE profiles SET last_seen_ms = MAX(last_seen_ms, ?2) WHERE id = ?1",
            params![pid, ms_to_sql(now_ms)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Some(id))
    }

    /// Where rule `id` is: its profile's id, its position, its profile's key.
    fn rule_place(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Option<(i64, i64, String)>> {
        tx.query_row(
            "SELECT r.profile_id, r.position, p.key FROM rules r \
             JOIN profiles p ON p.id = r.profile_id WHERE r.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
    }

    /// Removes a rule and closes the gap in its list. Returns its owner and its row as it was,
    /// or `None` when no rule has that id.
    pub fn remove_rule(&mut self, id: i64) -> Result<Option<RuleOwner>, StoreError> {
        let sql = sql_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let found = Self::rule_place(&tx, id).map_err(sql)?;
        let Some((pid, pos, key)) = found else {
            return Ok(None);
        };
        tx.execute("DELETE FROM rules WHERE id = ?1", [id])
            .map_err(sql)?;
        tx.execute(
            "UPDATE rules SET position = position - 1 WHERE profile_id = ?1 AND position > ?2",
            params![pid, pos],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Some(owner_of(&key)))
    }

    /// Moves a rule to the 1-based `position` in its list (past the end: last). Returns its
    /// owner, or `None` when no rule has that id.
    pub fn move_rule(&mut self, id: i64, position: u32) -> Result<Option<RuleOwner>, StoreError> {
        let sql = sql_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let found = Self::rule_place(&tx, id).map_err(sql)?;
        let Some((pid, from, key)) = found else {
            return Ok(None);
        };
        let count: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM rules WHERE profile_id = ?1",
                [pid],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let to = i64::from(position).clamp(1, count.max(1));
        if to != from {
            // Park the rule outside the list, shift the others, then drop it in place.
            tx.execute("UPDATE rules SET position = 0 WHERE id = ?1", [id])
                .map_err(sql)?;
            if to < from {
                tx.execute(
                    "UPDATE rules SET position = position + 1 \
                     WHERE profile_id = ?1 AND position >= ?2 AND position < ?3",
                    params![pid, to, from],
                )
                .map_err(sql)?;
            } else {
                tx.execute(
                    "UPDATE rules SET position = position - 1 \
                     WHERE profile_id = ?1 AND position > ?2 AND position <= ?3",
                    params![pid, from, to],
                )
                .map_err(sql)?;
            }
            tx.execute(
                "UPDATE rules SET position = ?2 WHERE id = ?1",
                params![id, to],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(Some(owner_of(&key)))
    }

    /// Removes rules whose time is up (`expires_ms <= now`), rules whose process has exited
    /// (`exited(pid, start_time)`), or, with `restart`, the rules that lived until the helper
    /// restarted. Returns the owners whose lists changed.
    pub fn remove_ended_rules(
        &mut self,
        now_ms: u64,
        restart: bool,
        exited: &dyn Fn(u32, u64) -> bool,
    ) -> Result<Vec<RuleOwner>, StoreError> {
        let sql = sql_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let ended: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT r.id, p.key FROM rules r JOIN profiles p ON p.id = r.profile_id \
                     WHERE (r.expires_ms IS NOT NULL AND r.expires_ms <= ?1) \
                        OR (?2 AND r.until_restart)",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![ms_to_sql(now_ms), restart], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        let mut ended = ended;
        if !restart {
            let mut stmt = tx
                .prepare(
                    "SELECT r.id, p.key, r.until_pid, r.until_pid_start FROM rules r \
                     JOIN profiles p ON p.id = r.profile_id WHERE r.until_pid IS NOT NULL",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .map_err(sql)?;
            for row in rows {
                let (id, key, pid, start) = row.map_err(sql)?;
                let pid = u32::try_from(pid).unwrap_or(0);
                let start = start.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                if exited(pid, start) {
                    ended.push((id, key));
                }
            }
        }
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        let mut owners: Vec<String> = Vec::new();
        for (id, key) in &ended {
            tx.execute("DELETE FROM rules WHERE id = ?1", [id])
                .map_err(sql)?;
            if !owners.contains(key) {
                owners.push(key.clone());
            }
        }
        // Renumber the touched lists densely, keeping their order.
        for key in &owners {
            let Some(pid) = Self::profile_id(&tx, key).map_err(sql)? else {
                continue;
            };
            let ids: Vec<i64> = {
                let mut stmt = tx
                    .prepare("SELECT id FROM rules WHERE profile_id = ?1 ORDER BY position")
                    .map_err(sql)?;
                let rows = stmt.query_map([pid], |r| r.get(0)).map_err(sql)?;
                rows.collect::<Result<_, _>>().map_err(sql)?
            };
            for (i, id) in ids.iter().enumerate() {
                let pos = i64::try_from(i).unwrap_or(i64::MAX - 1) + 1;
                tx.execute(
                    "UPDATE rules SET position = ?2 WHERE id = ?1",
                    params![id, pos],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(owners.iter().map(|k| owner_of(k)).collect())
    }
}

#[cfg(test)]
mod tests;
