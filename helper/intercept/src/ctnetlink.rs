//! The conntrack netlink (ctnetlink) messages of [`forget_connections`](crate::forget_connections):
//! it encodes the three requests the Linux backend sends the kernel (a dump of the entries with
//! our mark, a lookup of one flow, the deletion of one entry) and decodes the kernel's replies. Pure: no sockets, no platform code, no logging, so it compiles and is
//! tested everywhere and fuzzed. It must not decide which entries go — that is the backend's.
//!
//! The decoder trusts nothing: every length is checked before it is used, nesting is fixed at
//! the three levels a conntrack entry has (entry → tuple → addresses or ports), nothing is
//! recursive, and no input makes it panic or allocate more than one small value per message of
//! the datagram it was given. Attributes it does not know are skipped, so newer kernels that add
//! some still decode.
//!
//! The format, from `linux/netlink.h`, `linux/netfilter/nfnetlink.h` and
//! `linux/netfilter/nfnetlink_conntrack.h`: a datagram holds netlink messages, each a 16-byte
//! header (length, type, flags, sequence number, port id; host byte order) padded to 4 bytes.
//! A ctnetlink message has type `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*`, then a 4-byte
//! `nfgenmsg` (address family, version, resource id), then attributes: 4-byte header (length,
//! type; host byte order; the type's top two bits are flags) and a value padded to 4 bytes.
//! Values are in network byte order, except the one-byte ones.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `AF_INET`, the family of IPv4 entries.
pub const AF_INET: u8 = 2;
/// `AF_INET6`, the family of IPv6 entries.
pub const AF_INET6: u8 = 10;
/// `AF_UNSPEC`: a dump of both families.
pub const AF_UNSPEC: u8 = 0;

/// Netlink header length.
const NLMSG_HDRLEN: usize = 16;
/// `nfgenmsg` length.
const NFGENMSG_LEN: usize = 4;
/// Attribute header length.
const NLA_HDRLEN: usize = 4;
/// The attribute type bits (the top two are the "nested" and "network byte order" flags).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// The flag that marks a nested attribute; the kernel accepts it and `conntrack` sets it.
const NLA_F_NESTED: u16 = 0x8000;

/// Netlink control message types (`linux/netlink.h`); the others (no-op, overrun) are ignored.
mod nlmsg {
    pub(super) const ERROR: u16 = 2;
    pub(super) const DONE: u16 = 3;
}

