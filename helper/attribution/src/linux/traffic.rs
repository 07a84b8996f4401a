//! What connections carried, from the kernel: when an app's TCP connection closes, the eBPF
//! program reports its payload bytes and segments each way (`pcl_traffic_events`, see
//! `ebpf/attribution.bpf.c`). The reader decodes the reports; it decides and stores nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};

use crate::{Protocol, TrafficEvent};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

/// `struct traffic_event` of the eBPF program.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct TrafficRaw {
    protocol: u8,
    family: u8,
    lport: u16,
    rport: u16,
    pad: u16,
    laddr: [u8; 16],
    raddr: [u8; 16],
    bytes_out: u64,
    bytes_in: u64,
    packets_out: u32,
    packets_in: u32,
}

/// See [`crate::TrafficEvents`].
pub(crate) struct TrafficEvents {
    pub(crate) ring: RingBuf<MapData>,
}

impl std::fmt::Debug for TrafficEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficEvents").finish_non_exhaustive()
    }
}

impl TrafficEvents {
    pub(crate) fn next(&mut self, timeout: Duration) -> Option<TrafficEvent> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            while let Some(item) = self.ring.next() {
                match decode(&item) {
                    Some(event) => return Some(event),
                    None => tracing::debug!(len = item.len(), "malformed traffic report skipped"),
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
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
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
fn decode(bytes: &[u8]) -> Option<TrafficEvent> {
    if bytes.len() < size_of::<TrafficRaw>() {
        return None;
    }
    // SAFETY: at least size_of::<TrafficRaw>() readable bytes; TrafficRaw is plain integers
    // and byte arrays, valid for any bit pattern; read_unaligned needs no alignment.
    let raw: TrafficRaw = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TrafficRaw>()) };
    if raw.protocol != IPPROTO_TCP || raw.lport == 0 || raw.rport == 0 {
        return None;
    }
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
    Some(TrafficEvent {
        protocol: Protocol::Tcp,
        // An IPv4 connection of a dual-stack socket is named as IPv4, like conntrack does.
        local: SocketAddr::new(ip(raw.laddr)?.to_canonical(), raw.lport),
        remote: SocketAddr::new(ip(raw.raddr)?.to_canonical(), raw.rport),
        // TCP counts the SYN (and a FIN) as one acknowledged byte each; the SYN is taken off
        // here, a FIN may leave the count one byte high.
        bytes_out: raw.bytes_out.saturating_sub(1),
        bytes_in: raw.bytes_in,
        packets_out: u64::from(raw.packets_out),
        packets_in: u64::from(raw.packets_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(family: u8) -> Vec<u8> {
        let mut r = TrafficRaw {
            protocol: IPPROTO_TCP,
            family,
            lport: 40_000,
            rport: 443,
            pad: 0,
            laddr: [0; 16],
            raddr: [0; 16],
            bytes_out: 1_000,
            bytes_in: 2_000_000,
            packets_out: 10,
            packets_in: 1_400,
        };
        r.laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        r.raddr[..4].copy_from_slice(&[192, 0, 2, 7]);
        // SAFETY: TrafficRaw is plain data; viewing it as bytes is sound.
        unsafe { std::slice::from_raw_parts((&raw const r).cast::<u8>(), size_of::<TrafficRaw>()) }
            .to_vec()
    }

    #[test]
    fn the_sampler_sees_what_an_open_connection_carried() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 100_000]).unwrap();
        let mut got = vec![0u8; 100_000];
        server.read_exact(&mut got).unwrap();
        server.write_all(b"thanks").unwrap();
        let mut reply = [0u8; 6];
        client.read_exact(&mut reply).unwrap();
        let mut sampler = TcpSampler::new().unwrap();
        let all = sampler.sample(100_000).unwrap();
        let mine = all
            .iter()
            .find(|s| s.local == client.local_addr().unwrap())
            .unwrap_or_else(|| panic!("not among {} sockets", all.len()));
        assert_eq!(mine.remote, client.peer_addr().unwrap());
        assert_eq!((mine.bytes_out, mine.bytes_in), (100_000, 6));
        assert!(mine.packets_out >= 2 && mine.packets_in >= 2, "{mine:?}");
        // Bounded.
        assert!(sampler.sample(1).unwrap().len() <= 1);
    }

    #[test]
    fn reports_decode_and_bad_ones_are_refused() {
        let e = decode(&raw(AF_INET)).unwrap();
        assert_eq!(e.local, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(e.remote, "192.0.2.7:443".parse().unwrap());
        assert_eq!(
            (e.bytes_out, e.bytes_in, e.packets_out, e.packets_in),
            (999, 2_000_000, 10, 1_400)
        );
        assert_eq!(size_of::<TrafficRaw>(), 64, "the ABI with the eBPF program");
        assert!(decode(&raw(AF_INET)[..63]).is_none());
        assert!(decode(&raw(7)).is_none());
        let mut udp = raw(AF_INET);
        udp[0] = 17;
        assert!(decode(&udp).is_none());
    }
}

/// See [`crate::TcpSampler`].
#[derive(Debug)]
pub(crate) struct TcpSampler {
    diag: super::sock_diag::SockDiag,
}

impl TcpSampler {
    pub(crate) fn new() -> std::io::Result<TcpSampler> {
        Ok(TcpSampler {
            diag: super::sock_diag::SockDiag::open(Duration::from_secs(1))?,
        })
    }

    pub(crate) fn sample(&mut self, max: usize) -> std::io::Result<Vec<crate::TcpSample>> {
        let mut out = Vec::new();
        self.diag
            .dump_tcp(max, &mut |s, counters| {
                if let Some(c) = counters {
                    out.push(crate::TcpSample {
                        local: SocketAddr::new(s.local.ip().to_canonical(), s.local.port()),
                        remote: SocketAddr::new(s.remote.ip().to_canonical(), s.remote.port()),
                        // TCP counts the SYN as one acknowledged byte.
                        bytes_out: c.bytes_acked.saturating_sub(1),
                        bytes_in: c.bytes_received,
                        packets_out: u64::from(c.segs_out),
                        packets_in: u64::from(c.segs_in),
                    });
                }
            })
            .map_err(std::io::Error::other)?;
        Ok(out)
    }
}
