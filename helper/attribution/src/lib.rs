//! Attribution: which process, and which app, owns the socket of a connection. The daemon
//! hands an [`Attributor`] the addresses of a new connection (a [`Flow`]) on its verdict
//! thread and gets back the owning process with its executable, command line, user, parents,
//! cgroup and [`AppIdentity`] (the key of the app's profile), or what could be found short of
//! that ([`Attribution`]). This crate reads the kernel's view and decides nothing: it never
//! blocks traffic, holds no policy, and turns every failure into a weaker answer rather than an
//! error or a panic.
//!
//! On Linux a lookup runs in stages (see `linux/mod.rs`). With
//! [`AttributionConfig::ebpf_cgroup`] set, cgroup eBPF programs record every socket that the
//! processes of that cgroup (the whole machine when it is the cgroup2 root) create or use: its
//! owner by socket cookie, each flow's addresses, and each process' executable path, read in
//! the kernel. A lookup asks those maps first — a process that exited right after connecting
//! is still named — and falls back to netlink `sock_diag` (the socket's uid, inode and cookie,
//! ~3 µs) and an index of `/proc/*/fd` links (cached and re-checked; full scans are
//! rate-limited by a time budget); a cache keyed by pid *and* start time describes processes.
//! Without eBPF, a process that exits right after connecting can leave its socket without a
//! holder: the answer is then [`Attribution::SocketOnly`]. Other platforms compile, and
//! [`Attributor::new`] returns [`AttributionError::Unsupported`] there.
//!
//! Platform code lives in one module per platform, chosen here and nowhere else.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use portcullis_protocol::{Direction, Protocol};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as imp;

/// The addresses of one connection, from the point of view of this machine.
///
/// For an outbound packet `local` is its source and `remote` its destination; for an inbound
/// one, `local` is its destination and `remote` its source. IPv4-mapped IPv6 addresses are
/// treated as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The transport protocol; ICMP is never attributed (it has no socket to find).
    pub protocol: Protocol,
    /// Who opened the connection.
    pub direction: Direction,
    /// This machine's address and port.
    pub local: SocketAddr,
    /// The other end's address and port.
    pub remote: SocketAddr,
}

/// A process that owns a socket, as it was when it was first attributed (re-read whenever its
/// pid, start time or executable change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks after boot (`/proc/PID/stat` field 22);
    /// `(pid, start_time)` names one process even after its pid is reused.
    pub start_time: u64,
    /// The executable (`/proc/PID/exe`), without the kernel's ` (deleted)` suffix.
    pub exe: PathBuf,
    /// Whether the executable was deleted or replaced since the process started (an update
    /// in place, or something hiding its binary).
    pub exe_deleted: bool,
    /// The command line (at most its first 32 KiB), lossily decoded as UTF-8.
    pub cmdline: Vec<String>,
    /// The effective uid.
    pub uid: u32,
    /// The user's name from `/etc/passwd`, if it is listed there.
    pub user: Option<String>,
    /// The ancestors, parent first, up to pid 1 and at most 32; an ancestor whose executable
    /// cannot be read (a kernel thread) has an empty path. The parent is the process holding
    /// the parent pid when this process was described, with the executable it ran then; the
    /// ancestors above it are as they were when the parent was first described (a cache), so
    /// one that exec'd or exited since keeps its recorded pid and executable.
    pub parents: Vec<(u32, PathBuf)>,
    /// The cgroup path in the unified (v2) hierarchy (or systemd's v1 hierarchy on hosts
    /// without one); empty if unknown.
    pub cgroup: String,
    /// The app the process belongs to.
    pub app: AppIdentity,
    /// The kernel's short name of the process (`comm`, at most 15 bytes); empty if unknown.
    pub comm: String,
    /// Whether this is only what the kernel recorded when the process used the socket: it had
    /// exited before it could be read from `/proc`. Then `pid`, `start_time`, `exe`, `uid`,
    /// `user`, `comm` and the parent's pid are known; `cmdline` and `cgroup` are empty,
    /// `exe_deleted` is false, and `app` is the executable (a Flatpak or Snap app or an
    /// AppImage that exits this fast is identified by its executable path).
    pub partial: bool,
}

