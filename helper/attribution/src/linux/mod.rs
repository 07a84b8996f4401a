//! The Linux attributor: a lookup runs through stages, each answering what it can.
//!
//! 1. [`ebpf`] (when configured): the flow's record in the kernel's maps, made as the socket
//!    connected or sent. A record of an open socket, made by the process that connected or
//!    sent, answers at once: its owner's pid and start time go to stage 4, and if that process
//!    has exited unseen, the kernel's own record of it (comm, parent, executable path) is the
//!    description. Records of listeners, bound and accepted sockets, and of sockets already
//!    closed, are held back: they answer only if the stages below cannot (the holder of a
//!    socket-activated listener is not who called `listen()`; a closed socket's addresses may
//!    belong to a new socket by now).
//! 2. [`sock_diag`]: the kernel's exact lookup of the 4-tuple gives the socket's uid, inode
//!    and cookie; for inbound flows and UDP, a second lookup with the remote as wildcard finds
//!    listening and unconnected sockets. With eBPF, an outbound socket's cookie names its
//!    owner directly (a connected UDP socket, whose port was chosen after the connect hook).
//! 3. [`inodes`]: the inode's holder from `/proc/*/fd`, cached, re-checked, budgeted.
//! 4. [`processes`]: the holder's description, cached by pid and start time; a process is
//!    read as soon as an eBPF record names it and it still runs, so that it can be described
//!    fully even after it exits.
//!
//! Failures never escape: they are counted, logged at DEBUG without addresses, and weaken the
//! answer. Addresses and paths appear only in TRACE events.

mod ebpf;
mod fast;
mod identity;
mod inodes;
mod pidfd;
mod processes;
mod procfs;
mod sock_diag;
mod traffic;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::{
    AppIdentity, Attributed, Attribution, AttributionConfig, AttributionError, AttributionStats,
    Direction, EbpfStatus, Flow, KernelProcess, ProcessInfo, Protocol,
};
use ebpf::{EbpfSource, FlowVal, MapSizes};
pub(crate) use fast::{FastEvents, FastPath};
use inodes::{IndexConfig, InodeIndex, Owner};
use processes::ProcessCache;
use procfs::ProcFs;
use sock_diag::{DiagProtocol, DiagSocket, SockDiag};
pub(crate) use traffic::{TcpSampler, TrafficEvents};

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Attributor {
    diag: SockDiag,
    /// For the ping sockets table (ICMP).
    procfs: ProcFs,
    inodes: InodeIndex,
    processes: ProcessCache,
    ebpf: Option<EbpfStage>,
    stats: AttributionStats,
}

/// The eBPF source with what it needs to name owners.
#[derive(Debug)]
struct EbpfStage {
    source: EbpfSource,
    /// The cookie of the network namespace the sock_diag socket sees: flows of other
    /// namespaces are not ours.
    netns: u64,
    /// Descriptions built from kernel records of processes that exited unseen.
    recorded: HashMap<ebpf::Owner, Arc<ProcessInfo>>,
    /// Descriptions by the kernel's name of a process image (pid, start time, exec count):
    /// while that name is the same, the process runs the same program it was described
    /// running, so a hit needs no `/proc` check at all.
    images: HashMap<(u32, u64, u64), Arc<ProcessInfo>>,
    max_recorded: usize,
    /// Nanoseconds per clock tick of `/proc/PID/stat`'s start time.
    ns_per_tick: u64,
}

impl Attributor {
    pub(crate) fn new(config: AttributionConfig) -> Result<Attributor, AttributionError> {
        let diag = SockDiag::open(config.netlink_timeout).map_err(AttributionError::Netlink)?;
        let ebpf = match &config.ebpf_cgroup {
            None => None,
            Some(cgroup) => {
                let netns = diag.netns_cookie().map_err(|e| AttributionError::Ebpf {
                    action: "read the network namespace cookie",
                    cgroup: cgroup.clone(),
                    source: Box::new(e),
                })?;
                let sizes = MapSizes {
                    flows: config.ebpf_max_flows,
                    processes: config.ebpf_max_processes,
                };
                Some(EbpfStage {
                    source: EbpfSource::attach(cgroup, sizes)?,
                    netns,
                    recorded: HashMap::new(),
                    images: HashMap::new(),
                    max_recorded: config.max_processes.max(1),
                    ns_per_tick: ns_per_tick(),
                })
            }
        };
        let procfs = ProcFs::new(config.proc_root);
        let index = IndexConfig {
            negative_ttl: config.negative_ttl,
            scan_budget_per_second: config.scan_budget_per_second,
            scan_burst: config.scan_burst,
        };
        Ok(Attributor {
            procfs: procfs.clone(),
            diag,
            inodes: InodeIndex::new(procfs.clone(), &index, Instant::now()),
            processes: ProcessCache::new(procfs, config.passwd, config.max_processes),
            ebpf,
            stats: AttributionStats::default(),
        })
    }

