//! The helper's status.

use serde::{Deserialize, Serialize};

/// Whether the helper is deciding connections right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EnforcementState {
    /// Every new connection is decided.
    Enforcing,
    /// The user paused protection; traffic passes until the time given.
    Paused {
        /// When protection resumes, in milliseconds since the Unix epoch.
        until_unix_ms: u64,
    },
    /// Interception is not active; the reason says why (e.g. not configured on this host).
    Off {
        /// Why, for people.
        reason: String,
    },
}

/// What `status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Status {
    /// The helper's release version.
    pub version: String,
    /// The protocol version it speaks.
    pub protocol_version: u32,
    /// Seconds since the helper started.
    pub uptime_secs: u64,
    /// The helper's process id.
    pub pid: u32,
    /// Whether it enforces.
    pub enforcement: EnforcementState,
    /// Apps with a profile (special profiles included).
    pub apps: u32,
    /// Rules stored, global and per app.
    pub rules: u32,
    /// Clients connected right now (this one included).
    pub clients: u32,
    /// How connections are attributed to processes (eBPF, sock_diag, /proc), when enforcing.
    #[serde(default)]
    pub attribution: Option<String>,
}
