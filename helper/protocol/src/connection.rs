//! Connections as the wire describes them: direction and transport protocol, and a
//! hypothetical connection that a client can ask the helper to decide ("what would happen
//! if this app connected there, and why?").

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This machine opened it (the default when a rule does not say `Inbound`).
    Outbound,
    /// Another machine opened it to us: rules match the remote peer and our local port.
    Inbound,
}

/// A transport protocol, as named in port specs and in connection facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6: to a person they are the same "ping" protocol.
    Icmp,
}

impl Protocol {
    /// The rule-text word: `tcp`, `udp` or `icmp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection to decide without it happening, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConnectionQuery {
    /// Who opens it.
    pub direction: Direction,
    /// Its transport protocol.
    pub protocol: Protocol,
    /// The other end.
    pub remote: IpAddr,
    /// The other end's port (outbound); `None` for ICMP.
    #[serde(default)]
    pub remote_port: Option<u16>,
    /// Our port (inbound); `None` for ICMP.
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The name the app looked `remote` up by, if any.
    #[serde(default)]
    pub domain: Option<String>,
}

/// A connection the helper decided, as `connections` and the monitor show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConnectionInfo {
    /// Unique while the helper runs.
    pub id: u64,
    /// When it was decided, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The app's profile key (`system:kernel` when no process was found).
    pub app: String,
    /// The process, when one was found.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Who opened it.
    pub direction: Direction,
    /// Its transport protocol.
    pub protocol: Protocol,
    /// Our address.
    pub local: IpAddr,
    /// Our port (`None` for ICMP).
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The other end.
    pub remote: IpAddr,
    /// The other end's port (`None` for ICMP).
    #[serde(default)]
    pub remote_port: Option<u16>,
    /// The name the app looked `remote` up by, when known.
    #[serde(default)]
    pub domain: Option<String>,
    /// The remote's country (ISO 3166-1 alpha-2), when geo-IP knows it.
    #[serde(default)]
    pub country: Option<String>,
    /// The remote's autonomous system, when known.
    #[serde(default)]
    pub asn: Option<u32>,
    /// Its scope.
    pub scope: crate::settings::Scope,
    /// The verdict and why.
    pub explanation: crate::explain::Explanation,
    /// Whether the kernel repeated a decision cached for this app and destination (the fast
    /// path): the connection never waited for the helper. Its explanation is the policy's
    /// answer for it, computed again when the helper heard of it.
    #[serde(default)]
    pub decided_in_kernel: bool,
}