    pub(crate) fn attribute(&mut self, flow: &Flow) -> Attributed {
        let started = Instant::now();
        let (result, owner) = self.lookup(flow, started);
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
            Attribution::Exited { pid, uid, comm } => {
                self.stats.sockets_found += 1;
                tracing::trace!(
                    protocol = %flow.protocol,
                    direction = ?flow.direction,
                    local = %flow.local,
                    remote = %flow.remote,
                    pid,
                    uid,
                    comm = %comm,
                    "owner exited unnamed"
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
        // The kernel's name of the process, only when it is the process named.
        let kernel = match &result {
            Attribution::Process(info) => {
                owner.filter(|o| o.tgid == info.pid).map(|o| KernelProcess {
                    pid: o.tgid,
                    start_ns: o.start_ns,
                    exec_id: o.exec_id,
                })
            }
            _ => None,
        };
        Attributed {
            attribution: result,
            kernel,
        }
    }

    pub(crate) fn fast_path(&mut self) -> Option<fast::FastPath> {
        let maps = self.ebpf.as_mut()?.source.take_fast()?;
        Some(fast::FastPath::new(maps))
    }

    pub(crate) fn traffic(&mut self) -> Option<traffic::TrafficEvents> {
        let ring = self.ebpf.as_mut()?.source.take_traffic()?;
        Some(traffic::TrafficEvents { ring })
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
            ebpf_errors: self.ebpf.as_ref().map_or(0, |e| e.source.errors),
            ..self.stats
        }
    }

    pub(crate) fn ebpf_status(&self) -> Option<EbpfStatus> {
        self.ebpf.as_ref().map(|e| e.source.status())
    }

    /// The attribution, and the eBPF record of the owner it came from, if it came from one.
    fn lookup(&mut self, flow: &Flow, now: Instant) -> (Attribution, Option<ebpf::Owner>) {
        let flow = Flow {
            local: canonical(flow.local),
            remote: canonical(flow.remote),
            ..*flow
        };
        // Stage 1: eBPF records.
        let mut held_back: Option<FlowVal> = None;
        if let Some(stage) = self.ebpf.as_mut() {
            for key in ebpf::candidate_keys(&flow, stage.netns) {
                let Some(record) = stage.source.flow(&key) else {
                    continue;
                };
                if record.kind().is_direct() && stage.source.socket_owner(record.cookie).is_some() {
                    self.stats.ebpf_hits += 1;
                    return (self.describe(&record.owner), Some(record.owner));
                }
                held_back.get_or_insert(record);
            }
        }
        if flow.protocol == Protocol::Icmp {
            // A ping socket (ICMP datagram socket): the echo id is its "port". Raw sockets
            // cannot be told apart by a packet: they stay unattributed.
            return (self.ping_holder(&flow, now), None);
        }
        let Some(socket) = self.find_socket(&flow) else {
            // No socket any more: the process closed it or exited. The record names it.
            if let Some(record) = held_back {
                self.stats.ebpf_closed_hits += 1;
                return (self.describe(&record.owner), Some(record.owner));
            }
            return (Attribution::NotFound, None);
        };
        // The cookie of an outbound socket names whoever connected or sent with it.
        let cookie_owner = self.ebpf.as_mut().and_then(|stage| {
            stage.source.socket_owner(socket.cookie).or_else(|| {
                held_back
                    .filter(|r| r.cookie == socket.cookie)
                    .map(|r| r.owner)
            })
        });
        if flow.direction == Direction::Outbound
            && let Some(owner) = cookie_owner
        {
            self.stats.ebpf_cookie_hits += 1;
            return (self.describe(&owner), Some(owner));
        }
        let answer = self.holder_from_procfs(socket, now);
        if let (Attribution::SocketOnly { .. }, Some(owner)) = (&answer, cookie_owner) {
            // The holder could not be found: the recorded owner of this very socket.
            self.stats.ebpf_cookie_hits += 1;
            return (self.describe(&owner), Some(owner));
        }
        (answer, None)
    }

    /// The holder of the ping socket an ICMP echo `flow` (local port = echo id) came from.
    fn ping_holder(&mut self, flow: &Flow, now: Instant) -> Attribution {
        let id = flow.local.port();
        if id == 0 {
            return Attribution::NotFound;
        }
        let text = match self.procfs.ping_sockets(flow.local.is_ipv6()) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the ping sockets");
                return Attribution::NotFound;
            }
        };
        let Some((uid, inode)) = procfs::find_ping_socket(&text, id) else {
            return Attribution::NotFound;
        };
        let Ok(inode32) = u32::try_from(inode) else {
            return Attribution::NotFound;
        };
        self.holder_from_procfs(
            DiagSocket {
                family: if flow.local.is_ipv6() { 10 } else { 2 },
                state: 7,
                uid,
                inode: inode32,
                local: flow.local,
                remote: flow.remote,
                cookie: 0,
            },
            now,
        )
    }

    /// Stages 3 and 4 for a socket sock_diag found.
    fn holder_from_procfs(&mut self, socket: DiagSocket, now: Instant) -> Attribution {
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

    /// Names the process an eBPF record calls `owner`: as it is now if it still runs (and is
    /// the same process: same start time), as it was described while it ran, or from the
    /// kernel's record of it.
    fn describe(&mut self, owner: &ebpf::Owner) -> Attribution {
        let Some(stage) = self.ebpf.as_mut() else {
            return Attribution::NotFound;
        };
        let image = (owner.tgid, owner.start_ns, owner.exec_id);
        if let Some(info) = stage.images.get(&image) {
            self.stats.process_cache_hits += 1;
            return Attribution::Process(Arc::clone(info));
        }
        let start_time = owner.start_ns / stage.ns_per_tick.max(1);
        let described = self.processes.get_started(owner.tgid, start_time);
        let replaced = described.as_ref().is_some_and(|(info, _)| {
            // Read from /proc after the socket was used: if the process called execve in
            // between, /proc shows the new program. The kernel recorded the program that used
            // the socket; another file name means another program (a path can differ between
            // mount namespaces, a name hardly ever).
            let recorded = stage.source.process(owner).and_then(|r| r.exe);
            recorded.is_some_and(|exe| exe.file_name() != info.exe.file_name())
        });
        if replaced {
            tracing::debug!(
                pid = owner.tgid,
                "the process became another program after using the socket"
            );
        } else if let Some((info, cached)) = described {
            if cached {
                self.stats.process_cache_hits += 1;
            }
            // Read just now (or revalidated) and checked against the kernel's record.
            if !info.partial {
                if stage.images.len() >= stage.max_recorded {
                    stage.images.clear();
                }
                stage.images.insert(image, Arc::clone(&info));
            }
            return Attribution::Process(info);
        }
        if let Some(info) = stage.recorded.get(owner) {
            self.stats.process_cache_hits += 1;
            return Attribution::Process(Arc::clone(info));
        }
        let Some(record) = stage.source.process(owner) else {
            return Attribution::Exited {
                pid: owner.tgid,
                uid: owner.uid,
                comm: String::new(),
            };
        };
        let Some(exe) = record.exe else {
            return Attribution::Exited {
                pid: owner.tgid,
                uid: owner.uid,
                comm: record.comm,
            };
        };
        let info = Arc::new(ProcessInfo {
            pid: owner.tgid,
            start_time,
            app: AppIdentity::Executable(exe.clone()),
            exe,
            exe_deleted: false,
            cmdline: Vec::new(),
            uid: owner.uid,
            user: self.processes.user_name(owner.uid),
            parents: self.processes.parents_of_exited(record.ppid, start_time),
            cgroup: String::new(),
            comm: record.comm,
            partial: true,
        });
        self.stats.recorded_descriptions += 1;
        if stage.recorded.len() >= stage.max_recorded {
            stage.recorded.clear();
        }
        stage.recorded.insert(*owner, Arc::clone(&info));
        Attribution::Process(info)
    }

    /// The socket of `flow` (canonical addresses), if the kernel has one with a file
    /// (inode ≠ 0).
    fn find_socket(&mut self, flow: &Flow) -> Option<DiagSocket> {
        let protocol = match flow.protocol {
            Protocol::Tcp => DiagProtocol::Tcp,
            Protocol::Udp => DiagProtocol::Udp,
            Protocol::Icmp => return None,
        };
        let (local, remote) = (flow.local, flow.remote);
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

/// Nanoseconds per clock tick of `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn ns_per_tick() -> u64 {
    // SAFETY: sysconf takes a constant and only returns a value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .map_or(10_000_000, |t| 1_000_000_000 / t)
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
