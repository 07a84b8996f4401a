//! Puts the firewall between apps and the network. This crate owns the packet queue, the
//! firewall rules that feed it and their undo, and the conntrack entries of connections it
//! let through; it knows nothing of policy — the caller decides each queued connection and
//! hands the verdict back. It must never leave rules behind that it cannot find again, and
//! must never change a rule, chain or mark bit that is not its own.
//!
//! On Linux (the only backend so far):
//!
//! 1. [`InstalledRules::install`] puts our chains into iptables (the backend the host uses,
//!    IPv4 and IPv6): only packets of NEW connections go to NFQUEUE; see [`rules`] for the
//!    rule set and why. Dropping the value or [`InstalledRules::remove`] takes them out;
//!    [`recover`] takes out what a crashed run left.
//! 2. [`Queue::open`] binds the queue; [`Queue::recv`] yields a [`Pending`] packet with its
//!    parsed headers ([`packet::parse`]); [`Queue::verdict`] answers it (in any order) by
//!    setting our mark bits and letting the packet walk the chain again, where the mark
//!    decides: accept (and remember on the connection), reject, or drop.
//! 3. Later packets of an allowed connection never reach the queue. After a rule change,
//!    [`forget_connections`] deletes the conntrack entries of allowed connections so that their
//!    next packet is decided again.
//!
//! With [`InterceptConfig::dns_redirect`], the rules also send DNS that apps address to other
//! servers to the helper's resolver ([`DnsRedirect`]).
//!
//! Every function acts on the network namespace of the calling thread. Other platforms compile
//! to the same API and return [`InterceptError::Unsupported`].

#![warn(missing_docs)]

pub mod ctnetlink;
mod error;
mod marks;
pub mod packet;
pub mod rules;
mod stats;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as imp;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use portcullis_protocol::{Direction, Verdict};
use tracing::warn;

pub use error::InterceptError;
pub use marks::{DEFAULT_MARK_MASK, Marks};
pub use packet::{PacketError, PacketInfo};
pub use rules::{Backend, Family, Removed, RemovedItem, RemovedKind};
pub use stats::{QueueStats, parse_queue_stats};

/// The default NFQUEUE number. Queue numbers are shared by every program on the machine; this
/// one is far from the 0 most examples and tools use.
pub const DEFAULT_QUEUE_NUM: u16 = 4200;

/// How the firewall is put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptConfig {
    /// The NFQUEUE number (default [`DEFAULT_QUEUE_NUM`], 4200).
    pub queue_num: u16,
    /// The packet and connection mark bits we own (default [`DEFAULT_MARK_MASK`],
    /// `0x9000_0000`); at least two bits. See [`Marks`] for the values and why these bits.
    pub mark_mask: u32,
    /// What happens to new connections while no helper is bound to the queue, or when the
    /// queue is full: `true` (default) lets them through, `false` drops them. Failing closed
    /// cuts the machine off whenever the helper is down.
    pub fail_open: bool,
    /// A cgroup2 path (relative to the cgroup2 root, starting with `/`) whose traffic is never
    /// queued: the helper's own, which must not wait behind itself. It must exist before the
    /// rules are installed.
    pub exclude_cgroup: Option<String>,
    /// Where DNS that apps send elsewhere on port 53 is redirected: the helper's resolver.
    /// `None` (default): DNS is not redirected. See [`DnsRedirect`].
    pub dns_redirect: Option<DnsRedirect>,
}

/// The helper's resolver, where the firewall sends DNS that apps address to any other server
/// on port 53 (UDP and TCP), the stub of systemd-resolved (127.0.0.53/54) included. The
/// helper's own queries (our allow bits in their mark, or the excluded cgroup) and queries
/// already addressed to the resolver go where they were sent.
///
/// The redirect is a DNAT in the `nat` table's `OUTPUT` chain: it covers what this machine's
/// programs send, not traffic it forwards (containers and VMs behind it). It needs no sysctl:
/// DNAT to a loopback address from `OUTPUT` works with `route_localnet` off; see [`rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DnsRedirect {
    /// The resolver's IPv4 address and port (default `127.0.0.153:53`).
    pub v4: SocketAddrV4,
    /// The resolver's IPv6 address and port (e.g. `[::1]:53`). `None`: IPv6 DNS to port 53 is
    /// refused instead (ICMPv6 port unreachable, TCP reset) in our filter chain, so stub
    /// resolvers move on to an IPv4 server at once and nothing leaks past the resolver.
    pub v6: Option<SocketAddrV6>,
}

/// The resolver's default address: a loopback address of its own, so it coexists with
/// systemd-resolved (127.0.0.53/54) and a dnsmasq on 127.0.0.1.
pub const DEFAULT_DNS_RESOLVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 153), 53);

