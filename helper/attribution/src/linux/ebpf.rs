//! The eBPF source: loads the cgroup programs of `ebpf/attribution.bpf.c` (compiled by
//! `build.rs`, embedded here) with aya, attaches them to one cgroup2 directory, and reads the
//! maps they fill. The programs record, for every TCP and UDP socket of that cgroup's
//! processes, who made or used it (pid, effective uid, start time, exec count) by socket
//! cookie, each flow's addresses → that owner, and each process' comm, parent and executable
//! path (read in the kernel when the process first touches a socket, so even a process that
//! exited before anyone looked can be named). The maps are LRU hashes of bounded size; nothing
//! wakes userspace per connection.
//!
//! This module owns the links: they live as long as [`EbpfSource`] and are detached when it
//! is dropped (or when the process dies: links are not pinned). It reads maps and builds keys;
//! it knows nothing of `/proc` and decides nothing. The programs only observe: they return
//! "allow" on every path.
//!
//! The structs below mirror the C ones byte for byte (`#[repr(C)]`, sizes checked at compile
//! time); change both together.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData, MapError, PerCpuArray};
use aya::programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, SockOps};
use aya::{Ebpf, EbpfLoader};

use crate::{AttributionError, Direction, EbpfStatus, Flow, Protocol};

/// The compiled programs (see `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/attribution.bpf.o"));

/// The programs, by function name, in attach order: the hooks that fill the socket → owner map
/// go first, so no flow is recorded before its owner could be.
const PROGRAMS: [(&str, Hook); 9] = [
    ("pcl_sock_create", Hook::Sock),
    ("pcl_connect4", Hook::SockAddr),
    ("pcl_connect6", Hook::SockAddr),
    ("pcl_sendmsg4", Hook::SockAddr),
    ("pcl_sendmsg6", Hook::SockAddr),
    ("pcl_post_bind4", Hook::Sock),
    ("pcl_post_bind6", Hook::Sock),
    ("pcl_sock_ops_cb", Hook::SockOps),
    ("pcl_sock_release", Hook::Sock),
];

/// The program types used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Sock,
    SockAddr,
    SockOps,
}

const MAP_SOCKETS: &str = "pcl_sockets";
const MAP_FLOWS: &str = "pcl_flows";
const MAP_PROCESSES: &str = "pcl_processes";
const MAP_COUNTERS: &str = "pcl_counters";
pub(crate) const MAP_FAST_CONFIG: &str = "pcl_fast_config";
pub(crate) const MAP_FAST_APPS: &str = "pcl_fast_apps";
pub(crate) const MAP_FAST_VERDICTS: &str = "pcl_fast_verdicts";
pub(crate) const MAP_FAST_EVENTS: &str = "pcl_fast_events";
const MAP_TRAFFIC_EVENTS: &str = "pcl_traffic_events";

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// How a flow record was made (`KIND_*` in the C source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// TCP connect (sockops `TCP_CONNECT_CB`, or `ACTIVE_ESTABLISHED_CB`).
    TcpConnect,
    /// An unconnected UDP send (`sendmsg4/6`).
    UdpSend,
    /// A connect of an already bound UDP socket (`connect4/6`).
    UdpConnect,
    /// A TCP listener (`TCP_LISTEN_CB`): remote is any.
    TcpListen,
    /// A bound UDP socket (`post_bind4/6`): remote is any.
    UdpBound,
    /// An accepted TCP connection, owned like its listener (`PASSIVE_ESTABLISHED_CB`).
    TcpAccepted,
    /// A connected UDP socket, recorded as it closed (`sock_release`).
    UdpClosed,
    /// A value this build does not know.
    Unknown,
}

impl Kind {
    fn from_raw(raw: u32) -> Kind {
        match raw {
            1 => Kind::TcpConnect,
            2 => Kind::UdpSend,
            3 => Kind::UdpConnect,
            4 => Kind::TcpListen,
            5 => Kind::UdpBound,
            6 => Kind::TcpAccepted,
            7 => Kind::UdpClosed,
            _ => Kind::Unknown,
        }
    }

