//! The errors of this crate, one line each, written for the person reading the helper's log:
//! what failed and, where there is one, what to do about it. This module owns the wording; it
//! must not log, retry, or decide anything. No platform code: every variant exists everywhere.

use std::io;

/// Everything that can go wrong putting the firewall in place or running its queue.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// This platform has no interception backend (yet).
    #[error("packet interception is not supported on this platform yet")]
    Unsupported,

    /// The mark mask has fewer than the two bits the marks need.
    #[error("mark mask {mask:#010x} has fewer than 2 bits; allow, block and drop need two")]
    BadMarkMask {
        /// The configured mask.
        mask: u32,
    },

    /// The excluded cgroup path could change the meaning of the rule text.
    #[error(
        "excluded cgroup path {path:?} is not usable: it must start with `/` and contain only \
         letters, digits and `._-@:+=,/`"
    )]
    BadCgroupPath {
        /// The configured path.
        path: String,
    },

    /// The DNS redirect's resolver address cannot be a DNAT target.
    #[error("DNS redirect target {addr} is not usable: {reason}")]
    BadDnsRedirect {
        /// The configured address and port.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The excluded cgroup does not exist; the kernel refuses a rule naming it.
    #[error("excluded cgroup {path} does not exist (looked in {mount}); create it first")]
    CgroupMissing {
        /// The configured path, relative to the cgroup2 root.
        path: String,
        /// Where the cgroup2 hierarchy is mounted.
        mount: String,
    },

    /// A command-line tool we need is not installed.
    #[error("`{tool}` is not installed; install the Debian package `{package}`")]
    ToolMissing {
        /// The program, e.g. `ip6tables-restore`.
        tool: String,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// A tool could not be started or talked to.
    #[error("cannot run `{tool}`")]
    ToolSpawn {
        /// The program.
        tool: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },

    /// The calling thread's network namespace could not be opened (to pin it for removal).
    #[error("cannot open this thread's network namespace")]
    Netns(#[source] io::Error),

    /// The netlink socket for the queue could not be opened (needs CAP_NET_ADMIN).
    #[error("cannot open a netfilter queue socket (the helper needs CAP_NET_ADMIN)")]
    QueueSocket(#[source] io::Error),

    /// Another program is already bound to our queue number.
    #[error(
        "NFQUEUE {queue_num} is already bound by another program (another portcullisd?); \
         stop it or choose another queue number"
    )]
    QueueBusy {
        /// The queue number.
        queue_num: u16,
    },

    /// Binding or configuring the queue failed.
    #[error("cannot {what} NFQUEUE {queue_num}")]
    QueueConfig {
        /// The queue number.
        queue_num: u16,
        /// What was being done, e.g. "bind to".
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Receiving from the queue failed.
    #[error("receiving from the netfilter queue failed")]
    Recv(#[source] io::Error),

    /// Sending a verdict failed; the packet waits in the kernel until the queue closes.
    #[error("sending the verdict for packet {packet_id} failed")]
    Verdict {
        /// The kernel's id of the packet.
        packet_id: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The queue was stopped with its [`QueueStopper`](crate::QueueStopper).
    #[error("the queue was stopped")]
    Stopped,

    /// The helper could not mark one of its own sockets to pass the rules (needs
    /// CAP_NET_ADMIN).
    #[error("cannot mark the helper's own socket to pass the firewall (needs CAP_NET_ADMIN)")]
    ExcludeSocket(#[source] io::Error),

    /// The conntrack netlink socket could not be opened (needs CAP_NET_ADMIN).
    #[error("cannot open a conntrack netlink socket (the helper needs CAP_NET_ADMIN)")]
    ConntrackSocket(#[source] io::Error),

    /// A conntrack request failed: the kernel refused it (the errno says why), did not answer
    /// in time, or answered with something that is not a ctnetlink reply.
    #[error("cannot {what} (conntrack netlink): {source}")]
    Conntrack {
        /// What was being done, e.g. "delete a connection's conntrack entry".
        what: &'static str,
        /// The OS error, or `InvalidData` for an undecodable reply.
        #[source]
        source: io::Error,
    },
}
