//! Netlink `sock_diag` (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`): asks the kernel for the
//! one TCP or UDP socket that a 4-tuple belongs to and gets back its owner uid and inode. The
//! request and reply layouts are written out by hand (`struct inet_diag_req_v2`,
//! `struct inet_diag_msg`, from `linux/inet_diag.h`) and encoded and decoded field by field:
//! [`encode_request`] and [`parse_reply`] are pure and bounds-checked, so a short, long or
//! garbled reply is an error, never a panic. The socket sees the network namespace it was
//! opened in. This module knows nothing of processes.
//!
//! For TCP the kernel's exact lookup takes `id.src` as the local end and `id.dst` as the
//! remote one; for UDP it takes them the other way round (`udp_dump_one` passes `idiag_src` as
//! the lookup's *source* address, i.e. the remote peer of a received datagram), so the request
//! swaps them for UDP.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

/// `SOCK_DIAG_BY_FAMILY` from `linux/sock_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_NOOP`, `NLMSG_ERROR`, `NLMSG_DONE` from `linux/netlink.h`.
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// `INET_DIAG_INFO`: the `struct tcp_info` attribute.
const INET_DIAG_INFO: u16 = 2;
/// Offsets in `struct tcp_info` (`linux/tcp.h`, stable ABI: fields are only appended).
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_SEGS_OUT: usize = 136;
const TCPI_SEGS_IN: usize = 140;
/// `TCP_LISTEN`: listeners carry no traffic of their own.
const TCP_LISTEN: u32 = 10;
/// `INET_DIAG_NOCOOKIE`: do not check the socket cookie.
const NOCOOKIE: u32 = u32::MAX;

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_sockid`: sport, dport (be16), src, dst (4 × be32 each), if u32,
/// cookie 2 × u32.
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad (u8 each), states u32, id.
const REQ_V2_LEN: usize = 8 + SOCKID_LEN;
/// A whole request message.
pub(crate) const REQUEST_LEN: usize = NLMSG_HDR_LEN + REQ_V2_LEN;
/// `struct inet_diag_msg`: family, state, timer, retrans (u8 each), id, expires, rqueue,
/// wqueue, uid, inode (u32 each).
const DIAG_MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// `struct nlmsgerr` starts with the (negative) errno as an i32.
const NLMSGERR_MIN_LEN: usize = 4;

/// Receive buffer: an exact lookup's reply is one message of under 200 bytes (with the
/// optional attributes the kernel may add); a whole page leaves room for strays.
const RECV_BUF_LEN: usize = 8192;
/// Receive buffer of dumps: the kernel fills datagrams up to a page or more.
const DUMP_BUF_LEN: usize = 64 * 1024;
/// Stale replies (from a request that timed out earlier) skipped before giving up.
const MAX_STALE_MESSAGES: usize = 16;

/// The transport protocols sock_diag looks up here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiagProtocol {
    /// TCP (`IPPROTO_TCP`).
    Tcp,
    /// UDP (`IPPROTO_UDP`).
    Udp,
}

impl DiagProtocol {
    fn number(self) -> u8 {
        match self {
            DiagProtocol::Tcp => 6,
            DiagProtocol::Udp => 17,
        }
    }
}

/// One socket as the kernel describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiagSocket {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// The TCP state (`TCP_ESTABLISHED` = 1 … `TCP_LISTEN` = 10); UDP reports 7 (closed) or 1.
    pub state: u8,
    /// The owner uid (of whoever created the socket).
    pub uid: u32,
    /// The socket's inode; 0 for sockets without a file (time-wait, request and orphaned
    /// sockets).
    pub inode: u32,
    /// The socket's own address.
    pub local: SocketAddr,
    /// The peer's address (unspecified for listening and unconnected sockets).
    pub remote: SocketAddr,
    /// The socket's cookie (what eBPF programs key sockets by).
    pub cookie: u64,
}

/// What the kernel answered to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The socket.
    Socket(DiagSocket),
    /// An error; `ENOENT` means there is no such socket.
    Error(i32),
    /// The end of a (dump) answer without a socket.
    Done,
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// A message's length field is smaller than a header or reaches past the datagram.
    #[error("netlink message length {len} does not fit the {available} bytes received")]
    BadLength {
        /// The length field.
        len: u32,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// A message is too short for what its type promises.
    #[error("netlink message of type {msg_type} has {len} payload bytes, fewer than {need}")]
    Short {
        /// The message type.
        msg_type: u16,
        /// Its payload length.
        len: usize,
        /// The minimum.
        need: usize,
    },
    /// The reply names an address family other than IPv4 and IPv6.
    #[error("sock_diag reply with address family {0}")]
    Family(u8),
}

/// Failures of one lookup.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiagError {
    /// Sending or receiving failed.
    #[error("could not {action} the sock_diag netlink socket")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel did not answer within the receive timeout.
    #[error("the kernel did not answer the sock_diag request in time")]
    Timeout,
    /// The kernel answered with an error other than "no such socket".
    #[error("the kernel refused the sock_diag request (errno {0})")]
    Kernel(i32),
    /// The reply could not be parsed.
    #[error("malformed sock_diag reply")]
    Malformed(#[from] ParseError),
    /// Only stale replies arrived.
    #[error("no sock_diag reply matched the request")]
    NoMatch,
}

/// Builds the request for the socket whose own end is `local` and whose peer is `remote`.
/// Both must be of the same family (the caller canonicalises v4-mapped addresses first).
pub(crate) fn encode_request(
    seq: u32,
    protocol: DiagProtocol,
    local: SocketAddr,
    remote: SocketAddr,
) -> [u8; REQUEST_LEN] {
    let family = match local {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // The kernel's lookup order, see the module docs.
    let (src, dst) = match protocol {
        DiagProtocol::Tcp => (local, remote),
        DiagProtocol::Udp => (remote, local),
    };
    let interface = match local {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    let mut buf = [0_u8; REQUEST_LEN];
    let mut w = Writer::new(&mut buf);
    // nlmsghdr
    w.u32_ne(REQUEST_LEN as u32);
    w.u16_ne(SOCK_DIAG_BY_FAMILY);
    w.u16_ne(NLM_F_REQUEST);
    w.u32_ne(seq);
    w.u32_ne(0); // port id: the kernel fills it in
    // inet_diag_req_v2
    w.u8(u8::try_from(family).unwrap_or(0));
    w.u8(protocol.number());
    w.u8(0); // idiag_ext: no extra attributes
    w.u8(0); // pad
    w.u32_ne(u32::MAX); // idiag_states: any
    // inet_diag_sockid
    w.bytes(&src.port().to_be_bytes());
    w.bytes(&dst.port().to_be_bytes());
    w.bytes(&addr_bytes(src.ip()));
    w.bytes(&addr_bytes(dst.ip()));
    w.u32_ne(interface);
    w.u32_ne(NOCOOKIE);
    w.u32_ne(NOCOOKIE);
    buf
}

/// Builds the request for every TCP socket of `family` but listeners, with `tcp_info`.
pub(crate) fn encode_tcp_dump(seq: u32, family: i32) -> [u8; REQUEST_LEN] {
    let mut buf = [0_u8; REQUEST_LEN];
    let mut w = Writer::new(&mut buf);
    w.u32_ne(REQUEST_LEN as u32);
    w.u16_ne(SOCK_DIAG_BY_FAMILY);
    w.u16_ne(NLM_F_REQUEST | NLM_F_DUMP);
    w.u32_ne(seq);
    w.u32_ne(0);
    w.u8(u8::try_from(family).unwrap_or(0));
    w.u8(DiagProtocol::Tcp.number());
    w.u8(1 << (INET_DIAG_INFO - 1)); // idiag_ext: tcp_info
    w.u8(0);
    w.u32_ne(!(1 << TCP_LISTEN)); // every state but LISTEN
    w.bytes(&[0; SOCKID_LEN]);
    buf
}

/// What a TCP socket has carried so far, from its `tcp_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TcpCounters {
    pub(crate) bytes_acked: u64,
    pub(crate) bytes_received: u64,
    pub(crate) segs_out: u32,
    pub(crate) segs_in: u32,
}

