//! Exit codes of the `lab-app` test client, shared by the binary and by the tests that read them.
//!
//! One code per outcome a firewall can cause, so an end-to-end test can tell "blocked with a
//! reset" from "dropped" from "refused by the eBPF fast path" by the exit status alone. This file
//! holds constants only: it is compiled into both the library and the `lab-app` binary.

/// The connection (and the echo, if one was asked for) succeeded.
pub const OK: i32 = 0;
/// Any failure not covered by a more specific code.
pub const FAILED: i32 = 1;
/// Bad command line.
pub const USAGE: i32 = 2;
/// `ECONNREFUSED` or `ECONNRESET`: a TCP reset or an ICMP port unreachable (firewall REJECT).
pub const REFUSED: i32 = 3;
/// The connect did not finish in time (packets dropped).
pub const TIMEOUT: i32 = 4;
/// `EPERM` or `EACCES`: refused locally before any packet left (cgroup eBPF hook, iptables).
pub const DENIED: i32 = 5;
/// `ENETUNREACH` or `EHOSTUNREACH`.
pub const UNREACHABLE: i32 = 6;
/// The host name did not resolve.
pub const RESOLVE: i32 = 7;
/// Connected or sent, but no echo came back in time.
pub const NO_REPLY: i32 = 8;
