//! Why history could not do something. Every variant names the file (or the import line)
//! and keeps SQLite's or the parser's reason as its source.

use std::path::PathBuf;

/// A history database error.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite could not open the file, or a statement on it failed.
    #[error("history database {path}: {what}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer Portcullis; it is left alone.
    #[error(
        "history database {path} has schema version {found}, newer than this build \
         understands ({known})"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A schema migration failed; its transaction was rolled back.
    #[error("cannot upgrade history database {path} to schema version {version}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version being applied.
        version: i64,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite's integrity check found damage.
    #[error("history database {path} is corrupt: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The first problem the check reported.
        detail: String,
    },
    /// A corrupt database could not be moved aside (so no fresh one was started).
    #[error("history database {path} is corrupt and could not be moved aside to {aside}: {source}")]
    MoveAside {
        /// The corrupt database file.
        path: PathBuf,
        /// Where it was to go.
        aside: PathBuf,
        /// The file system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A stored row holds a value this build cannot read (a hand edit or a bug).
    #[error("history database {path}: row {id}: column {column} holds an invalid value")]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The row id.
        id: i64,
        /// The column.
        column: &'static str,
    },
    /// A read ran past its time limit (see `ReadLimits`) and was stopped; the reader is
    /// still usable.
    #[error(
        "history database {path}: the query was stopped after its time limit of {} ms; \
         narrow it (an app, a domain, a shorter time range, a longer search text)",
        limit.as_millis()
    )]
    TimedOut {
        /// The database file.
        path: PathBuf,
        /// The limit that passed.
        limit: std::time::Duration,
    },
    /// The writer thread is gone (it stopped or could not start).
    #[error("the history writer has stopped")]
    WriterGone,
    /// The writer thread could not be started.
    #[error("cannot start the history writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// An export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing the stream failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// A JSON line is not a record.
    #[error("line {line}: not a history record: {source}")]
    Json {
        /// 1-based line number.
        line: u64,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// A CSV record is malformed or holds an invalid value.
    #[error("CSV line {line}{}: {message}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
    Csv {
        /// 1-based line number where the record starts.
        line: u64,
        /// The column, when one is at fault.
        column: Option<&'static str>,
        /// What is wrong.
        message: String,
    },
    /// Writing imported rows or reading rows to export failed.
    #[error(transparent)]
    History(#[from] HistoryError),
}
