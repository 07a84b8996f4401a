//! Verdicts and their explanations: every decision says which rule or setting of which
//! profile made it, so the UI and CLI can answer "why was this blocked?".

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::settings::{SettingKey, SettingSource, SettingValue};

/// What happens to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// Refuse it at once (TCP reset / ICMP unreachable).
    Block,
    /// Discard it silently.
    Drop,
    /// Ask the user.
    Ask,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Block => "block",
            Verdict::Drop => "drop",
            Verdict::Ask => "ask",
        })
    }
}

/// Names a profile in an explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", content = "app", rename_all = "snake_case")]
pub enum ProfileLabel {
    /// The global profile.
    Global,
    /// An app's profile, by app key.
    App(String),
    /// Nobody's: Portcullis' built-in defaults.
    BuiltIn,
}

impl fmt::Display for ProfileLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileLabel::Global => f.write_str("global settings"),
            ProfileLabel::App(key) => write!(f, "app {key}"),
            ProfileLabel::BuiltIn => f.write_str("built-in defaults"),
        }
    }
}

/// The rule or setting that decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecidedBy {
    /// Protection was paused (`portcullisctl pause`): the connection passed undecided.
    Paused {
        /// When the pause ends, in milliseconds since the Unix epoch.
        until_unix_ms: u64,
    },
    /// An endpoint rule matched (first match wins).
    Rule {
        /// Whose rule list it is in.
        profile: ProfileLabel,
        /// The stored rule's id, when it is a stored rule.
        rule_id: Option<i64>,
        /// The rule in canonical text.
        text: String,
    },
    /// A filter list the app uses (`filter_lists`) names the domain or holds the remote
    /// address, and no rule allowed it.
    List {
        /// The list's id, e.g. `easyprivacy`.
        list: String,
        /// The list's name, e.g. `EasyPrivacy`.
        name: String,
        /// What it blocks.
        category: crate::settings::ListCategory,
        /// The listed name that matched (the domain itself or a parent), or the listed
        /// address or network as the list wrote it (`192.0.2.0/24`).
        entry: String,
        /// The entry's line in the list file.
        line: u32,
    },
    /// A setting decided (block_inbound, block_scopes, default_action, …).
    Setting {
        /// Which setting.
        key: SettingKey,
        /// Its value.
        value: SettingValue,
        /// Where that value came from.
        source: SettingSource,
    },
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Explanation {
    /// The verdict.
    pub verdict: Verdict,
    /// What decided it.
    pub decided_by: DecidedBy,
    /// One sentence for people, e.g. "blocked by rule `- 10.0.0.0/8` of app /usr/bin/curl".
    pub summary: String,
}