    /// Whether the recorded owner is the process that used the socket for this very flow
    /// (it connected or sent), so its answer needs no second opinion while the socket lives.
    /// Listeners, bound sockets and accepted connections record who called `listen()` or
    /// `bind()`, which is not always who holds the socket (socket activation, fd passing,
    /// pre-forked servers): `/proc` is asked first for those, the record is the last resort.
    pub(crate) fn is_direct(self) -> bool {
        matches!(
            self,
            Kind::TcpConnect | Kind::UdpSend | Kind::UdpConnect | Kind::UdpClosed
        )
    }
}

/// `struct owner`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    /// The process id, in the initial pid namespace.
    pub tgid: u32,
    /// The effective uid when the socket was made or used.
    pub uid: u32,
    /// When the process started, CLOCK_BOOTTIME nanoseconds.
    pub start_ns: u64,
    /// The process' exec count (`self_exec_id`).
    pub exec_id: u64,
}

/// `struct flow_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    netns: u64,
    protocol: u8,
    family: u8,
    lport: u16,
    rport: u16,
    pad: u16,
    laddr: [u8; 16],
    raddr: [u8; 16],
}

/// `struct flow_val`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowVal {
    /// The socket's cookie.
    pub cookie: u64,
    /// Who made or used it.
    pub owner: Owner,
    kind: u32,
    pad: u32,
}

impl FlowVal {
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_raw(self.kind)
    }
}

/// `struct proc_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct ProcKey {
    pub tgid: u32,
    pub pad: u32,
    pub start_ns: u64,
    pub exec_id: u64,
}

/// Bytes of path components in a process record (`EXE_BYTES`).
const EXE_BYTES: usize = 768;
/// `EXE_COMPLETE`: every component up to the root was read.
const EXE_COMPLETE: u32 = 1;

/// `struct proc_val`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcVal {
    ppid: u32,
    exe_flags: u32,
    exe_len: u32,
    pad: u32,
    comm: [u8; 16],
    exe: [u8; EXE_BYTES],
}

const _: () = assert!(size_of::<Owner>() == 24);
const _: () = assert!(size_of::<FlowKey>() == 48);
const _: () = assert!(size_of::<FlowVal>() == 40);
const _: () = assert!(size_of::<ProcKey>() == 24);
const _: () = assert!(size_of::<ProcVal>() == 800);

// SAFETY: plain `#[repr(C)]` data of integers and byte arrays without padding (the explicit
// `pad` fields fill every gap; sizes are asserted above), valid for any bit pattern.
unsafe impl aya::Pod for Owner {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowVal {}
// SAFETY: as above.
unsafe impl aya::Pod for ProcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for ProcVal {}

/// What the kernel recorded about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcRecord {
    /// The parent's pid when the process first used a socket.
    pub ppid: u32,
    /// The command name (`comm`, at most 15 bytes), lossily decoded.
    pub comm: String,
    /// The executable, if its whole path could be read.
    pub exe: Option<PathBuf>,
}

impl ProcVal {
    /// Decodes the record: components are stored leaf first, each NUL-terminated.
    pub(crate) fn decode(&self) -> ProcRecord {
        let comm_len = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        let comm =
            String::from_utf8_lossy(self.comm.get(..comm_len).unwrap_or_default()).into_owned();
        let exe = (self.exe_flags == EXE_COMPLETE)
            .then(|| {
                let len = usize::try_from(self.exe_len).unwrap_or(usize::MAX);
                exe_from_components(self.exe.get(..len)?)
            })
            .flatten();
        ProcRecord {
            ppid: self.ppid,
            comm,
            exe,
        }
    }
}