impl Default for DnsRedirect {
    /// IPv4 to [`DEFAULT_DNS_RESOLVER`]; IPv6 refused.
    fn default() -> Self {
        DnsRedirect {
            v4: DEFAULT_DNS_RESOLVER,
            v6: None,
        }
    }
}

impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig {
            queue_num: DEFAULT_QUEUE_NUM,
            mark_mask: DEFAULT_MARK_MASK,
            fail_open: true,
            exclude_cgroup: None,
            dns_redirect: None,
        }
    }
}

impl InterceptConfig {
    /// The mark values of this configuration, or why the mask cannot be used.
    pub fn marks(&self) -> Result<Marks, InterceptError> {
        Marks::from_mask(self.mark_mask).ok_or(InterceptError::BadMarkMask {
            mask: self.mark_mask,
        })
    }
}

/// Firewall rules this process installed, in the network namespace it installed them in.
///
/// Dropping it removes them (errors are logged); [`remove`](Self::remove) does the same and
/// reports. [`recover`] removes what a crashed run left, found by our chain names, so it is
/// safe to run at any time: at start (install does it first), at stop, and from
/// `portcullisd recover`.
///
/// Removal restores the rule set exactly; a table that iptables created for our chains on an
/// otherwise empty host (`filter`, and `nat` with the DNS redirect) stays, empty and with
/// ACCEPT policies (iptables cannot delete tables).
///
/// Keep one per network namespace: the rules are found by chain name, so installing again
/// replaces them, and dropping either value removes them.
#[derive(Debug)]
pub struct InstalledRules {
    inner: imp::InstalledRules,
}

impl InstalledRules {
    /// Removes any leftovers of ours, then installs our chains and the jumps to them in both
    /// families, each family in one atomic `iptables-restore --noflush` transaction. If the
    /// second family fails, the first is taken out again before the error is returned.
    ///
    /// The backend (iptables-nft or iptables-legacy) is the one the host's rules are in; see
    /// [`rules::choose_backend`].
    pub fn install(config: &InterceptConfig) -> Result<InstalledRules, InterceptError> {
        imp::InstalledRules::install(config).map(|inner| InstalledRules { inner })
    }

    /// Removes our rules and chains (every copy of the jumps) from the backend they were
    /// installed in, in the namespace they were installed in, whatever thread calls this.
    /// Safe to call again: the second call finds nothing and returns an empty [`Removed`].
    pub fn remove(&mut self) -> Result<Removed, InterceptError> {
        self.inner.remove()
    }

    /// Switches the installed rules to `config.fail_open` (`--queue-bypass` or not), each
    /// queue rule replaced in place in one transaction per family: there is no moment without
    /// them. `config` must be the one the rules were installed with, apart from `fail_open`.
    pub fn set_fail_open(&self, config: &InterceptConfig) -> Result<(), InterceptError> {
        self.inner.set_fail_open(config)
    }

    /// The iptables backend the rules went into.
    pub fn backend(&self) -> Backend {
        self.inner.backend()
    }
}

impl Drop for InstalledRules {
    fn drop(&mut self) {
        if !self.inner.is_removed()
            && let Err(e) = self.inner.remove()
        {
            warn!(error = %e, "could not remove the firewall rules; run `portcullisd recover`");
        }
    }
}

/// Removes every rule that jumps to one of our chains, and our chains, from both families and
/// both backends of the calling thread's network namespace. Safe to run any number of times;
/// returns what it removed (empty when there was nothing).
pub fn recover() -> Result<Removed, InterceptError> {
    imp::recover()
}

/// The NFQUEUE consumer: yields queued packets and takes verdicts for them.
///
/// `Queue` is `Send`: open it where its network namespace is, then move it to the verdict
/// thread. Stop a blocked [`recv`](Self::recv) from another thread with a
/// [`QueueStopper`]. Dropping the queue unbinds it; packets still waiting are then dropped by
/// the kernel (or, with `--queue-bypass`, new ones pass again).
#[derive(Debug)]
pub struct Queue {
    inner: imp::Queue,
}

impl Queue {
    /// Binds `config.queue_num` in the calling thread's network namespace: copies the first
    /// 256 bytes of each packet (headers only), holds up to 4096 packets, and with
    /// `config.fail_open` lets packets through when that is full. Fails with
    /// [`InterceptError::QueueBusy`] when another program holds the queue.
    pub fn open(config: &InterceptConfig) -> Result<Queue, InterceptError> {
        imp::Queue::open(config).map(|inner| Queue { inner })
    }

