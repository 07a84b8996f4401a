//! Forgets connections the queue allowed, so that their next packet is decided again after a
//! rule change: deletes their conntrack entries, found by our "allow" mark bits in the
//! connection mark (saved there by our CONNMARK rule). It must not delete entries without our
//! mark — the helper's own excluded traffic and other software's flows stay.
//!
//! It talks to the kernel's connection tracking directly, over a `NETLINK_NETFILTER` socket
//! (ctnetlink; messages in [`crate::ctnetlink`]) that it opens on the calling thread, so it acts
//! on that thread's network namespace; no process is spawned. What it sends, and why (checked on
//! kernel 6.18 in a lab namespace):
//!
//! - Every connection we allowed ([`ForgetFilter::AllAllowed`]) or those to one address
//!   ([`ForgetFilter::AllowedTo`]): one dump of the entries whose mark, within our mask, is
//!   our allow bits — the kernel filters dumps by `CTA_MARK`/`CTA_MARK_MASK`, both families at
//!   once with `AF_UNSPEC` — then one deletion per selected entry, by its original tuple and
//!   its id (`CTA_ID`): a newer entry that took over the same tuple in between is never the one
//!   deleted. The destination is matched here, not by the kernel: the dump filter on the
//!   original destination (`CTA_FILTER`) is right for IPv4 but matches IPv6 entries inverted
//!   on 6.18 (it returns those with *another* destination). The kernel can also flush by mark
//!   (a deletion without a tuple, with `CTA_MARK`; both families), but it does not say how
//!   many entries went, and [`crate::forget_connections`] reports that.
//! - One flow ([`ForgetFilter::AllowedFlow`]): a lookup by its tuple (in the default zone),
//!   then, if the entry found is that flow in its original direction (a lookup also matches an
//!   entry's reply direction) and has our allow bits, its deletion by tuple and id.
//!
//! Whatever the kernel returns is checked again here (mark within the mask, family, addresses,
//! ports) before anything is deleted, so a kernel that ignores a filter deletes nothing extra.
//! An entry that is gone by the time it is deleted (`ENOENT`: closed, timed out, or deleted by
//! someone else) is not counted and is not an error.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use portcullis_protocol::Protocol;
use tracing::debug;

use crate::ForgetFilter;
use crate::ctnetlink::{self, AF_UNSPEC, Entry, Message, Reply, Tuple};
use crate::error::InterceptError;
use crate::marks::Marks;

/// The receive buffer: the kernel sends dump parts of at most 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// How long the kernel may take to answer one request (or to send the next part of a dump).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many entries are kept from one dump, then deleted before the next dump; each
/// takes ~80 bytes.
const MAX_BATCH: usize = 65_536;
/// At most this many dump-and-delete rounds per call (more only when entries with our mark are
/// created faster than they are deleted).
const MAX_ROUNDS: usize = 16;
/// A lookup answers with one entry; more are not kept.
const MAX_LOOKUP_ENTRIES: usize = 4;

/// See [`crate::forget_connections`].
pub(crate) fn forget_connections(
    marks: &Marks,
    filter: &ForgetFilter,
) -> Result<usize, InterceptError> {
    let deleted = match filter {
        ForgetFilter::AllAllowed => {
            forget_dumped(&mut CtSocket::open()?, marks, filter, AF_UNSPEC)?
        }
        ForgetFilter::AllowedTo(ip) => forget_dumped(
            &mut CtSocket::open()?,
            marks,
            filter,
            ctnetlink::family_of(*ip),
        )?,
        ForgetFilter::AllowedFlow { protocol, src, dst } => {
            let Some(tuple) = flow_tuple(*protocol, *src, *dst) else {
                return Ok(0);
            };
            forget_flow(&mut CtSocket::open()?, marks, filter, &tuple)?
        }
    };
    debug!(count = deleted, "forgot allowed connections");
    Ok(deleted)
}

/// See [`crate::allowed_connections`].
pub(crate) fn allowed_connections(
    marks: &Marks,
) -> Result<Vec<crate::AllowedConnection>, InterceptError> {
    let mut sock = CtSocket::open()?;
    let seq = sock.next_seq();
    let request = ctnetlink::dump_request(seq, AF_UNSPEC, marks.allow, marks.mask);
    let mut found = Vec::new();
    let code = dump_allowed(&mut sock, &request, seq, marks, &mut found).map_err(dump_failed)?;
    if code < 0 {
        return Err(dump_failed(kernel_error(code)));
    }
    Ok(found)
}

