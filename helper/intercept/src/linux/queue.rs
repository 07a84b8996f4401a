//! The NFQUEUE consumer: binds our queue number over netfilter netlink (the `nfq` crate),
//! receives queued packets with their mark, and answers each with our mark bits and "repeat",
//! so the packet walks our chain again and meets the rule for its mark. It owns the netlink
//! socket and the wake-up that stops a blocked receive; it must not decide verdicts and must
//! never change a mark bit outside the configured mask.
//!
//! `nfq` does not expose its socket, but stopping a blocked receive and receiving with a time
//! limit need `poll(2)` on it. After binding we find it: the kernel lists the netlink port id
//! of the program bound to each queue in `/proc/thread-self/net/netfilter/nfnetlink_queue`, and
//! exactly one descriptor of this process is a netfilter netlink socket with that port id in
//! this network namespace. The socket is then used in non-blocking mode only, with `poll`
//! doing the waiting.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use portcullis_protocol::{Direction, Verdict};
use tracing::{debug, trace, warn};

use crate::InterceptConfig;
use crate::error::InterceptError;
use crate::marks::Marks;
use crate::packet::{self, PacketError, PacketInfo};
use crate::stats::{QueueStats, parse_queue_stats};

/// Bytes of each packet copied to us: the IPv4 header with options (≤ 60) or the IPv6 header
/// with a few extension headers, plus the TCP header (≤ 60). Payload is never needed.
const COPY_RANGE: u16 = 256;
/// Packets the kernel holds for us before it drops (or, failing open, passes) new ones.
const QUEUE_MAX_LEN: u32 = 4096;
/// Netfilter hook numbers (`enum nf_inet_hooks`).
const NF_INET_LOCAL_IN: u8 = 1;
const NF_INET_LOCAL_OUT: u8 = 3;
/// Per-namespace view of the queue table: `/proc/self/net` would show the namespace of the
/// process's main thread, not of the calling thread.
const QUEUE_TABLE: &str = "/proc/thread-self/net/netfilter/nfnetlink_queue";

/// See [`crate::queue_stats`].
pub(crate) fn queue_stats(queue_num: u16) -> Option<QueueStats> {
    let text = std::fs::read_to_string(QUEUE_TABLE).ok()?;
    parse_queue_stats(&text, queue_num)
}

/// Shared between a queue and its stoppers.
#[derive(Debug)]
struct Stop {
    stopped: AtomicBool,
    /// A fail-open choice for the queue's owner to apply: 0 none, 1 off, 2 on.
    fail_open: std::sync::atomic::AtomicU8,
    /// An eventfd that becomes readable once stopped (or a fail-open choice waits), to wake a
    /// blocked `poll`.
    wake: OwnedFd,
}

/// See [`crate::QueueStopper`].
#[derive(Debug, Clone)]
pub(crate) struct QueueStopper(Arc<Stop>);