/// The app a process belongs to: what a profile is attached to.
///
/// How sure each kind is: an executable path is what the kernel reports. A Flatpak app id is
/// taken from the systemd scope Flatpak starts the app in and checked against the sandbox's own
/// `/.flatpak-info` (a process outside a sandbox that names its scope like Flatpak's is
/// identified by its executable instead). A snap name comes from its scope name alone and an
/// AppImage from the `APPIMAGE` variable of the process' environment (when that file exists,
/// and only for an executable inside an AppImage's mount, `.mount_*` or
/// `appimage_extracted_*`: a program the AppImage merely started is itself):
/// a program running as the same user can claim either, so they identify well-behaved apps
/// rather than resist an adversary of the same user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AppIdentity {
    /// An ordinary program, by executable path.
    Executable(PathBuf),
    /// A Flatpak app, by application id (`org.mozilla.firefox`).
    Flatpak(String),
    /// A snap, by snap name (`firefox`).
    Snap(String),
    /// An AppImage, by the path of its `.AppImage` file.
    AppImage(PathBuf),
}

impl AppIdentity {
    /// The profile key: the executable or AppImage path, `flatpak:ID` or `snap:NAME`. A path
    /// that is not valid UTF-8 is converted lossily.
    pub fn key(&self) -> String {
        match self {
            AppIdentity::Executable(path) => path.to_string_lossy().into_owned(),
            // A key space of its own: the AppImage path comes from the process's environment,
            // which the process chooses, so it must never name an installed executable's
            // profile.
            AppIdentity::AppImage(path) => format!("appimage:{}", path.to_string_lossy()),
            AppIdentity::Flatpak(id) => format!("flatpak:{id}"),
            AppIdentity::Snap(name) => format!("snap:{name}"),
        }
    }
}

/// What [`Attributor::attribute`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// The process that holds the socket.
    Process(Arc<ProcessInfo>),
    /// The socket exists, but no process could be named: it exited right after connecting
    /// (without eBPF, or outside its cgroup), handed the socket on, or the `/proc` scan budget
    /// was spent during a storm.
    SocketOnly {
        /// The uid that created the socket, as the kernel records it.
        uid: u32,
        /// The socket's inode.
        inode: u64,
    },
    /// eBPF recorded the socket's owner, but the process exited before it could be read and
    /// its executable path could not be recorded (deeper than 48 components or longer than
    /// ~512 bytes, or unreadable): only the kernel's short name is known, which any program
    /// can choose, so it names no app.
    Exited {
        /// The process id (it may already belong to another process).
        pid: u32,
        /// The effective uid when it used the socket.
        uid: u32,
        /// The kernel's short name (`comm`).
        comm: String,
    },
    /// No socket matches (traffic of the kernel itself, of another namespace, ICMP, a socket
    /// already closed, or a lookup that failed; failures are logged).
    NotFound,
}

/// A process as the kernel's eBPF records name it: pid, start time and exec count. It names one
/// program image of one process: a recycled pid or an `execve` gives another value. The fast
/// path caches decisions under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelProcess {
    /// The process id (of the initial pid namespace).
    pub pid: u32,
    /// When the process started, CLOCK_BOOTTIME nanoseconds.
    pub start_ns: u64,
    /// How many `execve`s the process had done.
    pub exec_id: u64,
}

/// What [`Attributor::attribute_flow`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    /// Who owns the socket.
    pub attribution: Attribution,
    /// The kernel's name of that process, when the answer came from an eBPF record of it.
    pub kernel: Option<KernelProcess>,
}

