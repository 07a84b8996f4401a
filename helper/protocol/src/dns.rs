//! The helper's resolver, as clients see it: its state (`portcullisctl dns status`) and the
//! answer to one name for one app (`portcullisctl dns query`).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::explain::Explanation;

/// What `DnsStatus` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DnsStatus {
    /// Whether the helper runs its resolver (`[dns] enabled`).
    pub enabled: bool,
    /// Whether the firewall redirects queries sent to other resolvers to it.
    pub redirect: bool,
    /// Where it listens (UDP and TCP).
    pub listen: Vec<SocketAddr>,
    /// Its upstreams (public ones first, then each local zone's), with their counters.
    pub upstreams: Vec<DnsUpstreamStatus>,
    /// Answers in the cache now, and the bytes they take.
    pub cache_entries: u64,
    /// See `cache_entries`.
    pub cache_bytes: u64,
}

/// One upstream address of the resolver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DnsUpstreamStatus {
    /// How it is reached, e.g. `tls://dns.quad9.net#9.9.9.9:853`.
    pub label: String,
    /// The local zone it serves (split horizon), or `None` for a public upstream.
    #[serde(default)]
    pub zone: Option<String>,
    /// Connections opened, queries answered and failed since the helper started.
    pub connections: u64,
    /// See `connections`.
    pub answered: u64,
    /// See `connections`.
    pub failed: u64,
    /// Whether it is skipped for a while after failing.
    pub backing_off: bool,
}

/// What `DnsQuery` answers: how the helper answers `name` for the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DnsAnswer {
    /// The name asked (lowercase, without the trailing dot).
    pub name: String,
    /// The app it was asked for, or `None` for an app without a profile of its own.
    #[serde(default)]
    pub app: Option<String>,
    /// What happened: `answered`, `blocked`, `refused` (rebinding), `failed`, `canary`.
    pub outcome: String,
    /// The response code sent (`NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`, …).
    pub rcode: String,
    /// The IPv4 and IPv6 addresses of the answer.
    pub addresses: Vec<IpAddr>,
    /// For a blocked name: the rule that decided (the question or a name of its CNAME chain).
    #[serde(default)]
    pub explanation: Option<Explanation>,
    /// Where the answer came from (`cache`, an upstream's label with its latency), or why
    /// there is none.
    pub detail: String,
}