impl QueueStopper {
    pub(crate) fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub(crate) fn set_fail_open(&self, fail_open: bool) {
        self.0
            .fail_open
            .store(if fail_open { 2 } else { 1 }, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd that `self` keeps open.
        let _ignored = unsafe {
            libc::write(
                self.0.wake.as_raw_fd(),
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// See [`crate::Pending`].
#[derive(Debug)]
pub(crate) struct Pending {
    msg: nfq::Message,
    packet: Result<PacketInfo, PacketError>,
    mark: u32,
}

impl Pending {
    pub(crate) fn packet(&self) -> Result<PacketInfo, PacketError> {
        self.packet
    }

    pub(crate) fn mark(&self) -> u32 {
        self.mark
    }

    pub(crate) fn direction(&self) -> Option<Direction> {
        match self.msg.get_hook() {
            NF_INET_LOCAL_OUT => Some(Direction::Outbound),
            NF_INET_LOCAL_IN => Some(Direction::Inbound),
            _ => None,
        }
    }

    pub(crate) fn uid(&self) -> Option<u32> {
        self.msg.get_uid()
    }

    pub(crate) fn gid(&self) -> Option<u32> {
        self.msg.get_gid()
    }

    pub(crate) fn packet_id(&self) -> u32 {
        self.msg.get_packet_id()
    }
}

/// See [`crate::Queue`].
pub(crate) struct Queue {
    nfq: nfq::Queue,
    /// `nfq`'s socket (owned by `nfq`; never closed here).
    fd: RawFd,
    queue_num: u16,
    marks: Marks,
    stop: Arc<Stop>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("queue_num", &self.queue_num)
            .field("fd", &self.fd)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl Queue {
    pub(crate) fn open(config: &InterceptConfig) -> Result<Queue, InterceptError> {
        let marks = config.marks()?;
        let num = config.queue_num;
        let mut nfq = nfq::Queue::open().map_err(InterceptError::QueueSocket)?;
        if let Err(e) = nfq.bind(num) {
            // The kernel answers EPERM when another socket owns the queue (and also when we
            // lack CAP_NET_ADMIN), EBUSY when we bound it already.
            let taken = queue_stats(num).is_some();
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => InterceptError::QueueBusy { queue_num: num },
                Some(libc::EPERM) if taken => InterceptError::QueueBusy { queue_num: num },
                _ => InterceptError::QueueConfig {
                    queue_num: num,
                    what: "bind to",
                    source: e,
                },
            });
        }
        let config_err = |what| {
            move |source| InterceptError::QueueConfig {
                queue_num: num,
                what,
                source,
            }
        };
        nfq.set_copy_range(num, COPY_RANGE)
            .map_err(config_err("set the copy range of"))?;
        nfq.set_queue_max_len(num, QUEUE_MAX_LEN)
            .map_err(config_err("set the length of"))?;
        nfq.set_fail_open(num, config.fail_open)
            .map_err(config_err("set fail-open on"))?;
        nfq.set_recv_uid_gid(num, true)
            .map_err(config_err("ask for socket owners on"))?;
        nfq.set_nonblocking(true);
        let fd = find_queue_fd(num).map_err(config_err("find the socket of"))?;
        // SAFETY: eventfd(2) has no memory-safety preconditions; the result is checked.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(config_err("create the stop event of")(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `wake` is a fresh descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        Ok(Queue {
            nfq,
            fd,
            queue_num: num,
            marks,
            stop: Arc::new(Stop {
                stopped: AtomicBool::new(false),
                fail_open: std::sync::atomic::AtomicU8::new(0),
                wake,
            }),
        })
    }

    pub(crate) fn queue_num(&self) -> u16 {
        self.queue_num
    }

    pub(crate) fn marks(&self) -> Marks {
        self.marks
    }

    pub(crate) fn stopper(&self) -> QueueStopper {
        QueueStopper(Arc::clone(&self.stop))
    }

    /// The next packet; waits until `deadline` (forever when `None`). `Ok(None)` when the
    /// deadline passed, `Err(Stopped)` once stopped.
    pub(crate) fn recv_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Pending>, InterceptError> {
        loop {
            if self.stop.stopped.load(Ordering::SeqCst) {
                return Err(InterceptError::Stopped);
            }
            self.apply_fail_open();
            match self.nfq.recv() {
                Ok(msg) => return Ok(Some(self.pending(msg))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The kernel's report of a verdict it could not apply (the packet was gone,
                // e.g. flushed when an interface went down). Nothing to do but note it.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    debug!(error = %e, "the kernel refused a verdict: the packet was gone");
                    continue;
                }
                Err(e) => return Err(InterceptError::Recv(e)),
            }
            let timeout_ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Round up, so a short wait is not a busy loop.
                    i32::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX)
                }
            };
            let mut fds = [
                libc::pollfd {
                    fd: self.fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stop.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of 2 pollfd for the duration of the call; both
            // descriptors stay open (`nfq` and `self.stop` own them).
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(InterceptError::Recv(e));
                }
            }
        }
    }

    /// Applies a fail-open choice a [`QueueStopper`] left, and drains the wake-up it sent.
    fn apply_fail_open(&mut self) {
        let wanted = self.stop.fail_open.swap(0, Ordering::SeqCst);
        if wanted == 0 {
            return;
        }
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from the eventfd `self.stop` owns
        // (non-blocking: nothing to read is fine).
        let _ignored = unsafe {
            libc::read(
                self.stop.wake.as_raw_fd(),
                std::ptr::from_mut(&mut count).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if self.stop.stopped.load(Ordering::SeqCst) {
            // Keep the stop readable for every later poll.
            QueueStopper(Arc::clone(&self.stop)).wake();
        }
        let on = wanted == 2;
        match self.nfq.set_fail_open(self.queue_num, on) {
            Ok(()) => tracing::info!(fail_open = on, "queue fail-open flag set"),
            Err(e) => tracing::error!(error = %e, "cannot set the queue's fail-open flag"),
        }
    }

    fn pending(&self, msg: nfq::Message) -> Pending {
        let packet = packet::parse(msg.get_payload());
        let mark = msg.get_nfmark();
        match &packet {
            Ok(p) => trace!(
                id = msg.get_packet_id(),
                hook = msg.get_hook(),
                mark = format_args!("{mark:#x}"),
                protocol = %p.protocol,
                src = %p.src,
                dst = %p.dst,
                src_port = p.src_port,
                dst_port = p.dst_port,
                syn = p.tcp_syn,
                "queued"
            ),
            Err(e) => trace!(id = msg.get_packet_id(), error = %e, "queued, unreadable"),
        }
        Pending { msg, packet, mark }
    }

    pub(crate) fn verdict(&mut self, p: Pending, verdict: Verdict) -> Result<(), InterceptError> {
        if verdict == Verdict::Ask {
            warn!(
                id = p.packet_id(),
                "asked to answer a packet with `ask`; blocking it (resolve prompts first)"
            );
        }
        let mark = self.marks.apply(p.mark, verdict);
        let packet_id = p.packet_id();
        let mut msg = p.msg;
        msg.set_nfmark(mark);
        msg.set_verdict(nfq::Verdict::Repeat);
        trace!(id = packet_id, %verdict, mark = format_args!("{mark:#x}"), "verdict");
        self.nfq
            .verdict(msg)
            .map_err(|source| InterceptError::Verdict { packet_id, source })
    }
}

/// Finds this process's descriptor of the netfilter netlink socket bound to `queue_num` in the
/// calling thread's network namespace (see the module documentation).
fn find_queue_fd(queue_num: u16) -> io::Result<RawFd> {
    let not_found = |what: &str| io::Error::new(io::ErrorKind::NotFound, what.to_owned());
    let text = std::fs::read_to_string(QUEUE_TABLE)?;
    let portid = parse_queue_stats(&text, queue_num)
        .ok_or_else(|| not_found("the queue is not in the kernel's queue table"))?
        .portid;
    let netns = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    for entry in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if is_queue_socket(fd, portid, netns) {
            return Ok(fd);
        }
    }
    Err(not_found("no netfilter socket with the queue's port id"))
}