/// A decision the kernel can repeat without asking userspace (see [`FastPath`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastVerdict {
    /// TCP: the socket gets the firewall's "allow" mark, so its connection skips the queue.
    Allow,
    /// TCP or connected UDP: `connect()` fails with `EPERM`, nothing is sent.
    Block,
}

/// A decision for the kernel to repeat: `verdict` for `app`'s later connections over
/// `protocol` to `remote`, made under policy `generation` for a connection of `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastDecision {
    /// The process whose connection was decided (its app is `app` from now on).
    pub process: KernelProcess,
    /// The app's number (any stable number per profile).
    pub app: u32,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The destination.
    pub remote: SocketAddr,
    /// What to repeat.
    pub verdict: FastVerdict,
    /// The policy generation it was made under.
    pub generation: u64,
    /// How long it may be repeated at most (`None`: while the generation lasts). A decision
    /// that rested on the app's DNS lookup ends with the lookup.
    pub valid_for: Option<Duration>,
}

/// The firewall's mark bits the fast path uses: `mask` (all of ours) and the `allow` value
/// within it. A socket's other mark bits are never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastMarks {
    /// Our bits of the mark.
    pub mask: u32,
    /// The "allow" bits (within `mask`).
    pub allow: u32,
}

/// A connection decided in the kernel by the fast path, reported after the fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastEvent {
    /// The process that connected.
    pub process: KernelProcess,
    /// Its effective uid.
    pub uid: u32,
    /// The app number given to [`FastPath::remember`].
    pub app: u32,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// What the kernel did.
    pub verdict: FastVerdict,
    /// This machine's address and port (known for allowed TCP connections; not for refused
    /// connects, which never got one).
    pub local: Option<SocketAddr>,
    /// The destination.
    pub remote: SocketAddr,
}

/// What one TCP connection of an app carried, reported by the kernel when the connection
/// closed (TCP state CLOSE: after TIME_WAIT began, a reset, or both sides closed): payload bytes as TCP counts them (acknowledged going out, received coming in)
/// and segments each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficEvent {
    /// TCP (the only protocol reported so far).
    pub protocol: Protocol,
    /// This machine's end.
    pub local: SocketAddr,
    /// The other end.
    pub remote: SocketAddr,
    /// Bytes sent (and acknowledged by the other end).
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Segments sent.
    pub packets_out: u64,
    /// Segments received.
    pub packets_in: u64,
}

/// What one open TCP connection has carried so far (sampled from the kernel's `tcp_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSample {
    /// This machine's end.
    pub local: SocketAddr,
    /// The other end.
    pub remote: SocketAddr,
    /// Bytes sent and acknowledged.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Segments sent.
    pub packets_out: u64,
    /// Segments received.
    pub packets_in: u64,
}

/// Samples the byte counters of every open TCP connection of the calling thread's network
/// namespace (one sock_diag dump per family; no eBPF needed), for live rates.
#[derive(Debug)]
pub struct TcpSampler {
    inner: imp::TcpSampler,
}

impl TcpSampler {
    /// Opens a sock_diag socket in the calling thread's network namespace.
    pub fn new() -> std::io::Result<TcpSampler> {
        imp::TcpSampler::new().map(|inner| TcpSampler { inner })
    }

    /// At most `max` connections' counters, now.
    pub fn sample(&mut self, max: usize) -> std::io::Result<Vec<TcpSample>> {
        self.inner.sample(max)
    }
}

/// Reads the kernel's reports of what connections carried (needs eBPF).
#[derive(Debug)]
pub struct TrafficEvents {
    inner: imp::TrafficEvents,
}

impl TrafficEvents {
    /// The next report, waiting at most `timeout` for one.
    pub fn next(&mut self, timeout: Duration) -> Option<TrafficEvent> {
        self.inner.next(timeout)
    }
}

