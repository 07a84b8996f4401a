//! Prompts: a new connection whose app's policy says "ask" waits while connected UIs (or a
//! `portcullisctl prompts watch`) ask the user, and the answer can become a rule.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::connection::{Direction, Protocol};
use crate::rules::RuleInfo;
use crate::settings::Scope;

/// A connection waiting for the user's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PromptInfo {
    /// Unique while the helper runs; used to answer.
    pub id: u64,
    /// The app's profile key.
    pub app: String,
    /// The app's name for people.
    pub app_name: String,
    /// The process that asked, when known.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Who opens the connection.
    pub direction: Direction,
    /// Its transport protocol.
    pub protocol: Protocol,
    /// The other end.
    pub remote: IpAddr,
    /// The other end's port (outbound).
    #[serde(default)]
    pub remote_port: Option<u16>,
    /// Our port (inbound).
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The name the app looked `remote` up by, when known.
    #[serde(default)]
    pub domain: Option<String>,
    /// The connection's scope.
    pub scope: Scope,
    /// When it was asked, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// When the fallback decides if nobody answers, in milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    /// What happens then: `allow` or `block`.
    pub fallback: crate::explain::Verdict,
    /// How many packets (retries, parallel attempts) wait on this prompt.
    pub waiting: u32,
}

/// What an answer allows or blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum PromptTarget {
    /// The domain (needs one): rule `± example.com`.
    Domain,
    /// The domain and its subdomains (needs one): rule `± .example.com`.
    Subdomains,
    /// The remote address: rule `± 192.0.2.1`.
    Ip,
    /// The remote address on this protocol and port: rule `± 192.0.2.1 tcp/443`.
    IpPort,
    /// This protocol and port on any host: rule `± tcp/443`.
    Port,
}

/// How long an answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptDuration {
    /// Only the waiting connection; no rule.
    Once,
    /// A rule for this many minutes.
    Minutes {
        /// Minutes, 1 to 10,080 (a week).
        minutes: u32,
    },
    /// A rule until the process that asked exits.
    UntilAppQuits,
    /// A rule until the helper restarts.
    UntilRestart,
    /// A rule kept until removed.
    Always,
}

/// The user's answer to a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PromptAnswer {
    /// `true` allows, `false` blocks.
    pub allow: bool,
    /// What the rule is about (ignored for `Once`).
    pub target: PromptTarget,
    /// How long it holds.
    pub duration: PromptDuration,
}

/// How a prompt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptOutcome {
    /// Someone answered it.
    Answered {
        /// Allowed or blocked.
        allow: bool,
    },
    /// A rule made for another prompt (or a change) decided it.
    DecidedByPolicy {
        /// Allowed or blocked.
        allow: bool,
    },
    /// Nobody answered in time: the fallback decided.
    TimedOut {
        /// Allowed or blocked.
        allow: bool,
    },
}

impl fmt::Display for PromptTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PromptTarget::Domain => "domain",
            PromptTarget::Subdomains => "subdomains",
            PromptTarget::Ip => "ip",
            PromptTarget::IpPort => "ip-port",
            PromptTarget::Port => "port",
        })
    }
}

/// What `AnswerPrompt` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Answered {
    /// The prompt's id.
    pub id: u64,
    /// The rule the answer made, if it made one.
    #[serde(default)]
    pub rule: Option<RuleInfo>,
}