/// `/a/b/c` from `c\0b\0a\0`; `None` for no components or an empty or `/`-bearing one.
fn exe_from_components(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let body = bytes.strip_suffix(&[0])?;
    let parts: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    if parts.iter().any(|p| p.is_empty() || p.contains(&b'/')) {
        return None;
    }
    let mut path = PathBuf::from("/");
    for part in parts.iter().rev() {
        path.push(std::ffi::OsStr::from_bytes(part));
    }
    Some(path)
}

/// The keys that may hold `flow` in the network namespace with cookie `netns`, most specific
/// first (addresses already canonical: IPv4 as IPv4, both of one family). Empty for ICMP.
pub(crate) fn candidate_keys(flow: &Flow, netns: u64) -> Vec<FlowKey> {
    let protocol = match flow.protocol {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
        Protocol::Icmp => return Vec::new(),
    };
    let (local, remote) = (flow.local, flow.remote);
    let family = match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return Vec::new(),
    };
    let key = |family, laddr: [u8; 16], rport, raddr| FlowKey {
        netns,
        protocol,
        family,
        lport: local.port(),
        rport,
        pad: 0,
        laddr,
        raddr,
    };
    let (l, r) = (addr_bytes(local), addr_bytes(remote));
    let mut keys = vec![key(family, l, remote.port(), r)];
    let udp = protocol == IPPROTO_UDP;
    if udp {
        // An unconnected send from a socket bound to any address.
        keys.push(key(family, [0; 16], remote.port(), r));
    }
    if udp || flow.direction == Direction::Inbound {
        // Listeners and bound sockets: any remote.
        keys.push(key(family, l, 0, [0; 16]));
        keys.push(key(family, [0; 16], 0, [0; 16]));
        if family == AF_INET {
            // A dual-stack socket on [::].
            keys.push(key(AF_INET6, [0; 16], 0, [0; 16]));
        }
    }
    keys
}