/// The kernel side of the firewall's decision cache: a verdict that userspace made for an
/// app and a destination is repeated by the eBPF connect hooks for that app's later
/// connections there, so they never wait in the packet queue (see `ebpf/attribution.bpf.c`).
/// Every cached verdict carries the policy generation it was made under and counts only while
/// that generation is current: [`set_generation`](Self::set_generation) after every policy
/// change retires them all at once. Off until [`enable`](Self::enable); cloning shares it.
#[derive(Debug, Clone)]
pub struct FastPath {
    inner: imp::FastPath,
}

impl FastPath {
    /// Turns the fast path on with these marks and policy generation.
    pub fn enable(&self, marks: FastMarks, generation: u64) -> std::io::Result<()> {
        self.inner.configure(Some(marks), generation)
    }

    /// Turns it off: the hooks only observe again.
    pub fn disable(&self) -> std::io::Result<()> {
        self.inner.configure(None, 0)
    }

    /// Makes `generation` the current policy generation: verdicts cached under any other no
    /// longer count.
    pub fn set_generation(&self, generation: u64) -> std::io::Result<()> {
        self.inner.set_generation(generation)
    }

    /// Caches a decision (see [`FastDecision`]) and names its process as one of its app's.
    /// UDP "allow" is not cached (a connected UDP socket can still send elsewhere); ICMP has
    /// no connect.
    pub fn remember(&self, decision: &FastDecision) -> std::io::Result<()> {
        self.inner.remember(decision)
    }

    /// The reader of the kernel's reports, once (later calls give `None`).
    pub fn take_events(&self) -> Option<FastEvents> {
        self.inner.take_events().map(|inner| FastEvents { inner })
    }
}

/// Reads the fast path's reports of connections decided in the kernel.
#[derive(Debug)]
pub struct FastEvents {
    inner: imp::FastEvents,
}

impl FastEvents {
    /// The next report, waiting at most `timeout` for one.
    pub fn next(&mut self, timeout: Duration) -> Option<FastEvent> {
        self.inner.next(timeout)
    }
}

/// Counters since the [`Attributor`] was made. Stages added later bring their own fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttributionStats {
    /// Calls of [`Attributor::attribute`].
    pub lookups: u64,
    /// Lookups that found a socket.
    pub sockets_found: u64,
    /// Lookups that found the process ([`Attribution::Process`]).
    pub processes_found: u64,
    /// Socket → process answers from the index, without scanning `/proc`.
    pub socket_cache_hits: u64,
    /// Process descriptions reused from the cache.
    pub process_cache_hits: u64,
    /// Misses answered by a remembered failed scan.
    pub negative_cache_hits: u64,
    /// Scans of the processes that owned recent sockets.
    pub targeted_scans: u64,
    /// Scans of all processes (they stop at the holder).
    pub full_scans: u64,
    /// Misses answered without scanning because the scan budget was spent.
    pub scans_throttled: u64,
    /// sock_diag requests that failed (timeouts, kernel errors, malformed replies).
    pub netlink_errors: u64,
    /// Lookups answered from an eBPF flow record of a socket that is still open.
    pub ebpf_hits: u64,
    /// Lookups answered from an eBPF flow record of a socket that had closed (the process
    /// exited or closed it) and that sock_diag no longer finds.
    pub ebpf_closed_hits: u64,
    /// Lookups answered by sock_diag's socket cookie → the eBPF owner record.
    pub ebpf_cookie_hits: u64,
    /// Process descriptions built from the eBPF process record (the process had exited).
    pub recorded_descriptions: u64,
    /// eBPF map reads that failed (other than "no entry").
    pub ebpf_errors: u64,
    /// Time spent in [`Attributor::attribute`].
    pub time_spent: Duration,
    /// The part of it spent scanning `/proc/*/fd`.
    pub scan_time: Duration,
}