/// See [`crate::allowed_udp_flows`]: two dumps the kernel filters by protocol, or where it
/// cannot, one of everything filtered here.
pub(crate) fn allowed_udp_flows(
    marks: &Marks,
) -> Result<Vec<crate::AllowedConnection>, InterceptError> {
    let mut sock = CtSocket::open()?;
    let mut found = Vec::new();
    for family in [ctnetlink::AF_INET, ctnetlink::AF_INET6] {
        let seq = sock.next_seq();
        let request = ctnetlink::dump_request_protocol(seq, family, marks.allow, marks.mask, 17);
        let code =
            dump_allowed(&mut sock, &request, seq, marks, &mut found).map_err(dump_failed)?;
        if code < 0 {
            // A kernel without dump filters: everything, filtered here.
            debug!(code, "conntrack cannot filter dumps by protocol");
            let all = allowed_connections(marks)?;
            return Ok(all
                .into_iter()
                .filter(|c| c.protocol == Protocol::Udp)
                .collect());
        }
    }
    found.retain(|c| c.protocol == Protocol::Udp);
    Ok(found)
}

fn dump_failed(source: io::Error) -> InterceptError {
    InterceptError::Conntrack {
        what: "list the connections we allowed",
        source,
    }
}

/// Runs one dump of allowed entries, adding the TCP and UDP ones to `found` (at most
/// `MAX_BATCH` in all); returns the kernel's status code.
fn dump_allowed(
    sock: &mut CtSocket,
    request: &[u8],
    seq: u32,
    marks: &Marks,
    found: &mut Vec<crate::AllowedConnection>,
) -> io::Result<i32> {
    sock.exchange(request, seq, |entry| {
        if found.len() >= MAX_BATCH || !selected(marks, &crate::ForgetFilter::AllAllowed, &entry) {
            return;
        }
        let o = entry.orig;
        let protocol = match o.protocol {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            _ => return,
        };
        if let (Some(sp), Some(dp)) = (o.src_port, o.dst_port) {
            found.push(crate::AllowedConnection {
                protocol,
                src: SocketAddr::new(o.src, sp),
                dst: SocketAddr::new(o.dst, dp),
                counters: entry.counters,
            });
        }
    })
}

/// Where conntrack's accounting switch lives (per network namespace).
const ACCT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

/// See [`crate::enable_accounting`]: sets the switch, returns what it was (`None`: no
/// conntrack here).
pub(crate) fn set_accounting(on: bool) -> Result<Option<bool>, InterceptError> {
    let failed = |source| InterceptError::Conntrack {
        what: "switch conntrack accounting",
        source,
    };
    let was = match std::fs::read_to_string(ACCT_SYSCTL) {
        Ok(text) => text.trim() != "0",
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    if was != on {
        std::fs::write(ACCT_SYSCTL, if on { "1\n" } else { "0\n" }).map_err(failed)?;
    }
    Ok(Some(was))
}

/// See [`crate::original_destination`].
pub(crate) fn original_destination(
    protocol: Protocol,
    peer: SocketAddr,
    reached: SocketAddr,
) -> Result<Option<SocketAddr>, InterceptError> {
    // The reply direction of a redirected connection: from where it arrived, back to the peer.
    // A lookup matches an entry in either direction.
    let Some(reply) = flow_tuple(protocol, reached, peer) else {
        return Ok(None);
    };
    let mut sock = CtSocket::open()?;
    let seq = sock.next_seq();
    let mut found = Vec::new();
    let failed = |source| InterceptError::Conntrack {
        what: "look up a redirected connection's original destination",
        source,
    };
    let code = sock
        .exchange(&ctnetlink::get_request(seq, &reply), seq, |entry| {
            if found.len() < MAX_LOOKUP_ENTRIES {
                found.push(entry);
            }
        })
        .map_err(failed)?;
    match code {
        0 => {}
        c if c == -libc::ENOENT => return Ok(None),
        c => return Err(failed(kernel_error(c))),
    }
    Ok(found.iter().find_map(|e| {
        let o = &e.orig;
        (o.protocol == reply.protocol && o.src == peer.ip() && o.src_port == Some(peer.port()))
            .then_some(())?;
        Some(SocketAddr::new(o.dst, o.dst_port?))
    }))
}

/// Whether a connection mark holds our allow bits (and none of our other bits).
fn allowed_by_us(marks: &Marks, mark: u32) -> bool {
    mark & marks.mask == marks.allow
}

/// Whether `entry` is one that `filter` forgets.
fn selected(marks: &Marks, filter: &ForgetFilter, entry: &Entry) -> bool {
    let orig = &entry.orig;
    if !allowed_by_us(marks, entry.mark)
        || entry.family != ctnetlink::family_of(orig.src)
        || entry.family != ctnetlink::family_of(orig.dst)
    {
        return false;
    }
    match filter {
        ForgetFilter::AllAllowed => true,
        ForgetFilter::AllowedTo(ip) => orig.dst == *ip,
        ForgetFilter::AllowedFlow { protocol, src, dst } => flow_tuple(*protocol, *src, *dst)
            .is_some_and(|want| {
                orig.protocol == want.protocol
                    && orig.src == want.src
                    && orig.dst == want.dst
                    && orig.src_port == want.src_port
                    && orig.dst_port == want.dst_port
            }),
    }
}

/// The tuple of a TCP or UDP flow; `None` for ICMP (which has no ports to name a flow by) and
/// for addresses of two families (no such connection).
fn flow_tuple(protocol: Protocol, src: SocketAddr, dst: SocketAddr) -> Option<Tuple> {
    let number = match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Icmp => return None,
    };
    (src.is_ipv4() == dst.is_ipv4()).then(|| Tuple::with_ports(number, src, dst))
}

