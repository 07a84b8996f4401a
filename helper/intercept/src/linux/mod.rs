//! Linux: iptables rules ([`iptables`]), the NFQUEUE consumer ([`queue`]), conntrack entries
//! ([`conntrack`], over netlink) and the plumbing the rules need ([`tools`]: finding and running
//! the iptables programs, pinned to one network namespace). Selected by `lib.rs` only; the
//! public types and their documentation live there.
//!
//! Everything here acts on the network namespace of the calling thread (a test runs it on a
//! thread that joined a lab namespace); [`InstalledRules`] pins that namespace at install, so
//! removing the rules later from any thread acts on the same one.

mod conntrack;
mod iptables;
mod queue;
mod tools;

pub(crate) use conntrack::{
    allowed_connections, allowed_udp_flows, forget_connections, original_destination,
    set_accounting,
};
pub(crate) use iptables::{InstalledRules, recover};
pub(crate) use queue::{Pending, Queue, QueueStopper, queue_stats};

/// See [`crate::exclude_socket`].
pub(crate) fn exclude_socket(
    fd: std::os::fd::BorrowedFd<'_>,
    marks: &crate::Marks,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut old: u32 = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<u32>()).unwrap_or(4);
    // SAFETY: `fd` is a live descriptor for the call; `old` and `len` are valid for writes of
    // the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::from_mut(&mut old).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mark = marks.apply(old, portcullis_protocol::Verdict::Allow);
    // SAFETY: as above; `mark` is valid for reads of its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::from_ref(&mark).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