/// Tunables of an [`Attributor`]; [`Default`] suits the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionConfig {
    /// Where the proc filesystem is mounted (`/proc`).
    pub proc_root: PathBuf,
    /// The file user names are read from (`/etc/passwd`; no NSS, so no directory service
    /// is ever waited on).
    pub passwd: PathBuf,
    /// How long one sock_diag request may take before it counts as failed (50 ms).
    pub netlink_timeout: Duration,
    /// How long a socket that no process held at a complete scan stays unattributed without
    /// scanning again (1 s).
    pub negative_ttl: Duration,
    /// Scanning time allowed per second of wall time, on average (250 ms: at most a quarter
    /// of a core goes to `/proc` scans, whatever the traffic).
    pub scan_budget_per_second: Duration,
    /// Scanning time that may be spent at once after a quiet period (200 ms).
    pub scan_burst: Duration,
    /// Processes kept described in the cache (4096); the least recently used half is dropped
    /// when it is full.
    pub max_processes: usize,
    /// The cgroup2 directory whose processes' sockets eBPF records (and every cgroup below
    /// it): the cgroup2 root (see [`cgroup2_mount`]) for the whole machine. `None` (the
    /// default): no eBPF, lookups use sock_diag and `/proc` only. Attaching needs `CAP_BPF`,
    /// `CAP_PERFMON` and `CAP_NET_ADMIN` (or `CAP_SYS_ADMIN`) and a kernel with BTF; the
    /// programs stay attached as long as the [`Attributor`] (not pinned: they also go when the
    /// process dies). They only observe: they never refuse a socket operation.
    pub ebpf_cgroup: Option<PathBuf>,
    /// Entries of each eBPF flow and socket map (65536; about 40 bytes each). Least recently
    /// used entries are evicted when a map is full.
    pub ebpf_max_flows: u32,
    /// Entries of the eBPF process map (8192; about 800 bytes each, with the executable path).
    pub ebpf_max_processes: u32,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            proc_root: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            netlink_timeout: Duration::from_millis(50),
            negative_ttl: Duration::from_secs(1),
            scan_budget_per_second: Duration::from_millis(250),
            scan_burst: Duration::from_millis(200),
            max_processes: 4096,
            ebpf_cgroup: None,
            ebpf_max_flows: 65_536,
            ebpf_max_processes: 8192,
        }
    }
}

