//! Linux: iptables rules ([`iptables`]), the NFQUEUE consumer ([`queue`]), conntrack entries
//! ([`conntrack`], over netlink) and the plumbing the rules need ([`tools`]: finding and running
//! the iptables programs, pinned to one network namespace). Selected by `lib.rs` only; the
//! public types and their documentation live there.
//!
//! Everything here acts on the network namespace of the calling thread (a test runs it on a
//! thread that joined a lab namespace); [`InstalledRules`] pins that namespace at install, so
//! removing the rules later from any thread acts on the same one.

mod conntrack;
mod iptables;
mod queue;
mod tools;

pub(crate) use conntrack::{allowed_connections, forget_connections};
pub(crate) use iptables::{InstalledRules, recover};
pub(crate) use queue::{Pending, Queue, QueueStopper, queue_stats};