/// An address as the kernel's `__be32[4]` (IPv4 in the first four bytes).
fn addr_bytes(addr: SocketAddr) -> [u8; 16] {
    match addr.ip() {
        IpAddr::V4(v4) => {
            let mut out = [0_u8; 16];
            let [a, b, c, d] = v4.octets();
            out[..4].copy_from_slice(&[a, b, c, d]);
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Sizes of the maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapSizes {
    /// `pcl_flows` and `pcl_sockets` each.
    pub flows: u32,
    /// `pcl_processes`.
    pub processes: u32,
}

/// The loaded, attached programs and their maps.
pub(crate) struct EbpfSource {
    /// Owns the programs and their links: dropping it detaches them.
    bpf: Ebpf,
    sockets: HashMap<MapData, u64, Owner>,
    flows: HashMap<MapData, FlowKey, FlowVal>,
    processes: HashMap<MapData, ProcKey, ProcVal>,
    counters: PerCpuArray<MapData, u64>,
    /// The fast path's maps until [`take_fast`](Self::take_fast) hands them out.
    fast: Option<super::fast::FastMaps>,
    /// The traffic reports' ring until [`take_traffic`](Self::take_traffic) hands it out.
    traffic: Option<aya::maps::RingBuf<MapData>>,
    cgroup: PathBuf,
    sizes: MapSizes,
    /// Map reads that failed other than with "no such key".
    pub(crate) errors: u64,
}

impl std::fmt::Debug for EbpfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfSource")
            .field("cgroup", &self.cgroup)
            .field("sizes", &self.sizes)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

/// An [`AttributionError::Ebpf`] for `action` on `cgroup`.
fn ebpf_error(
    action: &'static str,
    cgroup: &Path,
    source: impl std::error::Error + Send + Sync + 'static,
) -> AttributionError {
    AttributionError::Ebpf {
        action,
        cgroup: cgroup.to_path_buf(),
        source: Box::new(source),
    }
}

/// A failure without an underlying error value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Missing(&'static str);

impl EbpfSource {
    /// Loads the programs and attaches them to the cgroup2 directory `cgroup`. Needs
    /// `CAP_BPF` + `CAP_PERFMON` + `CAP_NET_ADMIN` (or `CAP_SYS_ADMIN`) and a kernel with BTF.
    pub(crate) fn attach(cgroup: &Path, sizes: MapSizes) -> Result<EbpfSource, AttributionError> {
        let dir = File::open(cgroup).map_err(|e| ebpf_error("open the cgroup", cgroup, e))?;
        let mut bpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOWS, sizes.flows.max(1))
            .map_max_entries(MAP_SOCKETS, sizes.flows.max(1))
            .map_max_entries(MAP_PROCESSES, sizes.processes.max(1))
            .load(OBJECT)
            .map_err(|e| ebpf_error("load the eBPF object", cgroup, e))?;
        let mut attached = Vec::new();
        for (name, hook) in PROGRAMS {
            attach_one(&mut bpf, name, hook, &dir).map_err(|e| AttributionError::Ebpf {
                action: "load and attach an eBPF program",
                cgroup: cgroup.to_path_buf(),
                source: e,
            })?;
            attached.push(name);
        }
        let take = |bpf: &mut Ebpf, name: &'static str| {
            bpf.take_map(name)
                .ok_or_else(|| ebpf_error("find a map", cgroup, Missing(name)))
        };
        let sockets = HashMap::try_from(take(&mut bpf, MAP_SOCKETS)?)
            .map_err(|e| ebpf_error("open the socket map", cgroup, e))?;
        let flows = HashMap::try_from(take(&mut bpf, MAP_FLOWS)?)
            .map_err(|e| ebpf_error("open the flow map", cgroup, e))?;
        let processes = HashMap::try_from(take(&mut bpf, MAP_PROCESSES)?)
            .map_err(|e| ebpf_error("open the process map", cgroup, e))?;
        let counters = PerCpuArray::try_from(take(&mut bpf, MAP_COUNTERS)?)
            .map_err(|e| ebpf_error("open the counters", cgroup, e))?;
        let fast = super::fast::FastMaps::take(&mut bpf)
            .map_err(|e| ebpf_error("open the fast-path maps", cgroup, e))?;
        let traffic = aya::maps::RingBuf::try_from(take(&mut bpf, MAP_TRAFFIC_EVENTS)?)
            .map_err(|e| ebpf_error("open the traffic reports", cgroup, e))?;
        tracing::info!(programs = attached.len(), "eBPF attribution attached");
        tracing::debug!(cgroup = %cgroup.display(), "eBPF attribution cgroup");
        Ok(EbpfSource {
            bpf,
            sockets,
            flows,
            processes,
            counters,
            fast: Some(fast),
            traffic: Some(traffic),
            cgroup: cgroup.to_path_buf(),
            sizes,
            errors: 0,
        })
    }

    /// The traffic reports' ring, once.
    pub(crate) fn take_traffic(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        self.traffic.take()
    }

    /// The fast path's maps, once.
    pub(crate) fn take_fast(&mut self) -> Option<super::fast::FastMaps> {
        self.fast.take()
    }

    /// The record of `key`, if there is one.
    pub(crate) fn flow(&mut self, key: &FlowKey) -> Option<FlowVal> {
        let found = self.flows.get(key, 0);
        self.found(found)
    }

    /// The recorded owner of the socket with this cookie, if it is still open (closing a
    /// socket removes its entry; so may the LRU when the map is full).
    pub(crate) fn socket_owner(&mut self, cookie: u64) -> Option<Owner> {
        let found = self.sockets.get(&cookie, 0);
        self.found(found)
    }

    /// What the kernel recorded about the process `owner`.
    pub(crate) fn process(&mut self, owner: &Owner) -> Option<ProcRecord> {
        let key = ProcKey {
            tgid: owner.tgid,
            pad: 0,
            start_ns: owner.start_ns,
            exec_id: owner.exec_id,
        };
        let found = self.processes.get(&key, 0);
        self.found(found).map(|v| v.decode())
    }

    fn found<V>(&mut self, result: Result<V, MapError>) -> Option<V> {
        match result {
            Ok(v) => Some(v),
            Err(MapError::KeyNotFound) => None,
            Err(e) => {
                self.errors += 1;
                tracing::debug!(error = %e, "eBPF map lookup failed");
                None
            }
        }
    }

    /// Entries and counters; walks every map (one syscall per entry): for diagnostics.
    pub(crate) fn status(&self) -> EbpfStatus {
        let mut counters = [0_u64; 8];
        for (i, slot) in counters.iter_mut().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            if let Ok(values) = self.counters.get(&index, 0) {
                *slot = values.iter().fold(0_u64, |a, v| a.saturating_add(*v));
            }
        }
        let [
            sockets_recorded,
            flows_recorded,
            processes_recorded,
            exe_unread,
            update_failures,
            fast_allowed,
            fast_blocked,
            fast_events_lost,
        ] = counters;
        EbpfStatus {
            cgroup: self.cgroup.clone(),
            programs: self.bpf.programs().count(),
            flow_entries: self.flows.keys().flatten().count(),
            socket_entries: self.sockets.keys().flatten().count(),
            process_entries: self.processes.keys().flatten().count(),
            max_flows: self.sizes.flows,
            max_processes: self.sizes.processes,
            sockets_recorded,
            flows_recorded,
            processes_recorded,
            exe_unread,
            update_failures,
            fast_allowed,
            fast_blocked,
            fast_events_lost,
        }
    }
}

