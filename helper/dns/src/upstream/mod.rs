//! Upstream resolvers: their text form ([`spec`]), certificate trust ([`tls`]) and the pool
//! that sends questions to them with failover ([`pool`]). Nothing here looks at the content
//! of answers.

pub mod pool;
pub mod socket;
pub mod spec;
pub mod tls;

pub use pool::{Answered, EndpointStats, UpstreamGroup};
pub use socket::{SocketHook, SocketRef};
pub use spec::{Transport, UpstreamSpec};
pub use tls::Trust;
