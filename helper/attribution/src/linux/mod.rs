//! The Linux attributor: a lookup runs through stages, each answering what it can.
//!
//! 1. *(next increment)* eBPF socket records: cgroup hooks note each socket's owner when it is
//!    created or connects, so a process that exited at once is still named. It will sit in
//!    front of the stages below and answer with the same [`Attribution`].
//! 2. [`sock_diag`]: the kernel's exact lookup of the 4-tuple gives the socket's uid and inode;
//!    for inbound flows and UDP, a second lookup with the remote as wildcard finds listening
//!    and unconnected sockets.
//! 3. [`inodes`]: the inode's holder from `/proc/*/fd`, cached, re-checked, budgeted.
//! 4. [`processes`]: the holder's description, cached by pid and start time.
//!
//! Failures never escape: they are counted, logged at DEBUG without addresses, and weaken the
//! answer. Addresses and paths appear only in TRACE events.

mod identity;
mod inodes;
mod pidfd;
mod processes;
mod procfs;
mod sock_diag;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use crate::{
    Attribution, AttributionConfig, AttributionError, AttributionStats, Direction, Flow, Protocol,
};
use inodes::{IndexConfig, InodeIndex, Owner};
use processes::ProcessCache;
use procfs::ProcFs;
use sock_diag::{DiagProtocol, DiagSocket, SockDiag};

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Attributor {
    diag: SockDiag,
    inodes: InodeIndex,
    processes: ProcessCache,
    stats: AttributionStats,
}

impl Attributor {
    pub(crate) fn new(config: AttributionConfig) -> Result<Attributor, AttributionError> {
        let diag = SockDiag::open(config.netlink_timeout).map_err(AttributionError::Netlink)?;
        let procfs = ProcFs::new(config.proc_root);
        let index = IndexConfig {
            negative_ttl: config.negative_ttl,
            scan_budget_per_second: config.scan_budget_per_second,
            scan_burst: config.scan_burst,
        };
        Ok(Attributor {
            diag,
            inodes: InodeIndex::new(procfs.clone(), &index, Instant::now()),
            processes: ProcessCache::new(procfs, config.passwd, config.max_processes),
            stats: AttributionStats::default(),
        })
    }

    pub(crate) fn attribute(&mut self, flow: &Flow) -> Attribution {
        let started = Instant::now();
        let result = self.lookup(flow, started);
        let spent = started.elapsed();
        self.stats.lookups += 1;
        self.stats.time_spent += spent;
        match &result {
            Attribution::Process(info) => {
                self.stats.sockets_found += 1;
                self.stats.processes_found += 1;
                tracing::trace!(
                    protocol = %flow.protocol,
                    direction = ?flow.direction,
                    local = %flow.local,
                    remote = %flow.remote,
                    pid = info.pid,
                    app = %info.app.key(),
                    micros = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX),
                    "attributed"
                );
            }
            Attribution::SocketOnly { uid, inode } => {
                self.stats.sockets_found += 1;
                tracing::trace!(
                    protocol = %flow.protocol,
                    direction = ?flow.direction,
                    local = %flow.local,
                    remote = %flow.remote,
                    uid,
                    inode,
                    "socket found, owner not"
                );
            }
            Attribution::NotFound => {
                tracing::trace!(
                    protocol = %flow.protocol,
                    direction = ?flow.direction,
                    local = %flow.local,
                    remote = %flow.remote,
                    "no socket"
                );
            }
        }
        result
    }

    pub(crate) fn stats(&self) -> AttributionStats {
        let c = self.inodes.counters;
        AttributionStats {
            socket_cache_hits: c.holder_hits,
            negative_cache_hits: c.negative_hits,
            targeted_scans: c.targeted_scans,
            full_scans: c.full_scans,
            scans_throttled: c.throttled,
            scan_time: c.scan_time,
            ..self.stats
        }
    }

    fn lookup(&mut self, flow: &Flow, now: Instant) -> Attribution {
        let Some(socket) = self.find_socket(flow) else {
            return Attribution::NotFound;
        };
        let inode = u64::from(socket.inode);
        let socket_only = Attribution::SocketOnly {
            uid: socket.uid,
            inode,
        };
        let pid = match self.inodes.owner(inode, socket.uid, now) {
            Owner::Found { pid, .. } => pid,
            Owner::NotHeld | Owner::Throttled => return socket_only,
        };
        match self.processes.get(pid) {
            Ok((info, cached)) => {
                if cached {
                    self.stats.process_cache_hits += 1;
                }
                Attribution::Process(info)
            }
            Err(e) => {
                // It exited (or exec'd into something unreadable) since the scan.
                tracing::debug!(error = %e, "the socket's holder could not be read");
                self.inodes.forget_pid(pid);
                socket_only
            }
        }
    }

    /// The socket of `flow`, if the kernel has one with a file (inode ≠ 0).
    fn find_socket(&mut self, flow: &Flow) -> Option<DiagSocket> {
        let protocol = match flow.protocol {
            Protocol::Tcp => DiagProtocol::Tcp,
            Protocol::Udp => DiagProtocol::Udp,
            Protocol::Icmp => return None,
        };
        let (local, remote) = (canonical(flow.local), canonical(flow.remote));
        if local.is_ipv4() != remote.is_ipv4() {
            return None;
        }
        if let Some(found) = self.query(protocol, local, remote) {
            return Some(found);
        }
        // Listening TCP sockets and unconnected UDP sockets: no peer in the lookup.
        if flow.direction == Direction::Inbound || protocol == DiagProtocol::Udp {
            return self.query(protocol, local, unspecified(local));
        }
        None
    }

    fn query(
        &mut self,
        protocol: DiagProtocol,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<DiagSocket> {
        match self.diag.find(protocol, local, remote) {
            // Time-wait, request and orphaned sockets have no file, hence no owner.
            Ok(found) => found.filter(|s| s.inode != 0),
            Err(e) => {
                self.stats.netlink_errors += 1;
                tracing::debug!(error = %e, "sock_diag lookup failed");
                None
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The wildcard of `addr`'s family, port 0.
fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// See [`crate::cgroup2_mount`].
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    let text = procfs::read_text(
        std::path::Path::new("/proc/self/mountinfo"),
        4 * 1024 * 1024,
    )
    .map_err(|e| tracing::debug!(error = %e, "cannot read /proc/self/mountinfo"))
    .ok()?;
    procfs::parse_cgroup2_mount(&text)
}

#[cfg(test)]
mod tests;