    /// The next queued packet; blocks until one comes or the queue is stopped
    /// ([`InterceptError::Stopped`]).
    pub fn recv(&mut self) -> Result<Pending, InterceptError> {
        loop {
            if let Some(p) = self.inner.recv_until(None)? {
                return Ok(Pending { inner: p });
            }
        }
    }

    /// The next queued packet, or `None` when none came within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Pending>, InterceptError> {
        // A timeout too large for the clock waits as long as `recv`.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match self.inner.recv_until(deadline)? {
                Some(inner) => return Ok(Some(Pending { inner })),
                None if deadline.is_some() => return Ok(None),
                None => {}
            }
        }
    }

    /// Answers a packet: sets our mark bits for `verdict` (every other bit of its mark stays)
    /// and lets it walk the chain again, where the mark accepts it and saves the bits on its
    /// connection (allow), rejects it with a TCP reset or ICMP unreachable (block), or drops
    /// it (drop). Packets may be answered in any order.
    ///
    /// [`Verdict::Ask`] is not a verdict a packet can carry: the caller resolves prompts
    /// first. Given one anyway, the packet is blocked (failing closed) and a warning logged.
    pub fn verdict(&mut self, pending: Pending, verdict: Verdict) -> Result<(), InterceptError> {
        self.inner.verdict(pending.inner, verdict)
    }

    /// A handle that stops this queue's receiving from any thread.
    pub fn stopper(&self) -> QueueStopper {
        QueueStopper {
            inner: self.inner.stopper(),
        }
    }

    /// The queue number.
    pub fn queue_num(&self) -> u16 {
        self.inner.queue_num()
    }

    /// The marks verdicts set.
    pub fn marks(&self) -> Marks {
        self.inner.marks()
    }
}

/// Stops a [`Queue`]: a blocked or later [`Queue::recv`] returns [`InterceptError::Stopped`].
/// Cheap to clone and safe to use from any thread; stopping is final.
#[derive(Debug, Clone)]
pub struct QueueStopper {
    inner: imp::QueueStopper,
}

impl QueueStopper {
    /// Stops the queue's receiving (verdicts can still be sent).
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Sets the queue's own fail-open flag (what the kernel does with new packets while 4096
    /// wait): applied by the thread that receives, at once if it waits for packets.
    pub fn set_fail_open(&self, fail_open: bool) {
        self.inner.set_fail_open(fail_open);
    }
}

/// A queued packet waiting for its verdict.
///
/// Answer every one with [`Queue::verdict`], on the queue it came from: an unanswered packet
/// waits in the kernel (and holds its connection) until the queue is closed.
#[derive(Debug)]
#[must_use = "a queued packet waits in the kernel until it gets a verdict"]
pub struct Pending {
    inner: imp::Pending,
}

impl Pending {
    /// The packet's headers, or why they could not be read (answer it anyway).
    pub fn packet(&self) -> Result<PacketInfo, PacketError> {
        self.inner.packet()
    }

    /// The packet's mark (fwmark) as it was queued.
    pub fn mark(&self) -> u32 {
        self.inner.mark()
    }

    /// Outbound (queued in OUTPUT) or inbound (queued in INPUT).
    pub fn direction(&self) -> Option<Direction> {
        self.inner.direction()
    }

    /// The owner uid of the local socket that sent or receives it, when the kernel knows it.
    pub fn uid(&self) -> Option<u32> {
        self.inner.uid()
    }

    /// The owner gid of the local socket, when the kernel knows it.
    pub fn gid(&self) -> Option<u32> {
        self.inner.gid()
    }

    /// The kernel's id of the packet within its queue.
    pub fn packet_id(&self) -> u32 {
        self.inner.packet_id()
    }
}

/// The kernel's counters for queue `queue_num` in the calling thread's network namespace, if a
/// program is bound to it.
pub fn queue_stats(queue_num: u16) -> Option<QueueStats> {
    imp::queue_stats(queue_num)
}

/// Which connections [`forget_connections`] forgets. Only connections we allowed (our allow
/// bits in their connection mark) are ever touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetFilter {
    /// Every connection we allowed, both families.
    AllAllowed,
    /// Connections we allowed whose original destination is this address.
    AllowedTo(IpAddr),
    /// The one connection we allowed with this original 5-tuple (TCP or UDP).
    AllowedFlow {
        /// Its protocol (TCP or UDP; others are not matched).
        protocol: portcullis_protocol::Protocol,
        /// Original source address and port.
        src: std::net::SocketAddr,
        /// Original destination address and port.
        dst: std::net::SocketAddr,
    },
}