/// Why an [`Attributor`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// This platform has no attribution yet.
    #[error("{what} is not supported on this platform yet")]
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// The netlink sock_diag socket could not be opened (needs Linux with `inet_diag`;
    /// `CAP_NET_ADMIN` is not required for lookups).
    #[error("cannot open the sock_diag netlink socket")]
    Netlink(#[source] std::io::Error),
    /// The eBPF programs could not be loaded or attached to [`AttributionConfig::ebpf_cgroup`]
    /// (missing privileges, a path that is not a cgroup2 directory, a kernel without BTF or
    /// the hooks, or a verifier refusal, whose log is in the source). Nothing stays attached;
    /// the caller may retry without eBPF.
    #[error("eBPF attribution: cannot {action} (cgroup {})", cgroup.display())]
    Ebpf {
        /// The step that failed.
        action: &'static str,
        /// The cgroup directory it was for.
        cgroup: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The state of the eBPF source, for diagnostics ([`Attributor::ebpf_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EbpfStatus {
    /// The cgroup the programs are attached to.
    pub cgroup: PathBuf,
    /// Programs loaded and attached.
    pub programs: usize,
    /// Entries now in the flow map, the socket map and the process map.
    pub flow_entries: usize,
    /// See `flow_entries`.
    pub socket_entries: usize,
    /// See `flow_entries`.
    pub process_entries: usize,
    /// The capacity of the flow map and of the socket map.
    pub max_flows: u32,
    /// The capacity of the process map.
    pub max_processes: u32,
    /// Socket owners, flows and processes recorded by the kernel since attaching.
    pub sockets_recorded: u64,
    /// See `sockets_recorded`.
    pub flows_recorded: u64,
    /// See `sockets_recorded`.
    pub processes_recorded: u64,
    /// Processes whose executable path could not be recorded.
    pub exe_unread: u64,
    /// Map updates the kernel refused.
    pub update_failures: u64,
    /// Connects the fast path allowed (marked) and refused in the kernel, and its reports
    /// lost because the ring buffer was full.
    pub fast_allowed: u64,
    /// See `fast_allowed`.
    pub fast_blocked: u64,
    /// See `fast_allowed`.
    pub fast_events_lost: u64,
}

/// Finds the process behind connections. One per verdict thread: it is `Send`, not shared,
/// and its caches make repeated lookups cheap.
#[derive(Debug)]
pub struct Attributor {
    inner: imp::Attributor,
}

impl Attributor {
    /// Opens the kernel interfaces, and attaches the eBPF programs when
    /// [`AttributionConfig::ebpf_cgroup`] is set (failing with [`AttributionError::Ebpf`]
    /// rather than running without them). The sock_diag socket belongs to the *calling
    /// thread's* network namespace: only sockets of that namespace are found, whichever
    /// thread later calls [`attribute`](Self::attribute). eBPF records sockets of every
    /// namespace; flows are matched by addresses, so keep the addresses of the namespaces
    /// whose processes share the cgroup apart.
    pub fn new(config: AttributionConfig) -> Result<Attributor, AttributionError> {
        imp::Attributor::new(config).map(|inner| Attributor { inner })
    }

    /// Who owns the socket of `flow`. Never panics and never fails: errors are logged (at
    /// DEBUG) and give [`Attribution::NotFound`] or [`Attribution::SocketOnly`].
    pub fn attribute(&mut self, flow: &Flow) -> Attribution {
        self.inner.attribute(flow).attribution
    }

    /// [`attribute`](Self::attribute), with the kernel's name of the process when eBPF
    /// recorded it.
    pub fn attribute_flow(&mut self, flow: &Flow) -> Attributed {
        self.inner.attribute(flow)
    }

    /// The kernel side of the decision cache, once (later calls, and attributors without
    /// eBPF, give `None`).
    pub fn fast_path(&mut self) -> Option<FastPath> {
        self.inner.fast_path().map(|inner| FastPath { inner })
    }

    /// The reader of the kernel's reports of what connections carried, once (`None`
    /// without eBPF, and on later calls).
    pub fn traffic(&mut self) -> Option<TrafficEvents> {
        self.inner.traffic().map(|inner| TrafficEvents { inner })
    }

    /// Counters since this attributor was made.
    pub fn stats(&self) -> AttributionStats {
        self.inner.stats()
    }

    /// The eBPF source's maps and kernel-side counters, or `None` without eBPF. Counting the
    /// entries walks every map (one system call per entry): for diagnostics, not per packet.
    pub fn ebpf_status(&self) -> Option<EbpfStatus> {
        self.inner.ebpf_status()
    }
}

/// Where the unified (v2) cgroup hierarchy is mounted in this process' mount namespace, from
/// `/proc/self/mountinfo`: `/sys/fs/cgroup` on pure-v2 hosts, `/sys/fs/cgroup/unified` on hybrid
/// ones; `None` if it is not mounted or on other platforms. (`ip netns exec` remounts `/sys`,
/// so call this before entering a namespace that way.)
pub fn cgroup2_mount() -> Option<PathBuf> {
    imp::cgroup2_mount()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_keys() {
        assert_eq!(
            AppIdentity::Executable("/usr/bin/curl".into()).key(),
            "/usr/bin/curl"
        );
        assert_eq!(
            AppIdentity::Flatpak("org.mozilla.firefox".into()).key(),
            "flatpak:org.mozilla.firefox"
        );
        assert_eq!(AppIdentity::Snap("spotify".into()).key(), "snap:spotify");
        assert_eq!(
            AppIdentity::AppImage("/home/u/Foo.AppImage".into()).key(),
            "appimage:/home/u/Foo.AppImage",
            "an AppImage never shares a key with an installed executable"
        );
    }

    #[test]
    fn attributor_is_send() {
        fn send<T: Send>() {}
        send::<Attributor>();
        send::<Attribution>();
    }
}