/// The `tcp_info` counters among the attributes after an `inet_diag_msg`; `None` when the
/// kernel sent none (or too short a one).
pub(crate) fn parse_tcp_counters(payload: &[u8]) -> Option<TcpCounters> {
    let mut at = DIAG_MSG_LEN;
    while let (Some(len), Some(kind)) = (u16_ne(payload, at), u16_ne(payload, at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            return None;
        }
        let value = payload.get(at + 4..at + len)?;
        if kind == INET_DIAG_INFO {
            let u64_at = |o| array::<8>(value, o).map(u64::from_ne_bytes);
            return Some(TcpCounters {
                bytes_acked: u64_at(TCPI_BYTES_ACKED)?,
                bytes_received: u64_at(TCPI_BYTES_RECEIVED)?,
                segs_out: u32_ne(value, TCPI_SEGS_OUT)?,
                segs_in: u32_ne(value, TCPI_SEGS_IN)?,
            });
        }
        at = at.checked_add(len.next_multiple_of(4))?;
    }
    None
}

/// Every socket message of dump `seq` in one datagram, given to `each`; `Ok(true)` once the
/// dump's end is in it.
pub(crate) fn parse_dump(
    datagram: &[u8],
    seq: u32,
    each: &mut dyn FnMut(DiagSocket, Option<TcpCounters>),
) -> Result<bool, DiagError> {
    let mut offset = 0_usize;
    while offset < datagram.len() {
        let rest = datagram.get(offset..).unwrap_or_default();
        let available = rest.len();
        let (Some(len), Some(msg_type), Some(msg_seq)) =
            (u32_ne(rest, 0), u16_ne(rest, 4), u32_ne(rest, 8))
        else {
            return Err(ParseError::BadLength { len: 0, available }.into());
        };
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize < NLMSG_HDR_LEN || len_usize > available {
            return Err(ParseError::BadLength { len, available }.into());
        }
        let payload = rest.get(NLMSG_HDR_LEN..len_usize).unwrap_or_default();
        offset = offset.saturating_add(len_usize.next_multiple_of(4));
        if msg_seq != seq {
            continue;
        }
        match msg_type {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = array::<4>(payload, 0).map_or(0, i32::from_ne_bytes);
                if errno != 0 {
                    return Err(DiagError::Kernel(errno.saturating_neg()));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                // A socket that does not parse is skipped, not the dump.
                if let Ok(s) = parse_diag_msg(payload) {
                    each(s, parse_tcp_counters(payload));
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// An address as the 16 bytes of `__be32[4]` (IPv4 in the first four).
fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = [0_u8; 16];
            if let Some(head) = out.get_mut(..4) {
                head.copy_from_slice(&v4.octets());
            }
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Writes fields in order into a fixed buffer; writes past the end are dropped (the request
/// size is a constant, checked by a test).
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, pos: 0 }
    }
    fn bytes(&mut self, b: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + b.len()) {
            dst.copy_from_slice(b);
        }
        self.pos += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16_ne(&mut self, v: u16) {
        self.bytes(&v.to_ne_bytes());
    }
    fn u32_ne(&mut self, v: u32) {
        self.bytes(&v.to_ne_bytes());
    }
}

/// Reads fixed-size fields from a slice.
fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn u16_ne(buf: &[u8], at: usize) -> Option<u16> {
    array(buf, at).map(u16::from_ne_bytes)
}
fn u32_ne(buf: &[u8], at: usize) -> Option<u32> {
    array(buf, at).map(u32::from_ne_bytes)
}

/// Finds the answer to request `seq` in one received datagram (which may hold several
/// messages). `Ok(None)`: the datagram holds nothing for this request (stale replies of
/// earlier requests, no-ops, acks).
pub(crate) fn parse_reply(datagram: &[u8], seq: u32) -> Result<Option<Reply>, ParseError> {
    let mut offset = 0_usize;
    while offset < datagram.len() {
        let rest = datagram.get(offset..).unwrap_or_default();
        let available = rest.len();
        let (Some(len), Some(msg_type), Some(msg_seq)) =
            (u32_ne(rest, 0), u16_ne(rest, 4), u32_ne(rest, 8))
        else {
            return Err(ParseError::BadLength { len: 0, available });
        };
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize < NLMSG_HDR_LEN || len_usize > available {
            return Err(ParseError::BadLength { len, available });
        }
        let payload = rest.get(NLMSG_HDR_LEN..len_usize).unwrap_or_default();
        // Messages are padded to 4 bytes; the padding of the last one may be missing.
        offset = offset.saturating_add(len_usize.next_multiple_of(4));
        if msg_seq != seq {
            continue;
        }
        match msg_type {
            NLMSG_NOOP => {}
            NLMSG_DONE => return Ok(Some(Reply::Done)),
            NLMSG_ERROR => {
                let errno =
                    array::<4>(payload, 0)
                        .map(i32::from_ne_bytes)
                        .ok_or(ParseError::Short {
                            msg_type,
                            len: payload.len(),
                            need: NLMSGERR_MIN_LEN,
                        })?;
                if errno != 0 {
                    return Ok(Some(Reply::Error(errno.saturating_neg())));
                }
                // errno 0 is an acknowledgement; the answer is elsewhere.
            }
            SOCK_DIAG_BY_FAMILY => return parse_diag_msg(payload).map(|s| Some(Reply::Socket(s))),
            _ => {}
        }
    }
    Ok(None)
}

/// Decodes `struct inet_diag_msg` (attributes after it are ignored).
pub(crate) fn parse_diag_msg(payload: &[u8]) -> Result<DiagSocket, ParseError> {
    let short = || ParseError::Short {
        msg_type: SOCK_DIAG_BY_FAMILY,
        len: payload.len(),
        need: DIAG_MSG_LEN,
    };
    let msg = payload.get(..DIAG_MSG_LEN).ok_or_else(short)?;
    let field = |at| u32_ne(msg, at).ok_or_else(short);
    let [family, state, _timer, _retrans] = array::<4>(msg, 0).ok_or_else(short)?;
    let id = msg.get(4..4 + SOCKID_LEN).ok_or_else(short)?;
    let sport = array::<2>(id, 0)
        .map(u16::from_be_bytes)
        .ok_or_else(short)?;
    let dport = array::<2>(id, 2)
        .map(u16::from_be_bytes)
        .ok_or_else(short)?;
    let src = array::<16>(id, 4).ok_or_else(short)?;
    let dst = array::<16>(id, 20).ok_or_else(short)?;
    let interface = u32_ne(id, 36).ok_or_else(short)?;
    let cookie_low = u32_ne(id, 40).ok_or_else(short)?;
    let cookie_high = u32_ne(id, 44).ok_or_else(short)?;
    let ip = |raw: [u8; 16]| -> Result<IpAddr, ParseError> {
        match i32::from(family) {
            libc::AF_INET => {
                let [a, b, c, d, ..] = raw;
                Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            }
            libc::AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(raw))),
            _ => Err(ParseError::Family(family)),
        }
    };
    let sockaddr = |ip: IpAddr, port| match ip {
        IpAddr::V6(v6) => SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, interface)),
        IpAddr::V4(_) => SocketAddr::new(ip, port),
    };
    let after_id = 4 + SOCKID_LEN;
    Ok(DiagSocket {
        family,
        state,
        local: sockaddr(ip(src)?, sport),
        remote: sockaddr(ip(dst)?, dport),
        uid: field(after_id + 12)?,
        inode: field(after_id + 16)?,
        cookie: u64::from(cookie_high) << 32 | u64::from(cookie_low),
    })
}

