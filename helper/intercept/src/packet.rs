//! Reads the addresses, ports and a few flags of one IP packet as NFQUEUE delivers it: the
//! bytes start at the IPv4 or IPv6 header and may be cut short by the queue's copy range. It
//! owns nothing but this decoding; it must not allocate, log, or panic, whatever the bytes —
//! they come from the network or from any local program — and it has no platform code.
//!
//! Only what a decision needs is read: the transport protocol (TCP, UDP, ICMP/ICMPv6), both
//! addresses, both ports, the ICMP type and whether a TCP segment carries SYN. IPv6 extension
//! headers (hop-by-hop, routing, fragment, destination options, and authentication) are walked
//! with a bound on their number. A fragment other than the first has no transport header, so
//! it has no ports. Checksums and lengths beyond the headers read are not checked: the kernel
//! has already accepted the packet, and the copy may be truncated on purpose.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_protocol::Protocol;

/// IP protocol numbers this module knows.
mod proto {
    pub(super) const ICMP: u8 = 1;
    pub(super) const TCP: u8 = 6;
    pub(super) const UDP: u8 = 17;
    pub(super) const ICMPV6: u8 = 58;
    pub(super) const HOP_BY_HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const AUTH: u8 = 51;
    pub(super) const DEST_OPTS: u8 = 60;
}

/// At most this many IPv6 extension headers are walked; more is not a packet worth deciding.
const MAX_EXTENSION_HEADERS: usize = 16;

/// What a verdict needs to know about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketInfo {
    /// Its transport protocol (ICMPv6 is reported as [`Protocol::Icmp`]).
    pub protocol: Protocol,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (TCP, UDP); `None` for ICMP and for fragments other than the first.
    pub src_port: Option<u16>,
    /// Destination port (TCP, UDP); `None` for ICMP and for fragments other than the first.
    pub dst_port: Option<u16>,
    /// ICMP or ICMPv6 type; `None` for TCP, UDP and for fragments other than the first.
    pub icmp_type: Option<u8>,
    /// The identifier of an ICMP or ICMPv6 echo request or reply (a ping socket's "port");
    /// `None` for other packets.
    pub icmp_id: Option<u16>,
    /// Whether this is a TCP segment with the SYN flag set (a connection attempt, or the
    /// answer to one when ACK is set too).
    pub tcp_syn: bool,
}

/// Which header a [`PacketError::Truncated`] ran out of bytes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The IPv4 header.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Extension,
    /// The TCP header.
    Tcp,
    /// The UDP header.
    Udp,
    /// The ICMP or ICMPv6 header.
    Icmp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ipv4 => "IPv4 header",
            Layer::Ipv6 => "IPv6 header",
            Layer::Ipv6Extension => "IPv6 extension header",
            Layer::Tcp => "TCP header",
            Layer::Udp => "UDP header",
            Layer::Icmp => "ICMP header",
        })
    }
}

/// Why a packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// No bytes at all.
    #[error("empty packet")]
    Empty,
    /// The version nibble is neither 4 nor 6.
    #[error("not an IP packet (version {0})")]
    BadVersion(u8),
    /// The bytes end inside a header.
    #[error(
        "truncated packet: the {layer} needs {needed} bytes from offset {offset}, {available} present"
    )]
    Truncated {
        /// The header that was cut short.
        layer: Layer,
        /// Where it starts.
        offset: usize,
        /// How many bytes it needs.
        needed: usize,
        /// How many bytes there are from `offset` on.
        available: usize,
    },
    /// The IPv4 header length field is below the minimum of 5 words.
    #[error("malformed IPv4 header: header length {0} words (minimum 5)")]
    BadIpv4HeaderLength(u8),
    /// The IPv4 total length is shorter than its own header.
    #[error("malformed IPv4 header: total length {total} is shorter than the header ({header})")]
    BadIpv4TotalLength {
        /// The total length field.
        total: u16,
        /// The header length in bytes.
        header: usize,
    },
    /// The TCP data offset is below the minimum of 5 words.
    #[error("malformed TCP header: data offset {0} words (minimum 5)")]
    BadTcpDataOffset(u8),
    /// More IPv6 extension headers than anyone sends.
    #[error("more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")]
    TooManyExtensionHeaders,
    /// A transport protocol we do not decide (the IP protocol or IPv6 next-header number).
    #[error("unsupported IP protocol {0}")]
    Unsupported(u8),
}

