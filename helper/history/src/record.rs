//! What one history row says: a connection or a DNS query the helper decided. This is the
//! crate's own type, independent of the wire protocol: the daemon converts its
//! `ConnectionInfo` (plus attribution, intel and accounting facts) into a [`Record`].
//!
//! The small enums are stored as integers; their codes are part of the on-disk schema and are
//! never renumbered, only added to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Defines a fieldless enum with a stable integer code (the database) and a stable word
/// (exports, filters), and the conversions between them.
macro_rules! coded_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal, $word:literal;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant,)+ }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The code stored in the database.
            pub fn code(self) -> i64 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The value stored as `code`, if any.
            pub fn from_code(code: i64) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The word used in exports and filters.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { what: stringify!($name), word: s.to_owned() }),
                }
            }
        }
    };
}

/// A word that names no value of an enum (in an import or a filter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a valid {what}")]
pub struct UnknownWord {
    /// The enum's name.
    pub what: &'static str,
    /// The word found.
    pub word: String,
}

coded_enum! {
    /// What a row records.
    Kind {
        /// A connection (or a refused attempt at one).
        Connection = 0, "connection";
        /// A DNS query an app sent.
        Dns = 1, "dns";
    }
}

coded_enum! {
    /// Who opened the connection.
    Direction {
        /// This machine.
        Outbound = 0, "outbound";
        /// Another machine, to us.
        Inbound = 1, "inbound";
    }
}

coded_enum! {
    /// The transport protocol.
    Protocol {
        /// TCP.
        Tcp = 0, "tcp";
        /// UDP.
        Udp = 1, "udp";
        /// ICMP and ICMPv6.
        Icmp = 2, "icmp";
    }
}

coded_enum! {
    /// Where the other end is, as the policy classified it.
    Scope {
        /// The machine itself.
        Localhost = 0, "localhost";
        /// The local network.
        Lan = 1, "lan";
        /// The Internet.
        Internet = 2, "internet";
        /// Internet addresses the app did not look up through Portcullis.
        P2p = 3, "p2p";
        /// Opened by others to this machine.
        Inbound = 4, "inbound";
    }
}

coded_enum! {
    /// The verdict that was applied. A prompt is recorded with the answer it got (or the
    /// default applied when nobody answered), never as "ask".
    Verdict {
        /// Let through.
        Allow = 0, "allow";
        /// Refused at once.
        Block = 1, "block";
        /// Discarded silently.
        Drop = 2, "drop";
    }
}

impl Verdict {
    /// Whether the row belongs to the "blocked" retention class.
    pub fn is_blocked(self) -> bool {
        !matches!(self, Verdict::Allow)
    }
}

/// One connection or DNS query, as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Connection or DNS query.
    pub kind: Kind,
    /// When it was decided, in milliseconds since the Unix epoch. Pages are ordered by it.
    pub unix_ms: i64,
    /// The app's profile key (an executable path, or `system:…`).
    pub app: String,
    /// The process, when one was found.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process' executable, when known.
    #[serde(default)]
    pub exe: Option<String>,
    /// Who opened it.
    pub direction: Direction,
    /// The transport protocol.
    pub protocol: Protocol,
    /// Our address.
    pub local: IpAddr,
    /// Our port (`None` for ICMP).
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The other end (for a DNS query: the server the app asked).
    pub remote: IpAddr,
    /// The other end's port (`None` for ICMP).
    #[serde(default)]
    pub remote_port: Option<u16>,
    /// The name the app looked the remote up by (for a DNS query: the name asked).
    #[serde(default)]
    pub domain: Option<String>,
    /// The remote's country, ISO 3166-1 alpha-2, when known.
    #[serde(default)]
    pub country: Option<String>,
    /// The remote's autonomous system number, when known.
    #[serde(default)]
    pub asn: Option<u32>,
    /// The scope the policy put it in.
    pub scope: Scope,
    /// The verdict applied.
    pub verdict: Verdict,
    /// Why, in one sentence (the policy's explanation summary).
    pub explanation: String,
    /// Bytes we sent.
    #[serde(default)]
    pub bytes_out: u64,
    /// Bytes we received.
    #[serde(default)]
    pub bytes_in: u64,
    /// Packets we sent.
    #[serde(default)]
    pub packets_out: u64,
    /// Packets we received.
    #[serde(default)]
    pub packets_in: u64,
    /// When the connection started, in ms since the epoch, when known.
    #[serde(default)]
    pub start_ms: Option<i64>,
    /// When it ended, in ms since the epoch; `None` while open or for refused attempts.
    #[serde(default)]
    pub end_ms: Option<i64>,
}

/// A stored record with its row id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The row id: unique in this database, never reused while the row exists.
    pub id: i64,
    /// What was recorded.
    #[serde(flatten)]
    pub record: Record,
}

/// What a connection carried, known when it ended: written into its row (the app's newest
/// connection row with the same protocol, local port and remote end that has not ended yet)
/// and into the app's bandwidth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// The app's profile key.
    pub app: String,
    /// The transport protocol.
    pub protocol: Protocol,
    /// Our port.
    pub local_port: u16,
    /// The other end.
    pub remote: IpAddr,
    /// The other end's port.
    pub remote_port: u16,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// When it ended, in ms since the epoch.
    pub end_ms: i64,
}
