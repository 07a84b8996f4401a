//! The fast path's userspace half: writes the decision cache the eBPF connect hooks read
//! (`pcl_fast_config`, `pcl_fast_apps`, `pcl_fast_verdicts`) and reads their reports
//! (`pcl_fast_events`). It stores what the caller decided and decides nothing itself; the
//! semantics live at the top of `ebpf/attribution.bpf.c`.
//!
//! The structs mirror the C ones byte for byte (`#[repr(C)]`, sizes checked at compile time).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, MapError, RingBuf};

use super::ebpf::{
    MAP_FAST_APPS, MAP_FAST_CONFIG, MAP_FAST_EVENTS, MAP_FAST_VERDICTS, Owner, ProcKey,
};
use crate::{FastDecision, FastEvent, FastMarks, FastVerdict, KernelProcess, Protocol};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const FAST_ALLOW: u32 = 1;
const FAST_BLOCK: u32 = 2;

/// `struct fast_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FastConfig {
    enabled: u32,
    mask: u32,
    allow: u32,
    /// This process (the helper): its own sockets keep the bits it sets on them.
    helper: u32,
    generation: u64,
}

/// `struct fast_app`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FastApp {
    app: u32,
    pad: u32,
}

/// `struct verdict_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct VerdictKey {
    app: u32,
    protocol: u8,
    family: u8,
    port: u16,
    addr: [u8; 16],
}

/// `struct verdict_val`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct VerdictVal {
    generation: u64,
    expires_ns: u64,
    verdict: u32,
    pad: u32,
}

/// `struct fast_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EventRaw {
    owner: Owner,
    app: u32,
    protocol: u8,
    family: u8,
    verdict: u8,
    pad: u8,
    lport: u16,
    rport: u16,
    pad2: u32,
    laddr: [u8; 16],
    raddr: [u8; 16],
}

const _: () = assert!(size_of::<FastConfig>() == 24);
const _: () = assert!(size_of::<FastApp>() == 8);
const _: () = assert!(size_of::<VerdictKey>() == 24);
const _: () = assert!(size_of::<VerdictVal>() == 24);
const _: () = assert!(size_of::<EventRaw>() == 72);

// SAFETY: plain `#[repr(C)]` integers and byte arrays without implicit padding (sizes asserted
// above), valid for any bit pattern.
unsafe impl aya::Pod for FastConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for FastApp {}
// SAFETY: as above.
unsafe impl aya::Pod for VerdictKey {}
// SAFETY: as above.
unsafe impl aya::Pod for VerdictVal {}

/// The maps, taken out of the loaded object.
pub(crate) struct FastMaps {
    config: Array<MapData, FastConfig>,
    apps: HashMap<MapData, ProcKey, FastApp>,
    verdicts: HashMap<MapData, VerdictKey, VerdictVal>,
    events: RingBuf<MapData>,
}

impl FastMaps {
    pub(crate) fn take(bpf: &mut Ebpf) -> Result<FastMaps, MapError> {
        let mut take = |name: &'static str| {
            bpf.take_map(name).ok_or(MapError::InvalidName {
                name: name.to_owned(),
            })
        };
        Ok(FastMaps {
            config: Array::try_from(take(MAP_FAST_CONFIG)?)?,
            apps: HashMap::try_from(take(MAP_FAST_APPS)?)?,
            verdicts: HashMap::try_from(take(MAP_FAST_VERDICTS)?)?,
            events: RingBuf::try_from(take(MAP_FAST_EVENTS)?)?,
        })
    }
}

struct Control {
    config: Array<MapData, FastConfig>,
    apps: HashMap<MapData, ProcKey, FastApp>,
    verdicts: HashMap<MapData, VerdictKey, VerdictVal>,
    current: FastConfig,
}

/// See [`crate::FastPath`].
#[derive(Clone)]
pub(crate) struct FastPath {
    control: Arc<Mutex<Control>>,
    events: Arc<Mutex<Option<FastEvents>>>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath").finish_non_exhaustive()
    }
}

fn io(e: MapError) -> std::io::Error {
    std::io::Error::other(e)
}