/// Netlink message flags.
mod flags {
    pub(super) const REQUEST: u16 = 0x1;
    /// On every part of a multi-part reply.
    pub(super) const MULTI: u16 = 0x2;
    pub(super) const ACK: u16 = 0x4;
    /// `NLM_F_ROOT | NLM_F_MATCH`.
    pub(super) const DUMP: u16 = 0x300;
}

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*`.
mod ct_msg {
    const SUBSYS: u16 = 1 << 8;
    /// Also the type of every entry the kernel sends back.
    pub(super) const NEW: u16 = SUBSYS;
    pub(super) const GET: u16 = SUBSYS | 1;
    pub(super) const DELETE: u16 = SUBSYS | 2;
}

/// `enum ctattr_type`: the attributes of an entry.
mod cta {
    pub(super) const TUPLE_ORIG: u16 = 1;
    pub(super) const MARK: u16 = 8;
    pub(super) const COUNTERS_ORIG: u16 = 9;
    pub(super) const COUNTERS_REPLY: u16 = 10;
    pub(super) const ID: u16 = 12;
    pub(super) const ZONE: u16 = 18;
    pub(super) const MARK_MASK: u16 = 21;
    pub(super) const FILTER: u16 = 25;
}

/// `enum ctattr_filter` and the flag that filters a dump by the original tuple's protocol.
mod filter_attr {
    pub(super) const ORIG_FLAGS: u16 = 1;
    pub(super) const REPLY_FLAGS: u16 = 2;
    /// `CTA_FILTER_FLAG(CTA_PROTO_NUM)`.
    pub(super) const PROTO_NUM: u32 = 1 << 3;
}

/// `enum ctattr_counters`.
mod counter_attr {
    pub(super) const PACKETS: u16 = 1;
    pub(super) const BYTES: u16 = 2;
}

/// `enum ctattr_tuple`.
mod tuple_attr {
    pub(super) const IP: u16 = 1;
    pub(super) const PROTO: u16 = 2;
    pub(super) const ZONE: u16 = 3;
}

/// `enum ctattr_ip`.
mod ip_attr {
    pub(super) const V4_SRC: u16 = 1;
    pub(super) const V4_DST: u16 = 2;
    pub(super) const V6_SRC: u16 = 3;
    pub(super) const V6_DST: u16 = 4;
}

/// `enum ctattr_l4proto`.
mod proto_attr {
    pub(super) const NUM: u16 = 1;
    pub(super) const SRC_PORT: u16 = 2;
    pub(super) const DST_PORT: u16 = 3;
    pub(super) const ICMP_ID: u16 = 4;
    pub(super) const ICMP_TYPE: u16 = 5;
    pub(super) const ICMP_CODE: u16 = 6;
    pub(super) const ICMPV6_ID: u16 = 7;
    pub(super) const ICMPV6_TYPE: u16 = 8;
    pub(super) const ICMPV6_CODE: u16 = 9;
}

/// IP protocol number of ICMPv6, whose keys travel in the `ICMPV6_*` attributes.
const IPPROTO_ICMPV6: u8 = 58;

/// One direction of a conntrack entry: what the kernel looks an entry up by.
///
/// Only what the kernel reported is set; re-encoding a decoded tuple gives the kernel the same
/// key back, whatever the protocol (ports for TCP, UDP, SCTP, DCCP, GRE keys; id, type and
/// code for ICMP and ICMPv6; nothing more for other protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (of the same family).
    pub dst: IpAddr,
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …).
    pub protocol: u8,
    /// Source port (or GRE key).
    pub src_port: Option<u16>,
    /// Destination port (or GRE key).
    pub dst_port: Option<u16>,
    /// ICMP or ICMPv6 echo id.
    pub icmp_id: Option<u16>,
    /// ICMP or ICMPv6 type.
    pub icmp_type: Option<u8>,
    /// ICMP or ICMPv6 code.
    pub icmp_code: Option<u8>,
    /// A per-direction conntrack zone, when the entry has one.
    pub zone: Option<u16>,
}

impl Tuple {
    /// The tuple of a flow with ports (TCP, UDP, …) from `src` to `dst`.
    pub fn with_ports(protocol: u8, src: SocketAddr, dst: SocketAddr) -> Tuple {
        Tuple {
            src: src.ip(),
            dst: dst.ip(),
            protocol,
            src_port: Some(src.port()),
            dst_port: Some(dst.port()),
            icmp_id: None,
            icmp_type: None,
            icmp_code: None,
            zone: None,
        }
    }

    /// [`AF_INET`] or [`AF_INET6`], by the source address.
    pub fn family(&self) -> u8 {
        family_of(self.src)
    }
}

/// The address family number of `ip`.
pub fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// A conntrack entry as a dump or lookup reports it: what identifies it, and its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// The original direction, which the entry is deleted by.
    pub orig: Tuple,
    /// The connection mark (0 when the kernel left it out).
    pub mark: u32,
    /// The kernel's id of this entry: a deletion that names it removes only this entry, never
    /// a newer one that took over the same tuple in between.
    pub id: Option<u32>,
    /// The conntrack zone, when not the default one.
    pub zone: Option<u16>,
    /// What the connection carried, when conntrack accounting is on (`nf_conntrack_acct`).
    pub counters: Option<Counters>,
}

/// Bytes and packets of a conntrack entry, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Packets in the original direction (from who opened it).
    pub orig_packets: u64,
    /// Bytes in the original direction, IP headers included.
    pub orig_bytes: u64,
    /// Packets in the reply direction.
    pub reply_packets: u64,
    /// Bytes in the reply direction, IP headers included.
    pub reply_bytes: u64,
}

/// What one message of a reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A conntrack entry (an item of a dump, or the answer to a lookup).
    Entry(Entry),
    /// A conntrack entry whose attributes could not be decoded (skipped, never acted on).
    Unusable(DecodeError),
    /// An acknowledgement (`0`) or an error (a negative errno) for the request with this
    /// sequence number (`NLMSG_ERROR`).
    Status(i32),
    /// The end of a dump; a negative errno if the dump failed (`NLMSG_DONE`).
    Done(i32),
    /// Any other message (a no-op, an overrun notice, another subsystem's): ignored.
    Other,
}

/// One decoded message and the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sequence number of the request it answers.
    pub seq: u32,
    /// Set on the parts of a multi-part reply (dumps).
    pub multi: bool,
    /// What it says.
    pub reply: Reply,
}

/// Why a reply (or one entry of it) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes ended inside a header or value of this kind.
    Truncated(&'static str),
    /// A header gave a length that is impossible for this kind (too short or past the end).
    BadLength(&'static str),
    /// An entry lacks this required part.
    Missing(&'static str),
    /// An entry's address family is neither IPv4 nor IPv6, or its addresses are not of it.
    BadFamily(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated(what) => write!(f, "reply cut short inside {what}"),
            DecodeError::BadLength(what) => write!(f, "impossible length for {what}"),
            DecodeError::Missing(what) => write!(f, "entry without {what}"),
            DecodeError::BadFamily(family) => {
                write!(f, "entry of address family {family} (not IPv4 or IPv6)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------------
// Decoding

/// `N` bytes of `bytes` from `at`, if there are that many.
fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A value that must be exactly `N` bytes long.
fn exact<const N: usize>(value: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    value.try_into().map_err(|_| DecodeError::BadLength(what))
}

fn be16(value: &[u8], what: &'static str) -> Result<u16, DecodeError> {
    exact::<2>(value, what).map(u16::from_be_bytes)
}

fn be32(value: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    exact::<4>(value, what).map(u32::from_be_bytes)
}

fn be64(value: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    exact::<8>(value, what).map(u64::from_be_bytes)
}

/// Decodes `CTA_COUNTERS_*`: (packets, bytes).
fn decode_counters(value: &[u8]) -> Result<(u64, u64), DecodeError> {
    let (mut packets, mut bytes) = (0, 0);
    for attr in Attrs::new(value, "a counter attribute") {
        let (kind, v) = attr?;
        match kind {
            counter_attr::PACKETS => packets = be64(v, "a packet counter")?,
            counter_attr::BYTES => bytes = be64(v, "a byte counter")?,
            _ => {}
        }
    }
    Ok((packets, bytes))
}

fn byte(value: &[u8], what: &'static str) -> Result<u8, DecodeError> {
    exact::<1>(value, what).map(|[b]| b)
}

/// `len` rounded up to the next multiple of 4 (netlink alignment); saturates.
fn align4(len: usize) -> usize {
    len.checked_add(3).map_or(usize::MAX, |l| l & !3)
}

/// The attributes in `bytes`: `(type without flags, value)` each. Stops at the first malformed
/// header, which is yielded as an error; fewer than 4 bytes left over are padding.
struct Attrs<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Attrs<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Attrs<'a> {
        Attrs { rest: bytes, what }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLA_HDRLEN {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let len = usize::from(u16::from_ne_bytes(array(rest, 0)?));
        let kind = u16::from_ne_bytes(array(rest, 2)?) & NLA_TYPE_MASK;
        let Some(value) = rest.get(NLA_HDRLEN..len).filter(|_| len >= NLA_HDRLEN) else {
            // `self.rest` stays empty: nothing after a bad header can be trusted.
            return Some(Err(DecodeError::BadLength(self.what)));
        };
        self.rest = rest.get(align4(len)..).unwrap_or_default();
        Some(Ok((kind, value)))
    }
}

/// Decodes every message of one datagram as the kernel sent it.
///
/// The framing must be sound (each message header complete, each length within the
/// datagram): otherwise nothing of the datagram is returned. An entry whose own attributes are
/// malformed or incomplete comes back as [`Reply::Unusable`], and the rest still decodes.
pub fn decode(datagram: &[u8]) -> Result<Vec<Message>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let header: [u8; NLMSG_HDRLEN] =
            array(rest, 0).ok_or(DecodeError::Truncated("a netlink header"))?;
        let [l0, l1, l2, l3, t0, t1, f0, f1, s0, s1, s2, s3, ..] = header;
        let len = usize::try_from(u32::from_ne_bytes([l0, l1, l2, l3]))
            .map_err(|_| DecodeError::BadLength("a netlink message"))?;
        let kind = u16::from_ne_bytes([t0, t1]);
        let msg_flags = u16::from_ne_bytes([f0, f1]);
        let seq = u32::from_ne_bytes([s0, s1, s2, s3]);
        let body = rest
            .get(NLMSG_HDRLEN..len)
            .filter(|_| len >= NLMSG_HDRLEN)
            .ok_or(DecodeError::BadLength("a netlink message"))?;
        let reply = match kind {
            nlmsg::ERROR => Reply::Status(status(body, true)?),
            nlmsg::DONE => Reply::Done(status(body, false)?),
            ct_msg::NEW => match decode_entry(body) {
                Ok(entry) => Reply::Entry(entry),
                Err(e) => Reply::Unusable(e),
            },
            _ => Reply::Other,
        };
        out.push(Message {
            seq,
            multi: msg_flags & flags::MULTI != 0,
            reply,
        });
        rest = rest.get(align4(len)..).unwrap_or_default();
    }
    Ok(out)
}

/// The error code at the start of an `NLMSG_ERROR` (required) or `NLMSG_DONE` (optional:
/// very old kernels sent none) body.
fn status(body: &[u8], required: bool) -> Result<i32, DecodeError> {
    match array::<4>(body, 0) {
        Some(code) => Ok(i32::from_ne_bytes(code)),
        None if required => Err(DecodeError::Truncated("a netlink error code")),
        None => Ok(0),
    }
}

/// Decodes the body of an entry message: `nfgenmsg`, then its attributes.
fn decode_entry(body: &[u8]) -> Result<Entry, DecodeError> {
    let [family, ..] =
        array::<NFGENMSG_LEN>(body, 0).ok_or(DecodeError::Truncated("an nfgenmsg header"))?;
    if family != AF_INET && family != AF_INET6 {
        return Err(DecodeError::BadFamily(family));
    }
    let mut orig = None;
    let mut mark = 0;
    let mut id = None;
    let mut zone = None;
    let mut counters: Option<Counters> = None;
    // A repeated attribute overrides the earlier one, as in the kernel's own parser.
    for attr in Attrs::new(
        body.get(NFGENMSG_LEN..).unwrap_or_default(),
        "an entry attribute",
    ) {
        let (kind, value) = attr?;
        match kind {
            cta::TUPLE_ORIG => orig = Some(value),
            cta::MARK => mark = be32(value, "the mark")?,
            cta::ID => id = Some(be32(value, "the entry id")?),
            cta::ZONE => zone = Some(be16(value, "the zone")?),
            cta::COUNTERS_ORIG => {
                let (packets, bytes) = decode_counters(value)?;
                let c = counters.get_or_insert_default();
                c.orig_packets = packets;
                c.orig_bytes = bytes;
            }
            cta::COUNTERS_REPLY => {
                let (packets, bytes) = decode_counters(value)?;
                let c = counters.get_or_insert_default();
                c.reply_packets = packets;
                c.reply_bytes = bytes;
            }
            _ => {}
        }
    }
    let orig = decode_tuple(
        family,
        orig.ok_or(DecodeError::Missing("an original tuple"))?,
    )?;
    Ok(Entry {
        family,
        orig,
        mark,
        id,
        zone,
        counters,
    })
}

/// Decodes a tuple (the value of `CTA_TUPLE_ORIG`) of an entry of `family`.
fn decode_tuple(family: u8, bytes: &[u8]) -> Result<Tuple, DecodeError> {
    let mut ip = None;
    let mut proto = None;
    let mut zone = None;
    for attr in Attrs::new(bytes, "a tuple attribute") {
        let (kind, value) = attr?;
        match kind {
            tuple_attr::IP => ip = Some(value),
            tuple_attr::PROTO => proto = Some(value),
            tuple_attr::ZONE => zone = Some(be16(value, "the tuple zone")?),
            _ => {}
        }
    }
    let (src, dst) = decode_addresses(family, ip.ok_or(DecodeError::Missing("addresses"))?)?;
    let mut tuple = Tuple {
        src,
        dst,
        protocol: 0,
        src_port: None,
        dst_port: None,
        icmp_id: None,
        icmp_type: None,
        icmp_code: None,
        zone,
    };
    let mut protocol = None;
    for attr in Attrs::new(
        proto.ok_or(DecodeError::Missing("a protocol"))?,
        "a protocol attribute",
    ) {
        let (kind, value) = attr?;
        match kind {
            proto_attr::NUM => protocol = Some(byte(value, "the protocol number")?),
            proto_attr::SRC_PORT => tuple.src_port = Some(be16(value, "the source port")?),
            proto_attr::DST_PORT => tuple.dst_port = Some(be16(value, "the destination port")?),
            proto_attr::ICMP_ID | proto_attr::ICMPV6_ID => {
                tuple.icmp_id = Some(be16(value, "the ICMP id")?);
            }
            proto_attr::ICMP_TYPE | proto_attr::ICMPV6_TYPE => {
                tuple.icmp_type = Some(byte(value, "the ICMP type")?);
            }
            proto_attr::ICMP_CODE | proto_attr::ICMPV6_CODE => {
                tuple.icmp_code = Some(byte(value, "the ICMP code")?);
            }
            _ => {}
        }
    }
    tuple.protocol = protocol.ok_or(DecodeError::Missing("a protocol number"))?;
    Ok(tuple)
}

/// Decodes `CTA_TUPLE_IP`: both addresses, of the entry's family.
fn decode_addresses(family: u8, bytes: &[u8]) -> Result<(IpAddr, IpAddr), DecodeError> {
    let mut src = None;
    let mut dst = None;
    for attr in Attrs::new(bytes, "an address attribute") {
        let (kind, value) = attr?;
        let addr = match (family, kind) {
            (AF_INET, ip_attr::V4_SRC | ip_attr::V4_DST) => {
                IpAddr::V4(Ipv4Addr::from(exact::<4>(value, "an IPv4 address")?))
            }
            (AF_INET6, ip_attr::V6_SRC | ip_attr::V6_DST) => {
                IpAddr::V6(Ipv6Addr::from(exact::<16>(value, "an IPv6 address")?))
            }
            (_, ip_attr::V4_SRC | ip_attr::V4_DST | ip_attr::V6_SRC | ip_attr::V6_DST) => {
                return Err(DecodeError::BadFamily(family));
            }
            _ => continue,
        };
        match kind {
            ip_attr::V4_SRC | ip_attr::V6_SRC => src = Some(addr),
            _ => dst = Some(addr),
        }
    }
    Ok((
        src.ok_or(DecodeError::Missing("a source address"))?,
        dst.ok_or(DecodeError::Missing("a destination address"))?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Writes netlink messages into a buffer. Every length it writes is the length of what it
/// wrote: requests are a few hundred bytes at most, far below the 16-bit attribute limit.
struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl Writer<'_> {
    /// Starts a ctnetlink message; returns where it starts, for [`end`](Self::end).
    fn begin(&mut self, kind: u16, msg_flags: u16, seq: u32, family: u8) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0_u32.to_ne_bytes()); // length, set by `end`
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&msg_flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0_u32.to_ne_bytes()); // port id: the kernel fills it in
        // nfgenmsg: family, version 0 (NFNETLINK_V0), resource id 0.
        self.buf.extend_from_slice(&[family, 0, 0, 0]);
        start
    }

    /// Sets the length of the message that starts at `start`.
    fn end(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len().saturating_sub(start)).unwrap_or(u32::MAX);
        if let Some(slot) = self.buf.get_mut(start..start.saturating_add(4)) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// Appends an attribute with `value`, padded to 4 bytes.
    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(NLA_HDRLEN.saturating_add(value.len())).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// Starts a nested attribute; returns where it starts, for [`end_nest`](Self::end_nest).
    fn begin_nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0_u16.to_ne_bytes()); // length, set by `end_nest`
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let len = u16::try_from(self.buf.len().saturating_sub(start)).unwrap_or(u16::MAX);
        if let Some(slot) = self.buf.get_mut(start..start.saturating_add(2)) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
    }

    fn pad(&mut self) {
        let padded = align4(self.buf.len());
        self.buf.resize(padded, 0);
    }

    /// Appends `CTA_TUPLE_ORIG` for `tuple`.
    fn tuple(&mut self, tuple: &Tuple) {
        let outer = self.begin_nest(cta::TUPLE_ORIG);
        let ip = self.begin_nest(tuple_attr::IP);
        for (addr, v4, v6) in [
            (tuple.src, ip_attr::V4_SRC, ip_attr::V6_SRC),
            (tuple.dst, ip_attr::V4_DST, ip_attr::V6_DST),
        ] {
            match addr {
                IpAddr::V4(a) => self.attr(v4, &a.octets()),
                IpAddr::V6(a) => self.attr(v6, &a.octets()),
            }
        }
        self.end_nest(ip);
        let proto = self.begin_nest(tuple_attr::PROTO);
        self.attr(proto_attr::NUM, &[tuple.protocol]);
        if let Some(port) = tuple.src_port {
            self.attr(proto_attr::SRC_PORT, &port.to_be_bytes());
        }
        if let Some(port) = tuple.dst_port {
            self.attr(proto_attr::DST_PORT, &port.to_be_bytes());
        }
        let (id, kind, code) = if tuple.protocol == IPPROTO_ICMPV6 {
            (
                proto_attr::ICMPV6_ID,
                proto_attr::ICMPV6_TYPE,
                proto_attr::ICMPV6_CODE,
            )
        } else {
            (
                proto_attr::ICMP_ID,
                proto_attr::ICMP_TYPE,
                proto_attr::ICMP_CODE,
            )
        };
        if let Some(v) = tuple.icmp_id {
            self.attr(id, &v.to_be_bytes());
        }
        if let Some(v) = tuple.icmp_type {
            self.attr(kind, &[v]);
        }
        if let Some(v) = tuple.icmp_code {
            self.attr(code, &[v]);
        }
        self.end_nest(proto);
        if let Some(zone) = tuple.zone {
            self.attr(tuple_attr::ZONE, &zone.to_be_bytes());
        }
        self.end_nest(outer);
    }
}

/// A dump request for the entries whose mark, masked with `mask`, equals `mark`, of one family
/// ([`AF_INET`], [`AF_INET6`]) or both ([`AF_UNSPEC`]). The kernel filters by both (checked on
/// 6.18); the caller checks both again on what comes back, in case a kernel does not.
pub fn dump_request(seq: u32, family: u8, mark: u32, mask: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(40);
    let mut w = Writer { buf: &mut buf };
    let start = w.begin(ct_msg::GET, flags::REQUEST | flags::DUMP, seq, family);
    w.attr(cta::MARK, &mark.to_be_bytes());
    w.attr(cta::MARK_MASK, &mask.to_be_bytes());
    w.end(start);
    buf
}

/// As [`dump_request`], for entries of one family (`AF_INET` or `AF_INET6`) whose original
/// tuple has the L4 protocol `protocol`, filtered by the kernel (Linux 5.8 and later;
/// older kernels refuse the filter).
pub fn dump_request_protocol(seq: u32, family: u8, mark: u32, mask: u32, protocol: u8) -> Vec<u8> {
    let mut buf = Vec::with_capacity(80);
    let mut w = Writer { buf: &mut buf };
    let start = w.begin(ct_msg::GET, flags::REQUEST | flags::DUMP, seq, family);
    w.attr(cta::MARK, &mark.to_be_bytes());
    w.attr(cta::MARK_MASK, &mask.to_be_bytes());
    let orig = w.begin_nest(cta::TUPLE_ORIG);
    let proto = w.begin_nest(tuple_attr::PROTO);
    w.attr(proto_attr::NUM, &[protocol]);
    w.end_nest(proto);
    w.end_nest(orig);
    let filter = w.begin_nest(cta::FILTER);
    w.attr(
        filter_attr::ORIG_FLAGS,
        &filter_attr::PROTO_NUM.to_ne_bytes(),
    );
    w.attr(filter_attr::REPLY_FLAGS, &0_u32.to_ne_bytes());
    w.end_nest(filter);
    w.end(start);
    buf
}

/// A lookup of the entry that has `tuple` in either direction, in the default zone; the kernel
/// answers with the entry and an acknowledgement, or with `ENOENT`.
pub fn get_request(seq: u32, tuple: &Tuple) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96);
    let mut w = Writer { buf: &mut buf };
    let start = w.begin(
        ct_msg::GET,
        flags::REQUEST | flags::ACK,
        seq,
        tuple.family(),
    );
    w.tuple(tuple);
    w.end(start);
    buf
}

/// The deletion of `entry`, found by its original tuple (and zone) and, when the kernel gave
/// one, its id; the kernel acknowledges it, or answers `ENOENT` when it is gone.
pub fn delete_request(seq: u32, entry: &Entry) -> Vec<u8> {
    let mut buf = Vec::with_capacity(112);
    let mut w = Writer { buf: &mut buf };
    let start = w.begin(
        ct_msg::DELETE,
        flags::REQUEST | flags::ACK,
        seq,
        entry.family,
    );
    w.tuple(&entry.orig);
    if let Some(id) = entry.id {
        w.attr(cta::ID, &id.to_be_bytes());
    }
    if let Some(zone) = entry.zone {
        w.attr(cta::ZONE, &zone.to_be_bytes());
    }
    w.end(start);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute as the kernel writes it.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align4(out.len()), 0);
        out
    }

    fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | NLA_F_NESTED, &parts.concat())
    }

    /// A netlink message with `body` (nfgenmsg included, if any).
    fn message(kind: u16, msg_flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(16 + body.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&msg_flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&4242_u32.to_ne_bytes());
        out.extend_from_slice(body);
        out.resize(align4(out.len()), 0);
        out
    }

    /// An entry message as a dump sends it: v4 TCP 10.0.0.1:1000 → 10.0.0.2:80.
    fn tcp4_entry(seq: u32, mark: u32, id: u32) -> Vec<u8> {
        let orig = nest(
            cta::TUPLE_ORIG,
            &[
                nest(
                    tuple_attr::IP,
                    &[
                        attr(ip_attr::V4_SRC, &[10, 0, 0, 1]),
                        attr(ip_attr::V4_DST, &[10, 0, 0, 2]),
                    ],
                ),
                nest(
                    tuple_attr::PROTO,
                    &[
                        attr(proto_attr::NUM, &[6]),
                        attr(proto_attr::SRC_PORT, &1000_u16.to_be_bytes()),
                        attr(proto_attr::DST_PORT, &80_u16.to_be_bytes()),
                    ],
                ),
            ],
        );
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend(orig);
        // Attributes we do not read, between those we do.
        body.extend(attr(3, &0x8e_u32.to_be_bytes())); // CTA_STATUS
        body.extend(attr(cta::MARK, &mark.to_be_bytes()));
        body.extend(attr(7, &120_u32.to_be_bytes())); // CTA_TIMEOUT
        body.extend(attr(cta::ID, &id.to_be_bytes()));
        message(ct_msg::NEW, 0x2, seq, &body)
    }

    fn tcp4_tuple() -> Tuple {
        Tuple::with_ports(
            6,
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        )
    }

    #[test]
    fn decodes_a_dump_part_with_entries_and_done() {
        let mut datagram = tcp4_entry(7, 0x1000_0100, 99);
        datagram.extend(message(nlmsg::DONE, 0x2, 7, &0_i32.to_ne_bytes()));
        let msgs = decode(&datagram).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].seq, 7);
        assert!(msgs[0].multi);
        assert_eq!(
            msgs[0].reply,
            Reply::Entry(Entry {
                family: AF_INET,
                orig: tcp4_tuple(),
                mark: 0x1000_0100,
                id: Some(99),
                zone: None,
                counters: None,
            })
        );
        assert_eq!(msgs[1].reply, Reply::Done(0));
    }

    #[test]
    fn a_protocol_dump_carries_the_mark_the_protocol_and_the_filter() {
        let req = dump_request_protocol(9, AF_INET6, 0x1000_0000, 0x9000_0000, 17);
        assert_eq!(req[16], AF_INET6);
        let attrs = request_attrs(&req);
        let kinds: Vec<u16> = attrs.iter().map(|(k, _)| *k & !NLA_F_NESTED).collect();
        assert_eq!(
            kinds,
            [cta::MARK, cta::MARK_MASK, cta::TUPLE_ORIG, cta::FILTER]
        );
        let filter = &attrs[3].1;
        let mut flags = Attrs::new(filter, "test").map(|a| a.unwrap());
        assert_eq!(
            flags.next(),
            Some((
                filter_attr::ORIG_FLAGS,
                &filter_attr::PROTO_NUM.to_ne_bytes()[..]
            ))
        );
        let orig = &attrs[2].1;
        let (kind, proto) = Attrs::new(orig, "test").next().unwrap().unwrap();
        assert_eq!(kind, tuple_attr::PROTO);
        let (kind, num) = Attrs::new(proto, "test").next().unwrap().unwrap();
        assert_eq!((kind, num), (proto_attr::NUM, &[17_u8][..]));
    }

    #[test]
    fn decodes_the_counters_of_an_accounted_entry() {
        let counters = |packets: u64, bytes: u64| {
            vec![
                attr(counter_attr::PACKETS, &packets.to_be_bytes()),
                attr(counter_attr::BYTES, &bytes.to_be_bytes()),
            ]
        };
        let plain = tcp4_entry(7, 0x1000_0000, 1);
        let mut body = plain[NLMSG_HDRLEN..].to_vec();
        body.extend(nest(cta::COUNTERS_ORIG, &counters(3, 1_500)));
        body.extend(nest(cta::COUNTERS_REPLY, &counters(2, 9_000)));
        let msgs = decode(&message(ct_msg::NEW, 0x2, 7, &body)).unwrap();
        let Reply::Entry(entry) = msgs[0].reply else {
            panic!("{:?}", msgs[0].reply)
        };
        assert_eq!(
            entry.counters,
            Some(Counters {
                orig_packets: 3,
                orig_bytes: 1_500,
                reply_packets: 2,
                reply_bytes: 9_000,
            })
        );
        // A counter of the wrong size makes the entry unusable, never a wrong number.
        let mut bad = plain[NLMSG_HDRLEN..].to_vec();
        bad.extend(nest(
            cta::COUNTERS_ORIG,
            &[attr(counter_attr::BYTES, &7_u32.to_be_bytes())],
        ));
        let msgs = decode(&message(ct_msg::NEW, 0x2, 7, &bad)).unwrap();
        assert!(
            matches!(msgs[0].reply, Reply::Unusable(_)),
            "{:?}",
            msgs[0].reply
        );
    }

    #[test]
    fn decodes_errors_acks_and_ignores_other_messages() {
        let mut datagram = message(nlmsg::ERROR, 0x100, 3, &(-2_i32).to_ne_bytes());
        datagram.extend(message(nlmsg::ERROR, 0, 4, &0_i32.to_ne_bytes()));
        datagram.extend(message(1, 0, 5, &[])); // NLMSG_NOOP
        datagram.extend(message(0x0201, 0, 6, &[1, 2, 3])); // another subsystem
        datagram.extend(message(nlmsg::DONE, 0, 8, &[])); // very old kernels: no code
        let replies: Vec<_> = decode(&datagram)
            .unwrap()
            .into_iter()
            .map(|m| (m.seq, m.reply))
            .collect();
        assert_eq!(
            replies,
            [
                (3, Reply::Status(-2)),
                (4, Reply::Status(0)),
                (5, Reply::Other),
                (6, Reply::Other),
                (8, Reply::Done(0)),
            ]
        );
        // An error message without its code is a framing problem.
        assert_eq!(
            decode(&message(nlmsg::ERROR, 0, 1, &[0, 0])),
            Err(DecodeError::Truncated("a netlink error code"))
        );
    }

    #[test]
    fn decodes_ipv6_icmpv6_with_zones() {
        let orig = nest(
            cta::TUPLE_ORIG,
            &[
                nest(
                    tuple_attr::IP,
                    &[
                        attr(
                            ip_attr::V6_SRC,
                            &"fd00::1".parse::<Ipv6Addr>().unwrap().octets(),
                        ),
                        attr(
                            ip_attr::V6_DST,
                            &"fd00::2".parse::<Ipv6Addr>().unwrap().octets(),
                        ),
                    ],
                ),
                nest(
                    tuple_attr::PROTO,
                    &[
                        attr(proto_attr::NUM, &[58]),
                        attr(proto_attr::ICMPV6_ID, &77_u16.to_be_bytes()),
                        attr(proto_attr::ICMPV6_TYPE, &[128]),
                        attr(proto_attr::ICMPV6_CODE, &[0]),
                    ],
                ),
                attr(tuple_attr::ZONE, &5_u16.to_be_bytes()),
            ],
        );
        let mut body = vec![AF_INET6, 0, 0, 0];
        body.extend(orig);
        body.extend(attr(cta::ZONE, &9_u16.to_be_bytes()));
        let msgs = decode(&message(ct_msg::NEW, 0, 1, &body)).unwrap();
        let Reply::Entry(entry) = msgs[0].reply.clone() else {
            panic!("{msgs:?}");
        };
        assert_eq!(entry.family, AF_INET6);
        assert_eq!(entry.orig.src, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(entry.orig.protocol, 58);
        assert_eq!(
            (
                entry.orig.icmp_id,
                entry.orig.icmp_type,
                entry.orig.icmp_code
            ),
            (Some(77), Some(128), Some(0))
        );
        assert_eq!((entry.orig.src_port, entry.orig.dst_port), (None, None));
        assert_eq!(entry.orig.zone, Some(5));
        assert_eq!(entry.zone, Some(9));
        assert_eq!(entry.mark, 0, "no mark attribute is mark 0");
        assert_eq!(entry.id, None);
    }

    #[test]
    fn a_bad_entry_is_unusable_but_the_rest_decodes() {
        // An IPv4 entry with an IPv6 address.
        let orig = nest(
            cta::TUPLE_ORIG,
            &[
                nest(
                    tuple_attr::IP,
                    &[
                        attr(ip_attr::V6_SRC, &[0; 16]),
                        attr(ip_attr::V6_DST, &[0; 16]),
                    ],
                ),
                nest(tuple_attr::PROTO, &[attr(proto_attr::NUM, &[6])]),
            ],
        );
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend(orig);
        let mut datagram = message(ct_msg::NEW, 0, 1, &body);
        // No tuple at all.
        datagram.extend(message(ct_msg::NEW, 0, 1, &[AF_INET, 0, 0, 0]));
        // A mark of the wrong size.
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend(attr(cta::MARK, &[1, 2]));
        datagram.extend(message(ct_msg::NEW, 0, 1, &body));
        // An unknown family.
        datagram.extend(message(ct_msg::NEW, 0, 1, &[7, 0, 0, 0]));
        // No nfgenmsg.
        datagram.extend(message(ct_msg::NEW, 0, 1, &[]));
        datagram.extend(tcp4_entry(1, 1, 1));
        let replies: Vec<_> = decode(&datagram)
            .unwrap()
            .into_iter()
            .map(|m| m.reply)
            .collect();
        assert_eq!(
            replies[..5],
            [
                Reply::Unusable(DecodeError::BadFamily(AF_INET)),
                Reply::Unusable(DecodeError::Missing("an original tuple")),
                Reply::Unusable(DecodeError::BadLength("the mark")),
                Reply::Unusable(DecodeError::BadFamily(7)),
                Reply::Unusable(DecodeError::Truncated("an nfgenmsg header")),
            ]
        );
        assert!(matches!(replies[5], Reply::Entry(_)));
    }

    #[test]
    fn broken_framing_fails_the_datagram() {
        let good = tcp4_entry(1, 1, 1);
        assert_eq!(
            decode(&good[..10]),
            Err(DecodeError::Truncated("a netlink header"))
        );
        assert_eq!(
            decode(&good[..good.len() - 4]),
            Err(DecodeError::BadLength("a netlink message"))
        );
        let mut short = good.clone();
        short[..4].copy_from_slice(&8_u32.to_ne_bytes());
        assert_eq!(
            decode(&short),
            Err(DecodeError::BadLength("a netlink message"))
        );
        let mut huge = good;
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(
            decode(&huge),
            Err(DecodeError::BadLength("a netlink message"))
        );
        assert_eq!(decode(&[]), Ok(Vec::new()));
    }

    #[test]
    fn an_attribute_longer_than_its_message_is_unusable() {
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend(200_u16.to_ne_bytes());
        body.extend(cta::MARK.to_ne_bytes());
        body.extend([0; 4]);
        let msgs = decode(&message(ct_msg::NEW, 0, 1, &body)).unwrap();
        assert_eq!(
            msgs[0].reply,
            Reply::Unusable(DecodeError::BadLength("an entry attribute"))
        );
        // And one shorter than its own header.
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend(2_u16.to_ne_bytes());
        body.extend(cta::MARK.to_ne_bytes());
        let msgs = decode(&message(ct_msg::NEW, 0, 1, &body)).unwrap();
        assert_eq!(
            msgs[0].reply,
            Reply::Unusable(DecodeError::BadLength("an entry attribute"))
        );
    }

    #[test]
    fn the_dump_request_filters_by_mark_only() {
        let req = dump_request(9, AF_UNSPEC, 0x1000_0000, 0x9000_0000);
        let mut want = Vec::new();
        want.extend(36_u32.to_ne_bytes());
        want.extend(0x0101_u16.to_ne_bytes()); // CTNETLINK << 8 | IPCTNL_MSG_CT_GET
        want.extend(0x0301_u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
        want.extend(9_u32.to_ne_bytes());
        want.extend(0_u32.to_ne_bytes());
        want.extend([0, 0, 0, 0]);
        want.extend(attr(cta::MARK, &[0x10, 0, 0, 0]));
        want.extend(attr(cta::MARK_MASK, &[0x90, 0, 0, 0]));
        assert_eq!(req, want);
    }

    /// Requests decode with the same attribute walker: the lengths the writer sets are right.
    fn request_attrs(req: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let len = u32::from_ne_bytes(req[..4].try_into().unwrap()) as usize;
        assert_eq!(len, req.len());
        Attrs::new(&req[20..], "test")
            .map(|a| a.map(|(k, v)| (k, v.to_vec())).unwrap())
            .collect()
    }

    #[test]
    fn get_and_delete_carry_the_tuple_back() {
        let entry = Entry {
            family: AF_INET,
            orig: Tuple {
                zone: Some(3),
                ..tcp4_tuple()
            },
            mark: 0x1000_0000,
            id: Some(0xdead_beef),
            zone: Some(4),
            counters: None,
        };
        let del = delete_request(5, &entry);
        assert_eq!(u16::from_ne_bytes([del[4], del[5]]), ct_msg::DELETE);
        assert_eq!(u16::from_ne_bytes([del[6], del[7]]), 0x5); // REQUEST | ACK
        assert_eq!(del[16], AF_INET);
        let attrs = request_attrs(&del);
        assert_eq!(
            attrs.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [cta::TUPLE_ORIG, cta::ID, cta::ZONE]
        );
        assert_eq!(attrs[1].1, 0xdead_beef_u32.to_be_bytes());
        assert_eq!(attrs[2].1, 4_u16.to_be_bytes());
        // The tuple decodes to what was encoded.
        assert_eq!(decode_tuple(AF_INET, &attrs[0].1), Ok(entry.orig));

        let get = get_request(6, &tcp4_tuple());
        assert_eq!(u16::from_ne_bytes([get[4], get[5]]), ct_msg::GET);
        let attrs = request_attrs(&get);
        assert_eq!(attrs.len(), 1);
        assert_eq!(decode_tuple(AF_INET, &attrs[0].1), Ok(tcp4_tuple()));
    }

    #[test]
    fn icmp_keys_use_the_attributes_of_their_protocol() {
        for (protocol, src, dst, id_attr) in [
            (1, "10.0.0.1", "10.0.0.2", proto_attr::ICMP_ID),
            (58, "fd00::1", "fd00::2", proto_attr::ICMPV6_ID),
        ] {
            let tuple = Tuple {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                protocol,
                src_port: None,
                dst_port: None,
                icmp_id: Some(3),
                icmp_type: Some(8),
                icmp_code: Some(0),
                zone: None,
            };
            let req = get_request(1, &tuple);
            let attrs = request_attrs(&req);
            let tuple_attrs: Vec<_> = Attrs::new(&attrs[0].1, "t").map(Result::unwrap).collect();
            let proto: Vec<_> = Attrs::new(tuple_attrs[1].1, "p")
                .map(|a| a.unwrap().0)
                .collect();
            assert_eq!(proto, [proto_attr::NUM, id_attr, id_attr + 1, id_attr + 2]);
            assert_eq!(decode_tuple(tuple.family(), &attrs[0].1), Ok(tuple));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_tuple() -> impl Strategy<Value = Tuple> {
            (
                any::<bool>(),
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u8>(),
                any::<Option<u16>>(),
                any::<Option<u16>>(),
                any::<Option<u16>>(),
                any::<Option<u8>>(),
                any::<Option<u8>>(),
                any::<Option<u16>>(),
            )
                .prop_map(|(v4, s, d, protocol, sp, dp, id, ty, code, zone)| {
                    let (src, dst) = if v4 {
                        let s4: [u8; 4] = s[..4].try_into().unwrap();
                        let d4: [u8; 4] = d[..4].try_into().unwrap();
                        (IpAddr::from(s4), IpAddr::from(d4))
                    } else {
                        (IpAddr::from(s), IpAddr::from(d))
                    };
                    Tuple {
                        src,
                        dst,
                        protocol,
                        src_port: sp,
                        dst_port: dp,
                        icmp_id: id,
                        icmp_type: ty,
                        icmp_code: code,
                        zone,
                    }
                })
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = decode(&bytes);
            }

            #[test]
            fn arbitrary_entry_bodies_never_panic(
                family in prop_oneof![Just(AF_INET), Just(AF_INET6), any::<u8>()],
                attrs in proptest::collection::vec(any::<u8>(), 0..300),
            ) {
                let mut body = vec![family, 0, 0, 0];
                body.extend(attrs);
                let _ = decode(&message(ct_msg::NEW, 0, 1, &body));
            }

            #[test]
            fn deleting_a_decoded_entry_names_the_same_entry(
                tuple in any_tuple(),
                mark in any::<u32>(),
                id in any::<Option<u32>>(),
                zone in any::<Option<u16>>(),
            ) {
                let entry = Entry { family: tuple.family(), orig: tuple, mark, id, zone, counters: None };
                // What the kernel would send for it: the delete request's attributes plus
                // the mark, as an entry message.
                let del = delete_request(1, &entry);
                let mut body = del[16..].to_vec();
                body.extend(attr(cta::MARK, &mark.to_be_bytes()));
                let msgs = decode(&message(ct_msg::NEW, 0, 1, &body)).unwrap();
                prop_assert_eq!(&msgs[0].reply, &Reply::Entry(entry));
            }

            #[test]
            fn truncating_a_valid_reply_never_panics(cut in 0_usize..200) {
                let mut datagram = tcp4_entry(1, 1, 1);
                datagram.extend(message(nlmsg::DONE, 0, 1, &0_i32.to_ne_bytes()));
                let cut = cut.min(datagram.len());
                let _ = decode(&datagram[..cut]);
            }
        }
    }

    /// Replies captured from kernel 6.18 (x86-64, so host byte order is little-endian) in a
    /// throwaway namespace holding four entries made with `conntrack -I`: one dump part, the
    /// dump's end, and an acknowledgement that carries a copy of the request's header.
    #[cfg(target_endian = "little")]
    mod captured {
        use super::*;

        const DUMP_PART: [&str; 22] = [
            "f800000000010200010000002d100000020000003400018014000180080001000a010001080002000a010002",
            "1c0002800500010006000000060002000457000006000300005000003400028014000180080001000a010002",
            "080002000a0100011c0002800500010006000000060002000050000006000300045700000600120000030000",
            "0800030000000008080008001000000008000c005951bfc008000b0000000001080007000000006330000480",
            "2c000180050001000300000005000200000000000500030000000000060004000a000000060005000a000000",
            "1c001880080001000000000008000200000000000800030000000000d000000000010200010000002d100000",
            "020000003c00018014000180080001000a010001080002000a01000224000280050001000100000006000400",
            "00070000050005000800000005000600000000003c00028014000180080001000a010002080002000a010001",
            "2400028005000100010000000600040000070000050005000000000005000600000000000800030000000008",
            "080008000000000008000c0095952c8608000b000000000108000700000000631c0018800800010000000000",
            "080002000000000008000300000000000801000000010200010000002d1000000a0000005c0001802c000180",
            "14000300fd00000000000000000000000000000114000400fd00000000000000000000000000000224000280",
            "050001003a000000060007000007000005000800800000000500090000000000060003000004000054000280",
            "2c00018014000300fd00000000000000000000000000000214000400fd000000000000000000000000000001",
            "24000280050001003a0000000600070000070000050008008100000005000900000000000800030000000008",
            "080008000000000008000c00d7b0b8b208000b000000000108000700000000631c0018800800010000000000",
            "08000200000000000800030000000000f000000000010200010000002d1000000a0000004c0001802c000180",
            "14000300fd00000000000000000000000000000114000400fd0000000000000000000000000000031c000280",
            "05000100110000000600020008af000006000300003500004c0002802c00018014000300fd00000000000000",
            "000000000000000314000400fd0000000000000000000000000000011c000280050001001100000006000200",
            "003500000600030008af00000800030000000008080008003000000008000c00f9bee16b08000b0000000001",
            "08000700000000631c001880080001000000000008000200000000000800030000000000",
        ];
        const DONE: &str = "1400000003000200010000002d10000000000000";
        const ACK: &str =
            "2400000002000001020000002d100000000000001c000000020105000200000000000000";

        fn bytes(hex: &str) -> Vec<u8> {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        }

        #[test]
        fn a_real_dump_decodes() {
            let msgs = decode(&bytes(&DUMP_PART.concat())).unwrap();
            assert!(msgs.iter().all(|m| m.seq == 1 && m.multi));
            let entries: Vec<Entry> = msgs
                .into_iter()
                .map(|m| match m.reply {
                    Reply::Entry(e) => e,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(entries.len(), 4);
            let tcp = Tuple::with_ports(
                6,
                "10.1.0.1:1111".parse().unwrap(),
                "10.1.0.2:80".parse().unwrap(),
            );
            assert_eq!(
                entries[0],
                Entry {
                    family: AF_INET,
                    orig: tcp,
                    mark: 0x1000_0000,
                    id: Some(1_498_529_728),
                    zone: Some(3),
                    counters: None,
                }
            );
            let icmp = entries[1].orig;
            assert_eq!(
                (icmp.protocol, icmp.icmp_id, icmp.icmp_type, icmp.icmp_code),
                (1, Some(7), Some(8), Some(0))
            );
            assert_eq!(entries[1].mark, 0);
            let icmpv6 = entries[2].orig;
            assert_eq!(entries[2].family, AF_INET6);
            assert_eq!(
                (icmpv6.protocol, icmpv6.icmp_id, icmpv6.icmp_type),
                (58, Some(7), Some(128))
            );
            assert_eq!(icmpv6.zone, Some(4), "the original direction's own zone");
            assert_eq!(
                entries[3].orig,
                Tuple::with_ports(
                    17,
                    "[fd00::1]:2223".parse().unwrap(),
                    "[fd00::3]:53".parse().unwrap(),
                )
            );
            assert_eq!(entries[3].mark, 0x3000_0000);
        }

        #[test]
        fn a_real_end_of_dump_and_ack_decode() {
            let done = decode(&bytes(DONE)).unwrap();
            assert_eq!(done.len(), 1);
            assert_eq!((done[0].seq, done[0].reply.clone()), (1, Reply::Done(0)));
            let ack = decode(&bytes(ACK)).unwrap();
            assert_eq!(ack.len(), 1);
            assert_eq!((ack[0].seq, ack[0].reply.clone()), (2, Reply::Status(0)));
        }
    }
}