/// An open `NETLINK_SOCK_DIAG` socket, bound to the network namespace it was opened in.
#[derive(Debug)]
pub(crate) struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    /// Opens the socket in the calling thread's network namespace; replies that take longer
    /// than `timeout` count as lost.
    pub(crate) fn open(timeout: Duration) -> io::Result<SockDiag> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: `tv` is a valid timeval that outlives the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                socklen::<libc::timeval>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let addr = kernel_addr();
        // SAFETY: `addr` is a valid sockaddr_nl (port id 0: the kernel assigns one) that
        // outlives the call, and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                socklen::<libc::sockaddr_nl>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SockDiag {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Every TCP socket of this namespace but listeners, with what each carried so far; at
    /// most `max` sockets are given to `each`.
    pub(crate) fn dump_tcp(
        &mut self,
        max: usize,
        each: &mut dyn FnMut(DiagSocket, Option<TcpCounters>),
    ) -> Result<(), DiagError> {
        if self.buf.len() < DUMP_BUF_LEN {
            self.buf.resize(DUMP_BUF_LEN, 0);
        }
        let mut seen = 0_usize;
        for family in [libc::AF_INET, libc::AF_INET6] {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            self.send(&encode_tcp_dump(seq, family))?;
            loop {
                let Some(datagram) = self.recv()? else {
                    continue;
                };
                let mut take = |s: DiagSocket, c: Option<TcpCounters>| {
                    if seen < max {
                        seen += 1;
                        each(s, c);
                    }
                };
                if parse_dump(datagram, seq, &mut take)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The socket whose own end is `local` and whose peer is `remote` (the same family), or
    /// `None` if the kernel has none.
    pub(crate) fn find(
        &mut self,
        protocol: DiagProtocol,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Option<DiagSocket>, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = encode_request(seq, protocol, local, remote);
        self.send(&request)?;
        for _ in 0..MAX_STALE_MESSAGES {
            let Some(datagram) = self.recv()? else {
                continue;
            };
            match parse_reply(datagram, seq)? {
                None => {}
                Some(Reply::Socket(s)) => return Ok(Some(s)),
                Some(Reply::Done) => return Ok(None),
                Some(Reply::Error(errno)) if errno == libc::ENOENT => return Ok(None),
                Some(Reply::Error(errno)) => return Err(DiagError::Kernel(errno)),
            }
        }
        Err(DiagError::NoMatch)
    }

    fn send(&self, request: &[u8]) -> Result<(), DiagError> {
        let addr = kernel_addr();
        loop {
            // SAFETY: `request` and `addr` are valid for the lengths passed and outlive the
            // call.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&raw const addr).cast(),
                    socklen::<libc::sockaddr_nl>(),
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(DiagError::Io {
                    action: "send to",
                    source: err,
                });
            }
        }
    }

    /// One datagram from the kernel; `None` for one from anyone else or one cut short.
    fn recv(&mut self) -> Result<Option<&[u8]>, DiagError> {
        loop {
            // SAFETY: an all-zero sockaddr_nl is a valid value.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = socklen::<libc::sockaddr_nl>();
            // SAFETY: `buf` is valid for writes of its length, `from`/`from_len` describe a
            // valid sockaddr_nl; MSG_TRUNC makes the call return the datagram's real length.
            let rc = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                    (&raw mut from).cast(),
                    &raw mut from_len,
                )
            };
            let Ok(len) = usize::try_from(rc) else {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(DiagError::Timeout);
                    }
                    _ => {
                        return Err(DiagError::Io {
                            action: "receive from",
                            source: err,
                        });
                    }
                }
            };
            // Only the kernel (port id 0) answers sock_diag requests; a datagram longer than
            // the buffer was cut and cannot be trusted.
            if from.nl_pid != 0 || len > self.buf.len() {
                return Ok(None);
            }
            return Ok(self.buf.get(..len));
        }
    }
}