impl FastPath {
    pub(crate) fn new(maps: FastMaps) -> FastPath {
        let FastMaps {
            config,
            apps,
            verdicts,
            events,
        } = maps;
        FastPath {
            control: Arc::new(Mutex::new(Control {
                config,
                apps,
                verdicts,
                current: FastConfig::default(),
            })),
            events: Arc::new(Mutex::new(Some(FastEvents { ring: events }))),
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn configure(
        &self,
        marks: Option<FastMarks>,
        generation: u64,
    ) -> std::io::Result<()> {
        let mut c = self.control();
        let next = match marks {
            // Only bits within the mask, and never an empty "allow".
            Some(m) if m.allow & m.mask != 0 => FastConfig {
                enabled: 1,
                mask: m.mask,
                allow: m.allow & m.mask,
                helper: std::process::id(),
                generation,
            },
            Some(m) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "fast path: allow bits {:#x} are not within mask {:#x}",
                        m.allow, m.mask
                    ),
                ));
            }
            None => FastConfig::default(),
        };
        c.config.set(0, next, 0).map_err(io)?;
        c.current = next;
        Ok(())
    }

    pub(crate) fn set_generation(&self, generation: u64) -> std::io::Result<()> {
        let mut c = self.control();
        let next = FastConfig {
            generation,
            ..c.current
        };
        c.config.set(0, next, 0).map_err(io)?;
        c.current = next;
        Ok(())
    }

    pub(crate) fn remember(&self, d: &FastDecision) -> std::io::Result<()> {
        let FastDecision {
            process,
            app,
            protocol,
            remote,
            verdict,
            generation,
            valid_for,
        } = *d;
        let Some(key) = verdict_key(app, protocol, remote, verdict) else {
            return Ok(());
        };
        let expires_ns = match valid_for {
            None => 0,
            Some(d) => monotonic_ns()?
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .max(1),
        };
        let value = VerdictVal {
            generation,
            expires_ns,
            verdict: match verdict {
                FastVerdict::Allow => FAST_ALLOW,
                FastVerdict::Block => FAST_BLOCK,
            },
            pad: 0,
        };
        let proc_key = ProcKey {
            tgid: process.pid,
            pad: 0,
            start_ns: process.start_ns,
            exec_id: process.exec_id,
        };
        let mut c = self.control();
        // The verdict first: the app entry is what makes the kernel look for one.
        c.verdicts.insert(key, value, 0).map_err(io)?;
        c.apps
            .insert(proc_key, FastApp { app, pad: 0 }, 0)
            .map_err(io)?;
        Ok(())
    }

    pub(crate) fn take_events(&self) -> Option<FastEvents> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of the kernel's `bpf_ktime_get_ns`.
fn monotonic_ns() -> std::io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// The cache key of a verdict, or `None` for what the kernel never repeats.
fn verdict_key(
    app: u32,
    protocol: Protocol,
    remote: SocketAddr,
    verdict: FastVerdict,
) -> Option<VerdictKey> {
    let protocol = match (protocol, verdict) {
        (Protocol::Tcp, _) => IPPROTO_TCP,
        (Protocol::Udp, FastVerdict::Block) => IPPROTO_UDP,
        (Protocol::Udp, FastVerdict::Allow) | (Protocol::Icmp, _) => return None,
    };
    let ip = match remote.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let (family, addr) = match ip {
        IpAddr::V4(v4) => {
            let mut addr = [0_u8; 16];
            let [a, b, c, d] = v4.octets();
            addr[..4].copy_from_slice(&[a, b, c, d]);
            (AF_INET, addr)
        }
        IpAddr::V6(v6) => (AF_INET6, v6.octets()),
    };
    Some(VerdictKey {
        app,
        protocol,
        family,
        port: remote.port(),
        addr,
    })
}

/// See [`crate::FastEvents`].
pub(crate) struct FastEvents {
    ring: RingBuf<MapData>,
}

impl std::fmt::Debug for FastEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastEvents").finish_non_exhaustive()
    }
}

impl FastEvents {
    /// The kernel wakes the reader only when its ring is a quarter full (a wake-up would cost
    /// the connecting process), so an empty ring is polled again this often.
    const POLL: Duration = Duration::from_millis(50);

    pub(crate) fn next(&mut self, timeout: Duration) -> Option<FastEvent> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            while let Some(item) = self.ring.next() {
                match decode_event(&item) {
                    Some(event) => return Some(event),
                    None => tracing::debug!(len = item.len(), "malformed fast-path report skipped"),
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut fd = libc::pollfd {
                fd: self.ring.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.min(Self::POLL).as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&raw mut fd, 1, ms.max(1)) };
            if ready < 0
                && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                return None;
            }
        }
    }
}

