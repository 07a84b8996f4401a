//! Portcullis' local DNS resolver: it answers the machine's DNS queries, knows who asked
//! (the peer address, which the daemon turns into a process), lets a [`QueryPolicy`] block
//! names — also behind CNAME chains —, resolves the rest over DNS-over-TLS or
//! DNS-over-HTTPS (plain DNS as an option), keeps local names on the link's own resolver
//! (split horizon), refuses public names that point into the LAN (rebinding protection),
//! and caches answers within bounds.
//!
//! Layout: [`server`] (sockets, framing, limits) → [`resolver`] (the pipeline) → [`cache`],
//! [`policy`], [`rebinding`], [`upstream`] (transports and failover). The crate is not
//! Linux-specific: it builds for Windows too. It must not change the system's DNS
//! configuration, install redirects or attribute processes — that is the daemon's job — and
//! it never logs domains or addresses above DEBUG.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use portcullis_dns::{DnsConfig, DnsServer, Resolver, policy::AllowAll};
//!
//! let config = DnsConfig::default();
//! let resolver = Arc::new(Resolver::new(&config, Arc::new(AllowAll))?);
//! let server = DnsServer::start(&config.listen, config.server, resolver).await?;
//! # drop(server); Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod error;
pub mod names;
pub mod policy;
pub mod presets;
pub mod rebinding;
pub mod reply;
pub mod resolver;
pub mod server;
pub mod upstream;

pub use config::{DnsConfig, LocalZone, RebindingConfig};
pub use error::{ConfigError, ServerError, UpstreamError};
pub use policy::{BlockStyle, QueryContext, QueryDecision, QueryPolicy, QuerySource};
pub use resolver::{AnswerSource, Outcome, Resolution, Resolve, Resolver};
pub use server::{DnsServer, ServerLimits};
pub use upstream::{Transport, Trust, UpstreamSpec};

/// The DNS library this crate speaks, re-exported so that callers use the same types.
pub use hickory_proto as proto;
