//! Apps (profiles) as clients see them.

use serde::{Deserialize, Serialize};

/// A client's way to name an app: its app key (for now the executable path).
pub type AppRef = String;

/// What kind of profile this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// A program, matched by its executable path.
    Executable,
    /// Traffic of the kernel or that no process could be found for.
    Kernel,
    /// The system's DNS client (e.g. systemd-resolved) when it forwards for others.
    SystemDns,
}

/// One app's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppInfo {
    /// The app key: executable path, or `system:kernel` / `system:dns` for special profiles.
    pub key: String,
    /// What kind of profile it is.
    pub kind: AppKind,
    /// A name for people (file name of the executable, or the special profile's name).
    pub name: String,
    /// When the profile was made, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Last connection or change, in milliseconds since the Unix epoch.
    pub last_seen_unix_ms: u64,
    /// How many settings the app overrides.
    pub overrides: u32,
    /// How many rules the app has of its own.
    pub rules: u32,
}
