//! Attribution: which process, and which app, owns the socket of a connection. The daemon
//! hands an [`Attributor`] the addresses of a new connection (a [`Flow`]) on its verdict
//! thread and gets back the owning process with its executable, command line, user, parents,
//! cgroup and [`AppIdentity`] (the key of the app's profile), or what could be found short of
//! that ([`Attribution`]). This crate reads the kernel's view and decides nothing: it never
//! blocks traffic, holds no policy, and turns every failure into a weaker answer rather than an
//! error or a panic.
//!
//! On Linux a lookup runs in stages (see `linux/mod.rs`): netlink `sock_diag` finds the socket
//! of the 4-tuple (its uid and inode, ~3 µs), an index of `/proc/*/fd` links finds the process
//! holding that inode (cached and re-checked; full scans are rate-limited by a time budget),
//! and a cache keyed by pid *and* start time describes the process. A process that exits right
//! after connecting can leave its socket without a holder: the answer is then
//! [`Attribution::SocketOnly`]. The next increment puts an eBPF source in front of these stages
//! — cgroup hooks record each socket's owner as it is created, so even such processes are
//! attributed — behind this same API. Other platforms compile, and [`Attributor::new`] returns
//! [`AttributionError::Unsupported`] there.
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
    /// cannot be read (a kernel thread) has an empty path.
    pub parents: Vec<(u32, PathBuf)>,
    /// The cgroup path in the unified (v2) hierarchy (or systemd's v1 hierarchy on hosts
    /// without one); empty if unknown.
    pub cgroup: String,
    /// The app the process belongs to.
    pub app: AppIdentity,
}

/// The app a process belongs to: what a profile is attached to.
///
/// How sure each kind is: an executable path is what the kernel reports. A Flatpak app id is
/// taken from the systemd scope Flatpak starts the app in and checked against the sandbox's own
/// `/.flatpak-info` (a process outside a sandbox that names its scope like Flatpak's is
/// identified by its executable instead). A snap name comes from its scope name alone and an
/// AppImage from the `APPIMAGE` variable of the process' environment (when that file exists):
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
            AppIdentity::Executable(path) | AppIdentity::AppImage(path) => {
                path.to_string_lossy().into_owned()
            }
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
    /// (the eBPF source of the next increment closes this gap), handed the socket on, or the
    /// `/proc` scan budget was spent during a storm.
    SocketOnly {
        /// The uid that created the socket, as the kernel records it.
        uid: u32,
        /// The socket's inode.
        inode: u64,
    },
    /// No socket matches (traffic of the kernel itself, of another namespace, ICMP, a socket
    /// already closed, or a lookup that failed; failures are logged).
    NotFound,
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
}

/// Finds the process behind connections. One per verdict thread: it is `Send`, not shared,
/// and its caches make repeated lookups cheap.
#[derive(Debug)]
pub struct Attributor {
    inner: imp::Attributor,
}

impl Attributor {
    /// Opens the kernel interfaces. The sock_diag socket belongs to the *calling thread's*
    /// network namespace: only sockets of that namespace are found, whichever thread later
    /// calls [`attribute`](Self::attribute).
    pub fn new(config: AttributionConfig) -> Result<Attributor, AttributionError> {
        imp::Attributor::new(config).map(|inner| Attributor { inner })
    }

    /// Who owns the socket of `flow`. Never panics and never fails: errors are logged (at
    /// DEBUG) and give [`Attribution::NotFound`] or [`Attribution::SocketOnly`].
    pub fn attribute(&mut self, flow: &Flow) -> Attribution {
        self.inner.attribute(flow)
    }

    /// Counters since this attributor was made.
    pub fn stats(&self) -> AttributionStats {
        self.inner.stats()
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
            "/home/u/Foo.AppImage"
        );
    }

    #[test]
    fn attributor_is_send() {
        fn send<T: Send>() {}
        send::<Attributor>();
        send::<Attribution>();
    }
}