/// Dumps the entries with our allow bits (of `family`, or both), deletes those `filter`
/// selects, and repeats while a round found more than it could keep.
fn forget_dumped(
    sock: &mut CtSocket,
    marks: &Marks,
    filter: &ForgetFilter,
    family: u8,
) -> Result<usize, InterceptError> {
    let mut total = 0;
    for _ in 0..MAX_ROUNDS {
        let seq = sock.next_seq();
        let request = ctnetlink::dump_request(seq, family, marks.allow, marks.mask);
        let mut batch = Vec::new();
        let mut complete = true;
        let code = sock
            .exchange(&request, seq, |entry| {
                if !selected(marks, filter, &entry) {
                    return;
                }
                if batch.len() < MAX_BATCH {
                    batch.push(entry);
                } else {
                    complete = false;
                }
            })
            .map_err(|source| InterceptError::Conntrack {
                what: "list the connections we allowed",
                source,
            })?;
        // A dump ends with NLMSG_DONE carrying 0, or with an error.
        if code < 0 {
            return Err(InterceptError::Conntrack {
                what: "list the connections we allowed",
                source: kernel_error(code),
            });
        }
        let mut deleted = 0;
        let mut failed = None;
        for entry in &batch {
            match sock.delete(entry) {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                // Try the others anyway: each one left is a connection not decided again.
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        total += deleted;
        if let Some(source) = failed {
            debug!(count = total, "forgot allowed connections before an error");
            return Err(InterceptError::Conntrack {
                what: "delete a connection's conntrack entry",
                source,
            });
        }
        if complete || deleted == 0 {
            break;
        }
    }
    Ok(total)
}

/// Looks up one flow and deletes its entry if `filter` (that flow) selects it.
fn forget_flow(
    sock: &mut CtSocket,
    marks: &Marks,
    filter: &ForgetFilter,
    tuple: &Tuple,
) -> Result<usize, InterceptError> {
    let seq = sock.next_seq();
    let mut found = Vec::new();
    let lookup_failed = |source| InterceptError::Conntrack {
        what: "look up a connection's conntrack entry",
        source,
    };
    let code = sock
        .exchange(&ctnetlink::get_request(seq, tuple), seq, |entry| {
            if found.len() < MAX_LOOKUP_ENTRIES {
                found.push(entry);
            }
        })
        .map_err(lookup_failed)?;
    match code {
        0 => {}
        c if c == -libc::ENOENT => return Ok(0),
        c => return Err(lookup_failed(kernel_error(c))),
    }
    let Some(entry) = found.iter().find(|e| selected(marks, filter, e)) else {
        return Ok(0);
    };
    let deleted = sock
        .delete(entry)
        .map_err(|source| InterceptError::Conntrack {
            what: "delete a connection's conntrack entry",
            source,
        })?;
    Ok(usize::from(deleted))
}

/// The error for a status code from the kernel: a negative errno (anything else is not a
/// netlink status).
fn kernel_error(code: i32) -> io::Error {
    match code.checked_neg() {
        Some(errno) if errno > 0 => io::Error::from_raw_os_error(errno),
        _ => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the kernel answered with status {code}"),
        ),
    }
}

/// A ctnetlink socket in the network namespace of the thread that opened it.
#[derive(Debug)]
struct CtSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl CtSocket {
    /// Opens a `NETLINK_NETFILTER` socket on the calling thread (so in its network namespace),
    /// with a receive timeout so that a kernel that does not answer cannot hang the caller.
    fn open() -> Result<CtSocket, InterceptError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(InterceptError::ConntrackSocket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Errors without a copy of our request: smaller acknowledgements. Kernels before 4.3
        // lack the option and send the copy, which the decoder skips.
        let _ignored = set_option(&fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &1_i32);
        let timeout = libc::timeval {
            tv_sec: libc::time_t::try_from(REPLY_TIMEOUT.as_secs()).unwrap_or(5),
            tv_usec: 0,
        };
        for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
            set_option(&fd, libc::SOL_SOCKET, option, &timeout)
                .map_err(InterceptError::ConntrackSocket)?;
        }
        Ok(CtSocket {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Deletes `entry`: `true` when it went, `false` when it was already gone.
    fn delete(&mut self, entry: &Entry) -> io::Result<bool> {
        let seq = self.next_seq();
        let code = self.exchange(&ctnetlink::delete_request(seq, entry), seq, |_| {})?;
        match code {
            0 => Ok(true),
            c if c == -libc::ENOENT => Ok(false),
            c => Err(kernel_error(c)),
        }
    }

    /// Sends `request` (sequence number `seq`), hands every entry of the answer to `on_entry`,
    /// and returns the status that ends it: the acknowledgement or error of a request, or the
    /// end of a dump. Messages for other sequence numbers and undecodable entries are skipped.
    fn exchange(
        &mut self,
        request: &[u8],
        seq: u32,
        mut on_entry: impl FnMut(Entry),
    ) -> io::Result<i32> {
        self.send(request)?;
        let mut unusable = 0_usize;
        loop {
            for Message {
                seq: got, reply, ..
            } in self.recv()?
            {
                if got != seq {
                    continue;
                }
                match reply {
                    Reply::Entry(entry) => on_entry(entry),
                    Reply::Unusable(e) => {
                        unusable += 1;
                        debug!(error = %e, "skipped an undecodable conntrack entry");
                    }
                    Reply::Status(code) | Reply::Done(code) => {
                        if unusable > 0 {
                            debug!(count = unusable, "conntrack entries skipped");
                        }
                        return Ok(code);
                    }
                    Reply::Other => {}
                }
            }
        }
    }

    /// Sends one request to the kernel.
    fn send(&self, request: &[u8]) -> io::Result<()> {
        let to = kernel_address();
        loop {
            // SAFETY: `request` is valid for reads of its length; `to` is a live sockaddr_nl
            // and the length passed is its size.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    std::ptr::from_ref(&to).cast(),
                    sockaddr_nl_len(),
                )
            };
            if sent < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(timeout_named(e));
            }
            return if usize::try_from(sent).ok() == Some(request.len()) {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the kernel took part of a netlink request",
                ))
            };
        }
    }

    /// Receives and decodes one datagram from the kernel (datagrams from any other sender are
    /// dropped).
    fn recv(&mut self) -> io::Result<Vec<Message>> {
        loop {
            let mut from = kernel_address();
            let mut from_len = sockaddr_nl_len();
            // SAFETY: `buf` is valid for writes of its length; `from` and `from_len` are live
            // locals of the sizes passed. MSG_TRUNC makes the result the datagram's full
            // length, which is compared with the buffer's below.
            let got = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                    std::ptr::from_mut(&mut from).cast(),
                    &raw mut from_len,
                )
            };
            if got < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(timeout_named(e));
            }
            if from.nl_pid != 0 {
                continue;
            }
            let len = usize::try_from(got).unwrap_or(usize::MAX);
            let Some(datagram) = self.buf.get(..len) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a netlink reply of {len} bytes did not fit the buffer"),
                ));
            };
            return ctnetlink::decode(datagram)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// A receive or send that hit the socket's timeout says so (the OS calls it EAGAIN).