/// Reads one packet that starts at its IP header. Never panics.
pub fn parse(bytes: &[u8]) -> Result<PacketInfo, PacketError> {
    let first = *bytes.first().ok_or(PacketError::Empty)?;
    match first >> 4 {
        4 => parse_v4(bytes),
        6 => parse_v6(bytes),
        v => Err(PacketError::BadVersion(v)),
    }
}

/// `len` bytes of `bytes` from `offset`, or the [`PacketError::Truncated`] that says so.
fn take(bytes: &[u8], offset: usize, len: usize, layer: Layer) -> Result<&[u8], PacketError> {
    offset
        .checked_add(len)
        .and_then(|end| bytes.get(offset..end))
        .ok_or(PacketError::Truncated {
            layer,
            offset,
            needed: len,
            available: bytes.len().saturating_sub(offset),
        })
}

/// A big-endian u16 at `at` of a slice already checked to be long enough; 0 otherwise.
fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.saturating_add(2)) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// A byte at `at` of a slice already checked to be long enough; 0 otherwise.
fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn parse_v4(bytes: &[u8]) -> Result<PacketInfo, PacketError> {
    let fixed = take(bytes, 0, 20, Layer::Ipv4)?;
    let ihl = byte(fixed, 0) & 0x0f;
    if ihl < 5 {
        return Err(PacketError::BadIpv4HeaderLength(ihl));
    }
    let header_len = usize::from(ihl) * 4;
    take(bytes, 0, header_len, Layer::Ipv4)?;
    let total = be16(fixed, 2);
    if usize::from(total) < header_len {
        return Err(PacketError::BadIpv4TotalLength {
            total,
            header: header_len,
        });
    }
    let fragment_offset = be16(fixed, 6) & 0x1fff;
    let protocol = byte(fixed, 9);
    let mut addr = [0_u8; 4];
    addr.copy_from_slice(fixed.get(12..16).unwrap_or(&[0; 4]));
    let src = IpAddr::V4(Ipv4Addr::from(addr));
    addr.copy_from_slice(fixed.get(16..20).unwrap_or(&[0; 4]));
    let dst = IpAddr::V4(Ipv4Addr::from(addr));
    transport(bytes, header_len, protocol, src, dst, fragment_offset != 0)
}

fn parse_v6(bytes: &[u8]) -> Result<PacketInfo, PacketError> {
    let fixed = take(bytes, 0, 40, Layer::Ipv6)?;
    let mut addr = [0_u8; 16];
    addr.copy_from_slice(fixed.get(8..24).unwrap_or(&[0; 16]));
    let src = IpAddr::V6(Ipv6Addr::from(addr));
    addr.copy_from_slice(fixed.get(24..40).unwrap_or(&[0; 16]));
    let dst = IpAddr::V6(Ipv6Addr::from(addr));

    let mut next = byte(fixed, 6);
    let mut offset = 40_usize;
    for _ in 0..MAX_EXTENSION_HEADERS {
        match next {
            proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS => {
                // Next header, then the length in 8-octet units not counting the first 8.
                let h = take(bytes, offset, 2, Layer::Ipv6Extension)?;
                let len = (usize::from(byte(h, 1)) + 1) * 8;
                take(bytes, offset, len, Layer::Ipv6Extension)?;
                next = byte(h, 0);
                offset += len;
            }
            proto::AUTH => {
                // Length in 4-octet units minus 2 (RFC 4302).
                let h = take(bytes, offset, 2, Layer::Ipv6Extension)?;
                let len = (usize::from(byte(h, 1)) + 2) * 4;
                take(bytes, offset, len, Layer::Ipv6Extension)?;
                next = byte(h, 0);
                offset += len;
            }
            proto::FRAGMENT => {
                let h = take(bytes, offset, 8, Layer::Ipv6Extension)?;
                next = byte(h, 0);
                offset += 8;
                if be16(h, 2) >> 3 != 0 {
                    // A later fragment: what follows is the middle of the upper-layer data.
                    return transport(bytes, offset, next, src, dst, true);
                }
            }
            _ => return transport(bytes, offset, next, src, dst, false),
        }
    }
    Err(PacketError::TooManyExtensionHeaders)
}