/// Whether `fd` is a netfilter netlink socket with port id `portid` in the namespace with
/// inode `netns`. Only queries `fd`; any descriptor is harmless to ask about.
fn is_queue_socket(fd: RawFd, portid: u32, netns: u64) -> bool {
    // SAFETY: all-zero is a valid sockaddr_nl.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = u32::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or(0);
    // SAFETY: `addr` is writable for `len` bytes and `len` is a valid in/out length.
    let rc = unsafe {
        libc::getsockname(
            fd,
            std::ptr::from_mut(&mut addr).cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    if rc != 0 || i32::from(addr.nl_family) != libc::AF_NETLINK || addr.nl_pid != portid {
        return false;
    }
    let mut protocol: libc::c_int = 0;
    let mut plen = u32::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(0);
    // SAFETY: `protocol` is writable for `plen` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            std::ptr::from_mut(&mut protocol).cast(),
            &mut plen,
        )
    };
    if rc != 0 || protocol != libc::NETLINK_NETFILTER {
        return false;
    }
    // Port ids are unique per namespace only: check the socket's namespace too.
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor (or -1).
    let ns_fd = unsafe { libc::ioctl(fd, libc::SIOCGSKNS) };
    if ns_fd < 0 {
        return false;
    }
    // SAFETY: `ns_fd` is a fresh descriptor that nothing else owns.
    let ns = File::from(unsafe { OwnedFd::from_raw_fd(ns_fd) });
    ns.metadata().is_ok_and(|m| m.ino() == netns)
}
