//! Endpoint rules as they travel over the wire: their text (parsed and checked by the helper's
//! `policy` crate), who owns them, their position and their lifetime.

use serde::{Deserialize, Serialize};

/// Whose rule list a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", content = "app", rename_all = "snake_case")]
pub enum RuleOwner {
    /// The global list, checked after the app's own rules.
    Global,
    /// One app's list, named by its app key (for now its executable path).
    App(String),
}

/// How long a rule lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleLifetime {
    /// Until removed.
    Forever,
    /// Until this moment (milliseconds since the Unix epoch); then it is removed.
    Until {
        /// Expiry, in milliseconds since the Unix epoch.
        unix_ms: u64,
    },
    /// Until the helper restarts.
    UntilRestart,
    /// Until the process `pid` (started at `start_time`, in clock ticks after boot as in
    /// `/proc/PID/stat`, so a recycled pid is not mistaken for it) exits, or the helper
    /// restarts. Made by prompt answers ("until the app quits").
    UntilExit {
        /// The process.
        pid: u32,
        /// Its start time.
        start_time: u64,
    },
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RuleInfo {
    /// Stable id, used by `remove` and `move`.
    pub id: i64,
    /// Whose list it is in.
    pub owner: RuleOwner,
    /// 1-based position in that list: the first match wins.
    pub position: u32,
    /// The rule in canonical text form, e.g. `- *.example.com tcp/443`.
    pub text: String,
    /// How long it lives.
    pub lifetime: RuleLifetime,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}