/// Reads the transport header of protocol `protocol` at `offset`; a later fragment
/// (`later_fragment`) has none, so it only names the protocol.
fn transport(
    bytes: &[u8],
    offset: usize,
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    later_fragment: bool,
) -> Result<PacketInfo, PacketError> {
    let icmp = match src {
        IpAddr::V4(_) => proto::ICMP,
        IpAddr::V6(_) => proto::ICMPV6,
    };
    let mut info = PacketInfo {
        protocol: match protocol {
            proto::TCP => Protocol::Tcp,
            proto::UDP => Protocol::Udp,
            p if p == icmp => Protocol::Icmp,
            p => return Err(PacketError::Unsupported(p)),
        },
        src,
        dst,
        src_port: None,
        dst_port: None,
        icmp_type: None,
        icmp_id: None,
        tcp_syn: false,
    };
    if later_fragment {
        return Ok(info);
    }
    match info.protocol {
        Protocol::Tcp => {
            let h = take(bytes, offset, 20, Layer::Tcp)?;
            let data_offset = byte(h, 12) >> 4;
            if data_offset < 5 {
                return Err(PacketError::BadTcpDataOffset(data_offset));
            }
            info.src_port = Some(be16(h, 0));
            info.dst_port = Some(be16(h, 2));
            info.tcp_syn = byte(h, 13) & 0x02 != 0;
        }
        Protocol::Udp => {
            let h = take(bytes, offset, 8, Layer::Udp)?;
            info.src_port = Some(be16(h, 0));
            info.dst_port = Some(be16(h, 2));
        }
        Protocol::Icmp => {
            let h = take(bytes, offset, 8, Layer::Icmp)?;
            let kind = byte(h, 0);
            info.icmp_type = Some(kind);
            // Echo reply/request: 0/8 for ICMP, 129/128 for ICMPv6.
            if matches!(kind, 0 | 8 | 128 | 129) {
                info.icmp_id = Some(be16(h, 4));
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(protocol: u8, transport: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, // version/IHL, TOS, total length (set below)
            0, 1, 0x40, 0, // id, flags DF, fragment offset 0
            64, protocol, 0, 0, // TTL, protocol, checksum
            10, 77, 1, 1, // src
            10, 77, 1, 2, // dst
        ];
        p.extend_from_slice(transport);
        let total = u16::try_from(p.len()).unwrap_or(u16::MAX).to_be_bytes();
        p[2] = total[0];
        p[3] = total[1];
        p
    }

    fn v6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        let len = u16::try_from(rest.len()).unwrap_or(u16::MAX).to_be_bytes();
        p.extend_from_slice(&len);
        p.push(next);
        p.push(64);
        p.extend_from_slice(&[0xfd, 0x77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfd, 0x77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(rest);
        p
    }

    fn tcp(src: u16, dst: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0_u8; 20];
        h[0..2].copy_from_slice(&src.to_be_bytes());
        h[2..4].copy_from_slice(&dst.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h
    }

    fn udp(src: u16, dst: u16) -> Vec<u8> {
        let mut h = vec![0_u8; 8];
        h[0..2].copy_from_slice(&src.to_be_bytes());
        h[2..4].copy_from_slice(&dst.to_be_bytes());
        h
    }

    fn ext(next: u8, units: u8) -> Vec<u8> {
        let mut h = vec![0_u8; (usize::from(units) + 1) * 8];
        h[0] = next;
        h[1] = units;
        h
    }

    #[test]
    fn ipv4_tcp_syn() {
        let info = parse(&v4(6, &tcp(40000, 443, 0x02))).unwrap();
        assert_eq!(info.protocol, Protocol::Tcp);
        assert_eq!(info.src, "10.77.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.dst, "10.77.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(info.src_port, Some(40000));
        assert_eq!(info.dst_port, Some(443));
        assert!(info.tcp_syn);
        assert_eq!(info.icmp_type, None);
    }

    #[test]
    fn ipv4_tcp_ack_is_not_syn() {
        let info = parse(&v4(6, &tcp(1, 2, 0x10))).unwrap();
        assert!(!info.tcp_syn);
    }

    #[test]
    fn ipv4_udp_and_icmp() {
        let info = parse(&v4(17, &udp(5353, 53))).unwrap();
        assert_eq!(info.protocol, Protocol::Udp);
        assert_eq!((info.src_port, info.dst_port), (Some(5353), Some(53)));
        let info = parse(&v4(1, &[8, 0, 0, 0, 0, 1, 0, 1])).unwrap();
        assert_eq!(info.protocol, Protocol::Icmp);
        assert_eq!(info.icmp_type, Some(8));
        assert_eq!(info.icmp_id, Some(1), "an echo request carries its id");
        assert_eq!(info.src_port, None);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let mut p = v4(17, &[]);
        p[0] = 0x46; // IHL 6: one word of options
        p.extend_from_slice(&[1, 1, 1, 0]);
        p.extend_from_slice(&udp(1000, 2000));
        let total = u16::try_from(p.len()).unwrap().to_be_bytes();
        p[2..4].copy_from_slice(&total);
        let info = parse(&p).unwrap();
        assert_eq!(info.dst_port, Some(2000));
    }

    #[test]
    fn ipv4_later_fragment_has_no_ports() {
        let mut p = v4(6, &[0xde, 0xad, 0xbe, 0xef]);
        p[6] = 0x00;
        p[7] = 0x10; // offset 16 × 8 bytes
        let info = parse(&p).unwrap();
        assert_eq!(info.protocol, Protocol::Tcp);
        assert_eq!((info.src_port, info.dst_port), (None, None));
        assert!(!info.tcp_syn);
    }

    #[test]
    fn ipv4_first_fragment_has_ports() {
        let mut p = v4(17, &udp(7, 8));
        p[6] = 0x20; // MF, offset 0
        let info = parse(&p).unwrap();
        assert_eq!(info.dst_port, Some(8));
    }

    #[test]
    fn ipv4_truncated_copy_beyond_headers_is_fine() {
        // The total length says 1500 bytes, the queue copied only the headers.
        let mut p = v4(6, &tcp(1, 2, 0x02));
        p[2..4].copy_from_slice(&1500_u16.to_be_bytes());
        assert!(parse(&p).is_ok());
    }

    #[test]
    fn ipv4_errors() {
        assert_eq!(parse(&[]), Err(PacketError::Empty));
        assert_eq!(parse(&[0x20]), Err(PacketError::BadVersion(2)));
        assert!(matches!(
            parse(&[0x45, 0, 0]),
            Err(PacketError::Truncated {
                layer: Layer::Ipv4,
                ..
            })
        ));
        let mut p = v4(6, &tcp(1, 2, 2));
        p[0] = 0x44;
        assert_eq!(parse(&p), Err(PacketError::BadIpv4HeaderLength(4)));
        let mut p = v4(6, &tcp(1, 2, 2));
        p[0] = 0x4f; // 60-byte header, 40 bytes present
        assert!(matches!(
            parse(&p),
            Err(PacketError::Truncated {
                layer: Layer::Ipv4,
                needed: 60,
                ..
            })
        ));
        let mut p = v4(6, &tcp(1, 2, 2));
        p[2..4].copy_from_slice(&10_u16.to_be_bytes());
        assert!(matches!(
            parse(&p),
            Err(PacketError::BadIpv4TotalLength { total: 10, .. })
        ));
        let p = v4(6, &tcp(1, 2, 2)[..19]);
        assert!(matches!(
            parse(&p),
            Err(PacketError::Truncated {
                layer: Layer::Tcp,
                offset: 20,
                needed: 20,
                available: 19
            })
        ));
        let mut t = tcp(1, 2, 2);
        t[12] = 4 << 4;
        assert_eq!(parse(&v4(6, &t)), Err(PacketError::BadTcpDataOffset(4)));
        assert!(matches!(
            parse(&v4(17, &[0; 7])),
            Err(PacketError::Truncated {
                layer: Layer::Udp,
                ..
            })
        ));
        assert!(matches!(
            parse(&v4(1, &[8])),
            Err(PacketError::Truncated {
                layer: Layer::Icmp,
                ..
            })
        ));
        assert_eq!(parse(&v4(47, &[0; 8])), Err(PacketError::Unsupported(47)));
        // ICMPv6's number inside IPv4 is not ICMP.
        assert_eq!(parse(&v4(58, &[0; 8])), Err(PacketError::Unsupported(58)));
    }

    #[test]
    fn ipv6_tcp_udp_icmp() {
        let info = parse(&v6(6, &tcp(50000, 80, 0x02))).unwrap();
        assert_eq!(info.protocol, Protocol::Tcp);
        assert_eq!(info.src, "fd77:1::1".parse::<IpAddr>().unwrap());
        assert_eq!(info.dst, "fd77:1::2".parse::<IpAddr>().unwrap());
        assert_eq!(info.dst_port, Some(80));
        assert!(info.tcp_syn);
        let info = parse(&v6(17, &udp(1, 53))).unwrap();
        assert_eq!(info.protocol, Protocol::Udp);
        let info = parse(&v6(58, &[128, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(info.protocol, Protocol::Icmp);
        assert_eq!(info.icmp_type, Some(128));
        assert_eq!(parse(&v6(1, &[0; 8])), Err(PacketError::Unsupported(1)));
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        // hop-by-hop → routing → destination options (16 bytes) → AH (8 bytes) → first
        // fragment (more fragments follow) → UDP
        let mut rest = ext(proto::ROUTING, 0);
        rest.extend(ext(proto::DEST_OPTS, 0));
        rest.extend(ext(proto::AUTH, 1));
        rest.extend(ext(proto::FRAGMENT, 0)); // as AH: (0 + 2) × 4 = 8 bytes
        rest.extend([proto::UDP, 0, 0, 1, 0, 0, 0, 1]);
        rest.extend(udp(1234, 5678));
        let info = parse(&v6(proto::HOP_BY_HOP, &rest)).unwrap();
        assert_eq!(info.protocol, Protocol::Udp);
        assert_eq!((info.src_port, info.dst_port), (Some(1234), Some(5678)));
    }

    #[test]
    fn ipv6_auth_header_uses_four_octet_units() {
        let mut rest = vec![proto::TCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // (1 + 2) × 4 = 12
        rest.extend(tcp(9, 10, 0x02));
        let info = parse(&v6(proto::AUTH, &rest)).unwrap();
        assert_eq!(info.dst_port, Some(10));
    }

    #[test]
    fn ipv6_later_fragment_has_no_ports() {
        let mut rest = vec![proto::TCP, 0, 0x05, 0x00, 0, 0, 0, 1]; // offset 160
        rest.extend([0xde, 0xad]);
        let info = parse(&v6(proto::FRAGMENT, &rest)).unwrap();
        assert_eq!(info.protocol, Protocol::Tcp);
        assert_eq!(info.dst_port, None);
        // A later fragment of something we do not decide.
        let rest = vec![proto::DEST_OPTS, 0, 0x05, 0x00, 0, 0, 0, 1];
        assert_eq!(
            parse(&v6(proto::FRAGMENT, &rest)),
            Err(PacketError::Unsupported(proto::DEST_OPTS))
        );
    }

    #[test]
    fn ipv6_errors() {
        assert!(matches!(
            parse(&[0x60; 39]),
            Err(PacketError::Truncated {
                layer: Layer::Ipv6,
                ..
            })
        ));
        // Extension header whose length runs past the end.
        let mut h = ext(proto::TCP, 0);
        h[1] = 200;
        assert!(matches!(
            parse(&v6(proto::DEST_OPTS, &h)),
            Err(PacketError::Truncated {
                layer: Layer::Ipv6Extension,
                offset: 40,
                needed: 1608,
                ..
            })
        ));
        // Only one byte of an extension header.
        assert!(matches!(
            parse(&v6(proto::HOP_BY_HOP, &[6])),
            Err(PacketError::Truncated {
                layer: Layer::Ipv6Extension,
                ..
            })
        ));
        // A loop of destination options.
        let mut chain = Vec::new();
        for _ in 0..=MAX_EXTENSION_HEADERS {
            chain.extend(ext(proto::DEST_OPTS, 0));
        }
        assert_eq!(
            parse(&v6(proto::DEST_OPTS, &chain)),
            Err(PacketError::TooManyExtensionHeaders)
        );
        // No next header.
        assert_eq!(parse(&v6(59, &[])), Err(PacketError::Unsupported(59)));
    }

    #[test]
    fn every_prefix_of_a_valid_packet_is_an_error_or_ok_never_a_panic() {
        let mut rest = ext(proto::FRAGMENT, 0);
        rest.extend([proto::TCP, 0, 0, 0, 0, 0, 0, 1]);
        rest.extend(tcp(1, 2, 2));
        let packets = [v4(6, &tcp(1, 2, 2)), v6(proto::DEST_OPTS, &rest)];
        for p in &packets {
            for n in 0..=p.len() {
                let _ = parse(&p[..n]);
            }
            assert!(parse(p).is_ok());
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse(&bytes);
            }

            #[test]
            fn arbitrary_ipv6_headers_never_panic(
                next in any::<u8>(),
                rest in proptest::collection::vec(any::<u8>(), 0..160),
            ) {
                let _ = parse(&v6(next, &rest));
            }

            #[test]
            fn tcp_ports_round_trip(src in any::<u16>(), dst in any::<u16>(), flags in any::<u8>()) {
                let info = parse(&v4(6, &tcp(src, dst, flags))).unwrap();
                prop_assert_eq!(info.src_port, Some(src));
                prop_assert_eq!(info.dst_port, Some(dst));
                prop_assert_eq!(info.tcp_syn, flags & 2 != 0);
            }
        }
    }
}
