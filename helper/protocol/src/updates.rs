//! Signed data updates, as clients see them: the state of the updater and the outcome of a
//! check (`portcullisctl updates status|check`).

use serde::{Deserialize, Serialize};

/// What one update check came to. In every case but `Installed`, the data in force did not
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// A newer bundle passed every check and is now in force.
    Installed {
        /// Its version.
        version: u64,
    },
    /// The server offers the version already installed.
    UpToDate {
        /// That version.
        version: u64,
    },
    /// The bundle failed a check (signature, key, rollback, path, size, hash, …); the old
    /// data stays in force.
    Refused {
        /// Which check, and why.
        reason: String,
    },
    /// The bundle could not be fetched, stored or loaded; the old data stays in force.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What `UpdateStatus` and `UpdateCheck` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UpdateStatus {
    /// Whether updates are configured (`[updates] url` and `keys`).
    pub enabled: bool,
    /// Where bundles come from.
    #[serde(default)]
    pub url: Option<String>,
    /// Hours between scheduled checks; 0: only on demand.
    #[serde(default)]
    pub interval_hours: u64,
    /// The version of the data in force; 0 for the data shipped with the package.
    pub installed_version: u64,
    /// When the last check ended (ms since the Unix epoch).
    #[serde(default)]
    pub last_check_ms: Option<u64>,
    /// How the last check ended (for `UpdateCheck`: this check).
    #[serde(default)]
    pub last: Option<UpdateOutcome>,
}