/// Deletes the conntrack entries of connections we allowed (in the calling thread's network
/// namespace), so that their next packet is queued and decided again; returns how many were
/// deleted. `config` gives the marks.
///
/// It talks to the kernel over conntrack netlink (no process is spawned; needs CAP_NET_ADMIN);
/// see [`ctnetlink`]. An entry that went by itself in the meantime is not counted and is not an
/// error. Fails with [`InterceptError::ConntrackSocket`] or [`InterceptError::Conntrack`]; with
/// the latter, entries found before the failure may have been deleted already.
pub fn forget_connections(
    config: &InterceptConfig,
    filter: ForgetFilter,
) -> Result<usize, InterceptError> {
    imp::forget_connections(&config.marks()?, &filter)
}

/// Lets one of the helper's own sockets (upstream DNS, updates) pass our rules without ever
/// waiting in the queue, so the helper can never wait on itself: sets our "allow" bits in the
/// socket's mark (the rule that accepts allowed packets comes before the queue), keeping every
/// other bit. Call it before the socket connects or sends. Needs `CAP_NET_ADMIN`. (Other
/// platforms will exclude the helper by its own identity instead.)
#[cfg(target_os = "linux")]
pub fn exclude_socket(
    fd: std::os::fd::BorrowedFd<'_>,
    config: &InterceptConfig,
) -> Result<(), InterceptError> {
    let marks = config.marks()?;
    linux::exclude_socket(fd, &marks).map_err(InterceptError::ExcludeSocket)
}

/// Where a connection from `peer` that arrived at `reached` was originally sent, when the
/// firewall redirected it (our DNS redirect): conntrack's original destination. `None` when
/// conntrack has no such connection (or it was not redirected: then it is `reached`). In the
/// calling thread's network namespace; needs CAP_NET_ADMIN.
pub fn original_destination(
    protocol: portcullis_protocol::Protocol,
    peer: std::net::SocketAddr,
    reached: std::net::SocketAddr,
) -> Result<Option<std::net::SocketAddr>, InterceptError> {
    imp::original_destination(protocol, peer, reached)
}

/// A TCP or UDP connection we allowed, in its original direction (`src` opened it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedConnection {
    /// TCP or UDP.
    pub protocol: portcullis_protocol::Protocol,
    /// Who opened it.
    pub src: std::net::SocketAddr,
    /// Where to.
    pub dst: std::net::SocketAddr,
    /// What it carried so far, when conntrack accounting is on (see [`enable_accounting`]).
    pub counters: Option<ctnetlink::Counters>,
}

/// Turns conntrack's byte and packet accounting on in the calling thread's network namespace
/// (`net.netfilter.nf_conntrack_acct`), for connections tracked from now on. Returns the value
/// it had, to give back to [`restore_accounting`] at stop: `Some(false)` when this turned it on,
/// `Some(true)` when it was on already, `None` where there is no conntrack to account.
pub fn enable_accounting() -> Result<Option<bool>, InterceptError> {
    imp::set_accounting(true)
}

/// Sets conntrack accounting back to `was_on` (the value [`enable_accounting`] found).
pub fn restore_accounting(was_on: bool) -> Result<(), InterceptError> {
    imp::set_accounting(was_on).map(|_| ())
}

/// The TCP and UDP connections we allowed that conntrack still tracks (in the calling thread's
/// network namespace), at most 65,536 of them: one dump filtered by our allow bits.
pub fn allowed_connections(
    config: &InterceptConfig,
) -> Result<Vec<AllowedConnection>, InterceptError> {
    imp::allowed_connections(&config.marks()?)
}

/// The UDP flows we allowed that conntrack still tracks, with their counters when accounting
/// is on: the kernel filters the dump by protocol, so TCP connections cost nothing here.
pub fn allowed_udp_flows(
    config: &InterceptConfig,
) -> Result<Vec<AllowedConnection>, InterceptError> {
    imp::allowed_udp_flows(&config.marks()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_move_to_the_verdict_thread() {
        send::<Queue>();
        send::<Pending>();
        send::<InstalledRules>();
        send_sync::<QueueStopper>();
    }

    #[test]
    fn default_config() {
        let c = InterceptConfig::default();
        assert_eq!(c.queue_num, 4200);
        assert_eq!(c.mark_mask, 0x9000_0000);
        assert!(c.fail_open);
        assert_eq!(c.exclude_cgroup, None);
        assert_eq!(c.dns_redirect, None);
        assert_eq!(
            DnsRedirect::default().v4.to_string(),
            "127.0.0.153:53",
            "the dns crate's default listen address"
        );
        assert_eq!(c.marks().unwrap().allow, 0x1000_0000);
        let bad = InterceptConfig { mark_mask: 1, ..c };
        assert!(matches!(
            bad.marks(),
            Err(InterceptError::BadMarkMask { mask: 1 })
        ));
    }
}