/// Loads program `name` as `hook` and attaches it to the cgroup `dir`.
fn attach_one(
    bpf: &mut Ebpf,
    name: &'static str,
    hook: Hook,
    dir: &File,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let program = bpf.program_mut(name).ok_or(Missing(name))?;
    // Single: a link attach always coexists with other programs on the cgroup (the kernel
    // rejects the multi flag with links).
    let mode = CgroupAttachMode::Single;
    match hook {
        Hook::Sock => {
            let p: &mut CgroupSock = program.try_into()?;
            p.load()?;
            p.attach(dir, mode)?;
        }
        Hook::SockAddr => {
            let p: &mut CgroupSockAddr = program.try_into()?;
            p.load()?;
            p.attach(dir, mode)?;
        }
        Hook::SockOps => {
            let p: &mut SockOps = program.try_into()?;
            p.load()?;
            p.attach(dir, mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(protocol: Protocol, direction: Direction, local: &str, remote: &str) -> Flow {
        Flow {
            protocol,
            direction,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn keys_for_tcp_outbound_are_exact_only() {
        let keys = candidate_keys(
            &flow(
                Protocol::Tcp,
                Direction::Outbound,
                "10.0.0.1:40000",
                "10.0.0.2:443",
            ),
            0x0102_0304_0506_0708,
        );
        assert_eq!(keys.len(), 1);
        let k = keys[0];
        assert_eq!(
            (k.protocol, k.family, k.lport, k.rport),
            (6, AF_INET, 40000, 443)
        );
        assert_eq!(&k.laddr[..4], &[10, 0, 0, 1]);
        assert_eq!(&k.laddr[4..], &[0; 12]);
        assert_eq!(&k.raddr[..4], &[10, 0, 0, 2]);
        // The bytes userspace hands the kernel: field by field, as the C struct.
        // SAFETY: FlowKey is Pod (see above): any value is 48 initialised bytes.
        let bytes: [u8; 48] = unsafe { std::mem::transmute(k) };
        assert_eq!(&bytes[..8], &0x0102_0304_0506_0708_u64.to_ne_bytes());
        assert_eq!(bytes[8], 6);
        assert_eq!(bytes[9], 2);
        assert_eq!(u16::from_ne_bytes([bytes[10], bytes[11]]), 40000);
        assert_eq!(u16::from_ne_bytes([bytes[12], bytes[13]]), 443);
        assert_eq!(&bytes[16..20], &[10, 0, 0, 1]);
        assert_eq!(&bytes[32..36], &[10, 0, 0, 2]);
    }

    #[test]
    fn keys_for_inbound_and_udp_include_wildcards() {
        let keys = candidate_keys(
            &flow(
                Protocol::Tcp,
                Direction::Inbound,
                "10.0.0.1:80",
                "10.0.0.2:5555",
            ),
            1,
        );
        assert_eq!(keys.len(), 4);
        assert_eq!((keys[1].rport, keys[1].raddr), (0, [0; 16]));
        assert_eq!(&keys[1].laddr[..4], &[10, 0, 0, 1]);
        assert_eq!((keys[2].laddr, keys[2].family), ([0; 16], AF_INET));
        assert_eq!((keys[3].laddr, keys[3].family), ([0; 16], AF_INET6));

        let udp = candidate_keys(
            &flow(
                Protocol::Udp,
                Direction::Outbound,
                "[fd00::1]:5353",
                "[fd00::2]:53",
            ),
            1,
        );
        assert_eq!(
            udp.len(),
            4,
            "exact, any-local, bound exact, bound any; no v6 twin"
        );
        assert_eq!((udp[1].laddr, udp[1].rport), ([0; 16], 53));
        assert!(udp.iter().all(|k| k.family == AF_INET6 && k.lport == 5353));

        let icmp = flow(
            Protocol::Icmp,
            Direction::Outbound,
            "10.0.0.1:0",
            "10.0.0.2:0",
        );
        assert!(candidate_keys(&icmp, 1).is_empty());
        let mixed = flow(Protocol::Tcp, Direction::Outbound, "10.0.0.1:1", "[::1]:2");
        assert!(candidate_keys(&mixed, 1).is_empty());
    }

    fn proc_val(comm: &[u8], exe: &[u8], flags: u32) -> ProcVal {
        let mut v = ProcVal {
            ppid: 7,
            exe_flags: flags,
            exe_len: u32::try_from(exe.len()).unwrap(),
            pad: 0,
            comm: [0; 16],
            exe: [0xee; EXE_BYTES],
        };
        v.comm[..comm.len()].copy_from_slice(comm);
        v.exe[..exe.len()].copy_from_slice(exe);
        v
    }

    #[test]
    fn process_records_decode() {
        let r = proc_val(b"curl", b"curl\0bin\0usr\0", EXE_COMPLETE).decode();
        assert_eq!(r.comm, "curl");
        assert_eq!(r.ppid, 7);
        assert_eq!(r.exe.as_deref(), Some(Path::new("/usr/bin/curl")));
        // A full 16-byte comm has no NUL.
        let r = proc_val(b"0123456789abcdef", b"x\0", EXE_COMPLETE).decode();
        assert_eq!(r.comm, "0123456789abcdef");
        assert_eq!(r.exe.as_deref(), Some(Path::new("/x")));
        // Truncated, failed, empty, malformed: no executable, never a panic.
        for (exe, flags) in [
            (&b"a\0b\0"[..], 2),
            (b"a\0", 4),
            (b"", EXE_COMPLETE),
            (b"a\0\0b\0", EXE_COMPLETE),
            (b"a/b\0", EXE_COMPLETE),
            (b"abc", EXE_COMPLETE),
        ] {
            assert_eq!(proc_val(b"x", exe, flags).decode().exe, None, "{exe:?}");
        }
        let mut long = proc_val(b"x", b"", EXE_COMPLETE);
        long.exe_len = u32::MAX;
        assert_eq!(long.decode().exe, None);
    }

    #[test]
    fn kinds() {
        for raw in 0..10 {
            let k = Kind::from_raw(raw);
            assert_eq!(k.is_direct(), matches!(raw, 1 | 2 | 3 | 7), "{raw}");
        }
    }
}
