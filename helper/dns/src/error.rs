//! The crate's error types. This module owns only the enums and their messages; it decides
//! nothing and logs nothing. Each variant names what failed and keeps its cause.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A configuration that cannot be used. Nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An upstream's text (`tls://dns.example#192.0.2.1`, a preset name, …) did not parse.
    #[error("upstream {text:?}: {reason}")]
    BadUpstream {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No upstream resolver was configured.
    #[error("no upstream resolver is configured")]
    NoUpstreams,
    /// A domain name (local zone, allow-list entry) is not a valid DNS name.
    #[error("invalid domain name {name:?}: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A local (split-horizon) zone lists no server.
    #[error("local zone {zone:?} has no server")]
    ZoneWithoutServers {
        /// The zone.
        zone: String,
    },
    /// A local zone's server is not a plain resolver (split horizon sends to the link's own
    /// plain DNS server).
    #[error("local zone {zone:?}: server {server} must be plain DNS (plain://ADDRESS[:PORT])")]
    ZoneServerNotPlain {
        /// The zone.
        zone: String,
        /// The server as configured.
        server: String,
    },
    /// Cache limits that cannot work (zero size, minimum above maximum).
    #[error("cache limits: {0}")]
    BadCacheLimits(String),
    /// A timeout or server limit of zero.
    #[error("{what} must be greater than zero")]
    ZeroLimit {
        /// The setting.
        what: &'static str,
    },
    /// The configured CA file could not be read.
    #[error("cannot read CA file {path}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configured CA file holds no PEM certificate.
    #[error("CA file {path} holds no PEM certificate")]
    NoCertInCa {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the CA file is malformed.
    #[error("CA file {path}: certificate {index} is unusable")]
    BadCaCert {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file, from 0.
        index: usize,
        /// What rustls or the PEM parser said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Not a single root certificate was found in the system's store.
    #[error(
        "no system root certificates found ({details}); install ca-certificates or give a CA file"
    )]
    NoSystemRoots {
        /// What the loader reported.
        details: String,
    },
    /// rustls refused the TLS setup (protocol versions, provider).
    #[error("TLS client setup failed")]
    Tls(#[source] rustls::Error),
}

/// The DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be opened.
    #[error("cannot listen on {proto} {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The I/O error (address in use, permission denied for port 53, …).
        #[source]
        source: std::io::Error,
    },
    /// No listen address was given.
    #[error("no listen address is configured")]
    NoListenAddress,
}

/// An upstream query that produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection to the upstream could not be set up (TCP, TLS handshake — e.g. an
    /// untrusted or wrong certificate —, HTTP/2).
    #[error("connecting to upstream {upstream} failed: {source}")]
    Connect {
        /// The upstream's label.
        upstream: String,
        /// What hickory reported.
        #[source]
        source: hickory_net::NetError,
    },
    /// The upstream did not answer in time.
    #[error("upstream {upstream} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The upstream's label.
        upstream: String,
        /// The time allowed.
        timeout_ms: u128,
    },
    /// The exchange failed after connecting (connection closed, protocol error).
    #[error("query to upstream {upstream} failed: {source}")]
    Exchange {
        /// The upstream's label.
        upstream: String,
        /// What hickory reported.
        #[source]
        source: hickory_net::NetError,
    },
    /// The upstream answered a different question than the one asked.
    #[error("upstream {upstream} answered a different question")]
    Mismatch {
        /// The upstream's label.
        upstream: String,
    },
    /// Every upstream of the group failed; the last failure is kept.
    #[error("all {tried} upstreams failed; last: {last}")]
    AllFailed {
        /// How many were tried.
        tried: usize,
        /// The last failure.
        #[source]
        last: Box<UpstreamError>,
    },
    /// A local zone's resolvers are missing (a bug: they are made with the zone).
    #[error("the local zone has no resolver")]
    NoLocalResolver,
    /// The time for the whole query ran out before an upstream could be tried.
    #[error("no time left to query an upstream")]
    OutOfTime,
}