/// `SO_NETNS_COOKIE` from `asm-generic/socket.h` (Linux 5.14+; not in the libc crate).
const SO_NETNS_COOKIE: libc::c_int = 71;

impl SockDiag {
    /// The cookie of the network namespace this socket was opened in (what eBPF programs get
    /// from `bpf_get_netns_cookie`).
    pub(crate) fn netns_cookie(&self) -> io::Result<u64> {
        let mut cookie = 0_u64;
        let mut len = socklen::<u64>();
        // SAFETY: `cookie` and `len` are valid for writes and describe an 8-byte buffer, which
        // is what the kernel writes for this option.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&raw mut cookie).cast(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(cookie)
    }
}

/// The kernel's netlink address.
fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: an all-zero sockaddr_nl is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A reply message as the kernel would build it for `s`.
    fn diag_message(seq: u32, s: &DiagSocket) -> Vec<u8> {
        let mut msg = Vec::new();
        let len = (NLMSG_HDR_LEN + DIAG_MSG_LEN) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&0_u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&1234_u32.to_ne_bytes());
        msg.extend_from_slice(&[s.family, s.state, 0, 0]);
        msg.extend_from_slice(&s.local.port().to_be_bytes());
        msg.extend_from_slice(&s.remote.port().to_be_bytes());
        msg.extend_from_slice(&addr_bytes(s.local.ip()));
        msg.extend_from_slice(&addr_bytes(s.remote.ip()));
        msg.extend_from_slice(&0_u32.to_ne_bytes()); // if
        msg.extend_from_slice(&(s.cookie as u32).to_ne_bytes()); // cookie, low half first
        msg.extend_from_slice(&((s.cookie >> 32) as u32).to_ne_bytes());
        msg.extend_from_slice(&0_u32.to_ne_bytes()); // expires
        msg.extend_from_slice(&0_u32.to_ne_bytes()); // rqueue
        msg.extend_from_slice(&0_u32.to_ne_bytes()); // wqueue
        msg.extend_from_slice(&s.uid.to_ne_bytes());
        msg.extend_from_slice(&s.inode.to_ne_bytes());
        msg
    }

    fn error_message(seq: u32, errno: i32) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDR_LEN + 4 + NLMSG_HDR_LEN) as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&0_u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0_u32.to_ne_bytes());
        msg.extend_from_slice(&(-errno).to_ne_bytes());
        msg.extend_from_slice(&[0; NLMSG_HDR_LEN]);
        msg
    }

    fn sample() -> DiagSocket {
        DiagSocket {
            family: libc::AF_INET as u8,
            state: 1,
            uid: 1000,
            inode: 424_242,
            local: v4("10.0.0.1:40000"),
            remote: v4("10.0.0.2:443"),
            cookie: 0x1122_3344_5566_7788,
        }
    }

    #[test]
    fn request_layout_tcp_and_udp_swap() {
        let local = v4("10.0.0.1:40000");
        let remote = v4("10.0.0.2:443");
        let tcp = encode_request(7, DiagProtocol::Tcp, local, remote);
        assert_eq!(tcp.len(), 72);
        assert_eq!(u32_ne(&tcp, 0), Some(72));
        assert_eq!(u16_ne(&tcp, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_ne(&tcp, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_ne(&tcp, 8), Some(7));
        assert_eq!(tcp[16], libc::AF_INET as u8);
        assert_eq!(tcp[17], 6);
        let id = &tcp[24..];
        assert_eq!(&id[0..2], &40000_u16.to_be_bytes());
        assert_eq!(&id[2..4], &443_u16.to_be_bytes());
        assert_eq!(&id[4..8], &[10, 0, 0, 1]);
        assert_eq!(&id[20..24], &[10, 0, 0, 2]);
        assert_eq!(&id[40..48], &[0xff; 8]);

        let udp = encode_request(8, DiagProtocol::Udp, local, remote);
        assert_eq!(udp[17], 17);
        let id = &udp[24..];
        assert_eq!(&id[0..2], &443_u16.to_be_bytes());
        assert_eq!(&id[2..4], &40000_u16.to_be_bytes());
        assert_eq!(&id[4..8], &[10, 0, 0, 2]);
        assert_eq!(&id[20..24], &[10, 0, 0, 1]);

        let l6: SocketAddr = "[fe80::1%3]:5353".parse().unwrap();
        let r6: SocketAddr = "[fe80::2]:5353".parse().unwrap();
        let v6 = encode_request(9, DiagProtocol::Tcp, l6, r6);
        assert_eq!(v6[16], libc::AF_INET6 as u8);
        assert_eq!(
            &v6[24 + 4..24 + 20],
            &"fe80::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(u32_ne(&v6, 24 + 36), Some(3));
    }

    #[test]
    fn reply_socket_round_trip() {
        let s = sample();
        let msg = diag_message(5, &s);
        assert_eq!(parse_reply(&msg, 5), Ok(Some(Reply::Socket(s))));
        // Attributes after the struct are ignored.
        let mut longer = msg.clone();
        longer.extend_from_slice(&[8, 0, 1, 0, 0, 0, 0, 0]);
        let new_len = longer.len() as u32;
        longer[0..4].copy_from_slice(&new_len.to_ne_bytes());
        assert_eq!(parse_reply(&longer, 5), Ok(Some(Reply::Socket(s))));
        let v6 = DiagSocket {
            family: libc::AF_INET6 as u8,
            local: "[fd00::1]:80".parse().unwrap(),
            remote: "[fd00::2]:9".parse().unwrap(),
            ..s
        };
        assert_eq!(
            parse_reply(&diag_message(1, &v6), 1),
            Ok(Some(Reply::Socket(v6)))
        );
    }

    #[test]
    fn reply_errors_and_done() {
        assert_eq!(
            parse_reply(&error_message(3, libc::ENOENT), 3),
            Ok(Some(Reply::Error(libc::ENOENT)))
        );
        // An ack (errno 0) is not the answer.
        assert_eq!(parse_reply(&error_message(3, 0), 3), Ok(None));
        let mut done = Vec::new();
        done.extend_from_slice(&20_u32.to_ne_bytes());
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&2_u16.to_ne_bytes());
        done.extend_from_slice(&3_u32.to_ne_bytes());
        done.extend_from_slice(&0_u32.to_ne_bytes());
        done.extend_from_slice(&0_i32.to_ne_bytes());
        assert_eq!(parse_reply(&done, 3), Ok(Some(Reply::Done)));
    }

    #[test]
    fn reply_multi_message_skips_stale_sequences() {
        let s = sample();
        let mut datagram = error_message(1, libc::ENOENT);
        datagram.extend(diag_message(2, &DiagSocket { inode: 1, ..s }));
        datagram.extend(diag_message(3, &s));
        assert_eq!(parse_reply(&datagram, 3), Ok(Some(Reply::Socket(s))));
        assert_eq!(
            parse_reply(&datagram, 1),
            Ok(Some(Reply::Error(libc::ENOENT)))
        );
        assert_eq!(parse_reply(&datagram, 9), Ok(None));
    }

    #[test]
    fn reply_rejects_bad_lengths() {
        let msg = diag_message(5, &sample());
        // Truncated anywhere: an error, never a panic, never a socket.
        for cut in 1..msg.len() {
            let r = parse_reply(&msg[..cut], 5);
            assert!(r.is_err(), "cut at {cut}: {r:?}");
        }
        // Length field too small, too large, zero.
        for len in [0_u32, 15, msg.len() as u32 + 1, u32::MAX] {
            let mut bad = msg.clone();
            bad[0..4].copy_from_slice(&len.to_ne_bytes());
            assert!(parse_reply(&bad, 5).is_err(), "len {len}");
        }
        // A diag message whose payload is shorter than inet_diag_msg.
        let mut short = msg[..NLMSG_HDR_LEN + 10].to_vec();
        short[0..4].copy_from_slice(&((NLMSG_HDR_LEN + 10) as u32).to_ne_bytes());
        assert!(matches!(
            parse_reply(&short, 5),
            Err(ParseError::Short { .. })
        ));
        // An unknown family.
        let mut fam = msg.clone();
        fam[NLMSG_HDR_LEN] = 99;
        assert_eq!(parse_reply(&fam, 5), Err(ParseError::Family(99)));
        // An error message without the errno.
        let mut err = error_message(5, 2)[..NLMSG_HDR_LEN + 2].to_vec();
        err[0..4].copy_from_slice(&((NLMSG_HDR_LEN + 2) as u32).to_ne_bytes());
        assert!(matches!(
            parse_reply(&err, 5),
            Err(ParseError::Short { .. })
        ));
        assert_eq!(parse_reply(&[], 5), Ok(None));
    }

    #[test]
    fn reply_random_bytes_never_panic() {
        // A deterministic xorshift stream: many shapes of garbage, same every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let template = diag_message(5, &sample());
        for round in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Mutate a valid message instead: a few flipped bytes.
                buf = template.clone();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() as usize) % buf.len();
                    buf[i] = next() as u8;
                }
            }
            let _ = parse_reply(&buf, 5);
            let _ = parse_diag_msg(&buf);
        }
    }

    proptest! {
        #[test]
        fn reply_parser_total(bytes in proptest::collection::vec(any::<u8>(), 0..400), seq: u32) {
            let _ = parse_reply(&bytes, seq);
        }
    }
}