/// Decodes one report; `None` for a record of the wrong size or with unknown values.
fn decode_event(bytes: &[u8]) -> Option<FastEvent> {
    if bytes.len() < size_of::<EventRaw>() {
        return None;
    }
    // SAFETY: at least size_of::<EventRaw>() readable bytes; EventRaw is plain integers and
    // byte arrays, valid for any bit pattern; read_unaligned needs no alignment.
    let raw: EventRaw = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<EventRaw>()) };
    let protocol = match raw.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    let verdict = match u32::from(raw.verdict) {
        FAST_ALLOW => FastVerdict::Allow,
        FAST_BLOCK => FastVerdict::Block,
        _ => return None,
    };
    let ip = |a: [u8; 16]| -> Option<IpAddr> {
        match raw.family {
            AF_INET => {
                let [b0, b1, b2, b3, ..] = a;
                Some(IpAddr::V4(Ipv4Addr::new(b0, b1, b2, b3)))
            }
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    };
    let remote = SocketAddr::new(ip(raw.raddr)?, raw.rport);
    let local = (raw.lport != 0).then(|| ip(raw.laddr).map(|a| SocketAddr::new(a, raw.lport)));
    Some(FastEvent {
        process: KernelProcess {
            pid: raw.owner.tgid,
            start_ns: raw.owner.start_ns,
            exec_id: raw.owner.exec_id,
        },
        uid: raw.owner.uid,
        app: raw.app,
        protocol,
        verdict,
        local: local.flatten(),
        remote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_mapped_addresses_and_skip_what_the_kernel_never_repeats() {
        let v4: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:443".parse().unwrap();
        let k = verdict_key(7, Protocol::Tcp, v4, FastVerdict::Allow).unwrap();
        assert_eq!((k.app, k.protocol, k.family, k.port), (7, 6, AF_INET, 443));
        assert_eq!(&k.addr[..4], &[10, 0, 0, 2]);
        assert_eq!(
            verdict_key(7, Protocol::Tcp, mapped, FastVerdict::Allow),
            Some(k)
        );
        let v6: SocketAddr = "[fd00::2]:80".parse().unwrap();
        let k6 = verdict_key(1, Protocol::Udp, v6, FastVerdict::Block).unwrap();
        assert_eq!((k6.protocol, k6.family, k6.port), (17, AF_INET6, 80));
        assert_eq!(verdict_key(1, Protocol::Udp, v6, FastVerdict::Allow), None);
        assert_eq!(verdict_key(1, Protocol::Icmp, v6, FastVerdict::Block), None);
    }

    fn raw_bytes(raw: &EventRaw) -> Vec<u8> {
        // SAFETY: EventRaw is 72 initialised bytes (no implicit padding).
        let bytes: [u8; 72] = unsafe { std::mem::transmute(*raw) };
        bytes.to_vec()
    }

    #[test]
    fn events_decode_and_bad_ones_are_refused() {
        let mut raw = EventRaw {
            owner: Owner {
                tgid: 42,
                uid: 1000,
                start_ns: 5,
                exec_id: 1,
            },
            app: 3,
            protocol: IPPROTO_TCP,
            family: AF_INET,
            verdict: 1,
            lport: 40000,
            rport: 443,
            ..EventRaw::default()
        };
        raw.laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        raw.raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let e = decode_event(&raw_bytes(&raw)).unwrap();
        assert_eq!(e.process.pid, 42);
        assert_eq!(e.uid, 1000);
        assert_eq!(e.verdict, FastVerdict::Allow);
        assert_eq!(e.local, Some("10.0.0.1:40000".parse().unwrap()));
        assert_eq!(e.remote, "10.0.0.2:443".parse().unwrap());

        let blocked = EventRaw {
            lport: 0,
            verdict: 2,
            ..raw
        };
        let e = decode_event(&raw_bytes(&blocked)).unwrap();
        assert_eq!((e.local, e.verdict), (None, FastVerdict::Block));

        for bad in [
            EventRaw { family: 3, ..raw },
            EventRaw { protocol: 1, ..raw },
            EventRaw { verdict: 9, ..raw },
        ] {
            assert_eq!(decode_event(&raw_bytes(&bad)), None);
        }
        assert_eq!(decode_event(&raw_bytes(&raw)[..71]), None);
        assert_eq!(decode_event(&[]), None);
    }
}