fn timeout_named(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the kernel did not answer within {REPLY_TIMEOUT:?}"),
        )
    } else {
        e
    }
}

/// The kernel's netlink address (port id 0).
fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data (integers and padding); all zeroes is a valid
    // value of it.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or_default();
    addr
}

fn sockaddr_nl_len() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or_default()
}

/// setsockopt(2) with a value of type `T`.
fn set_option<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to a live `T` of `len` bytes for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marks::DEFAULT_MARK_MASK;

    fn marks() -> Marks {
        Marks::from_mask(DEFAULT_MARK_MASK).unwrap()
    }

    fn entry(src: &str, dst: &str, protocol: u8, mark: u32) -> Entry {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        Entry {
            family: ctnetlink::family_of(src.ip()),
            orig: Tuple::with_ports(protocol, src, dst),
            mark,
            id: Some(1),
            zone: None,
            counters: None,
        }
    }

    #[test]
    fn only_our_allow_bits_are_ours() {
        let m = marks();
        assert!(allowed_by_us(&m, 0x1000_0000));
        assert!(allowed_by_us(&m, 0x1000_ca6c), "foreign bits do not matter");
        assert!(allowed_by_us(&m, 0x3000_0000), "bit 29 is not ours");
        assert!(!allowed_by_us(&m, 0x9000_0000), "drop");
        assert!(!allowed_by_us(&m, 0x8000_0000), "block");
        assert!(!allowed_by_us(&m, 0));
        assert!(!allowed_by_us(&m, 0x0fff_ffff));
    }

    #[test]
    fn filters_select_what_they_say() {
        let m = marks();
        let a = entry("10.0.0.1:1000", "10.0.0.2:80", 6, 0x1000_0000);
        let b = entry("[fd00::1]:1000", "[fd00::2]:80", 17, 0x1000_0100);
        let foreign = entry("10.0.0.1:1001", "10.0.0.2:80", 6, 0x0000_4000);
        let dropped = entry("10.0.0.1:1002", "10.0.0.2:80", 6, 0x9000_0000);
        let all = ForgetFilter::AllAllowed;
        assert!(selected(&m, &all, &a) && selected(&m, &all, &b));
        assert!(!selected(&m, &all, &foreign) && !selected(&m, &all, &dropped));

        let to = ForgetFilter::AllowedTo("10.0.0.2".parse().unwrap());
        assert!(selected(&m, &to, &a) && !selected(&m, &to, &b));
        assert!(!selected(&m, &to, &foreign));
        let to6 = ForgetFilter::AllowedTo("fd00::2".parse().unwrap());
        assert!(selected(&m, &to6, &b) && !selected(&m, &to6, &a));
        let to_src = ForgetFilter::AllowedTo("10.0.0.1".parse().unwrap());
        assert!(
            !selected(&m, &to_src, &a),
            "the destination, not the source"
        );

        let flow = |protocol, src: &str, dst: &str| ForgetFilter::AllowedFlow {
            protocol,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        };
        assert!(selected(
            &m,
            &flow(Protocol::Tcp, "10.0.0.1:1000", "10.0.0.2:80"),
            &a
        ));
        // The reply direction, another port, another protocol: not this flow.
        assert!(!selected(
            &m,
            &flow(Protocol::Tcp, "10.0.0.2:80", "10.0.0.1:1000"),
            &a
        ));
        assert!(!selected(
            &m,
            &flow(Protocol::Tcp, "10.0.0.1:1001", "10.0.0.2:80"),
            &a
        ));
        assert!(!selected(
            &m,
            &flow(Protocol::Udp, "10.0.0.1:1000", "10.0.0.2:80"),
            &a
        ));
        assert!(selected(
            &m,
            &flow(Protocol::Udp, "[fd00::1]:1000", "[fd00::2]:80"),
            &b
        ));
        assert!(!selected(
            &m,
            &flow(Protocol::Icmp, "10.0.0.1:0", "10.0.0.2:0"),
            &a
        ));
        assert!(!selected(
            &m,
            &flow(Protocol::Tcp, "10.0.0.1:1001", "10.0.0.2:80"),
            &foreign
        ));
    }

    #[test]
    fn an_entry_whose_family_disagrees_with_its_addresses_is_never_selected() {
        let mut odd = entry("10.0.0.1:1000", "10.0.0.2:80", 6, 0x1000_0000);
        odd.family = ctnetlink::AF_INET6;
        assert!(!selected(&marks(), &ForgetFilter::AllAllowed, &odd));
    }

    #[test]
    fn flows_need_ports_and_one_family() {
        let v4: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:1".parse().unwrap();
        assert_eq!(flow_tuple(Protocol::Icmp, v4, v4), None);
        assert_eq!(flow_tuple(Protocol::Tcp, v4, v6), None);
        let t = flow_tuple(Protocol::Udp, v6, v6).unwrap();
        assert_eq!((t.protocol, t.src_port, t.dst_port), (17, Some(1), Some(1)));
    }

    #[test]
    fn kernel_errors_read_as_errno() {
        assert_eq!(kernel_error(-libc::EPERM).raw_os_error(), Some(libc::EPERM));
        assert_eq!(kernel_error(5).kind(), io::ErrorKind::InvalidData);
        assert_eq!(kernel_error(i32::MIN).kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_error_says_what_failed_and_why() {
        let e = InterceptError::Conntrack {
            what: "delete a connection's conntrack entry",
            source: kernel_error(-libc::EINVAL),
        };
        let text = e.to_string();
        assert!(
            text.starts_with(
                "cannot delete a connection's conntrack entry (conntrack netlink): Invalid argument"
            ),
            "{text}"
        );
    }
}
