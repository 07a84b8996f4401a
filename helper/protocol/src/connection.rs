//! Connections as the wire describes them: direction and transport protocol, and a
//! hypothetical connection that a client can ask the helper to decide ("what would happen
//! if this app connected there, and why?").

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This machine opened it (the default when a rule does not say `Inbound`).
    Outbound,
    /// Another machine opened it to us: rules match the remote peer and our local port.
    Inbound,
}

/// A transport protocol, as named in port specs and in connection facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
