//! The Portcullis test lab: throwaway network namespaces, real processes inside them, and
//! handles to drive the real `portcullisd`/`portcullisctl` from end-to-end tests.
//!
//! A [`Lab`] is two namespaces, `client` and `server`, joined by a veth pair (10.77.N.1/24 and
//! fd77:N::1/64 on the client, .2/::2 on the server, default routes via the peer). Tests start
//! servers in the server namespace ([`Ns::tcp_echo`], [`Ns::udp_echo`]), the helper in the
//! client namespace ([`Ns::start_helper`]) and "apps" — distinct copies of the `lab-app` client
//! ([`Lab::app`]) — next to it, then assert what got through. Everything the lab made is removed
//! when it is dropped, also while a panic unwinds, and leftovers of aborted runs are swept when
//! the next lab starts.
//!
//! Every lab also has a cgroup2 group of its own ([`Lab::cgroup`]); every process the lab starts
//! joins it before `exec`, and the helper is always started with `--ebpf-cgroup <that group>`
//! (unless a test passes `--ebpf-cgroup` or `--no-ebpf` itself): cgroup eBPF programs are
//! attached only to a group the test created, never to the root cgroup.
//!
//! This crate must never change the machine's own (root) network namespace: every `ip` command
//! it runs names a lab namespace (`ip -n`), both veth ends are created directly inside lab
//! namespaces, and processes enter a namespace with `setns` before `exec`. It moves processes
//! into no cgroup but a lab's own, and kills only processes it started (or that live inside a
//! namespace or cgroup it created in this run).
//!
//! Setup failures panic with a message that says what to fix: this is test infrastructure, and
//! a failed setup must fail the test loudly.
//!
//! ```no_run
//! use portcullis_lab::Lab;
//!
//! // in tests/e2e.rs, under #[test]:
//! fn echo_over_the_lab() {
//!     portcullis_lab::require_root!();
//!     let lab = Lab::new("echo");
//!     let _echo = lab.server().tcp_echo(7);
//!     let app = lab.app("curlish");
//!     let server = lab.server().ipv4().to_string();
//!     let out = lab.client().run_app(&app, ["connect", "tcp", &server, "7", "--send", "hi"]);
//!     assert!(out.success(), "{out}");
//! }
//! ```
#![expect(
    clippy::panic,
    reason = "test infrastructure: a failed setup must abort the test with a clear message"
)]

pub mod app_codes;
mod bins;
mod cgroup;
pub mod dns;
mod helper;
mod lab;
mod netns;
mod process;

pub use bins::lab_bin;
pub use cgroup::cgroup2_mount;
pub use helper::{Helper, HelperOpts};
pub use lab::{Lab, Ns, Proto, lab_root};
pub use netns::{hold_sweeps, netns_list_with_prefix};
pub use nix::sys::signal::Signal;
pub use process::{CmdOutput, CtlOutput, LabProcess};

use std::io::Write as _;

/// Decides whether a test that needs root may go on.
///
/// Returns `true` when running as root. Otherwise, under CI (`CI=true` or `CI=1`) it panics —
/// CI runs as root, so a missing privilege there is a failure, never a silent skip — and
/// elsewhere it prints a `SKIPPED` line to stderr and returns `false` so the caller can return.
/// Prefer the [`require_root!`] macro, which returns for you.
///
/// ```no_run
/// fn needs_namespaces() {
///     if !portcullis_lab::require_root("needs_namespaces") {
///         return;
///     }
///     // ...
/// }
/// ```
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if in_ci() {
        panic!(
            "test {test} needs root; CI runs as root (CI is set), so this is a failure, not a \
             skip"
        );
    }
    // Straight to stderr, not `eprintln!`: the test harness captures the latter and would
    // hide the skip of a passing test.
    let _ignored = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root (run the tests as root; under CI=true this fails)"
    );
    false
}

/// Whether the environment says this is CI (`CI=true` or `CI=1`, case-insensitive).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Returns from the calling test unless it runs as root; see [`require_root()`](fn@require_root).
///
/// Without an argument the test is named after the enclosing function.
///
/// ```no_run
/// fn needs_namespaces() {
///     portcullis_lab::require_root!();
///     let _lab = portcullis_lab::Lab::new("ns");
/// }
/// ```
#[macro_export]
macro_rules! require_root {
    () => {{
        fn __pcl_here() {}
        let full = ::std::any::type_name_of_val(&__pcl_here);
        let name = full.strip_suffix("::__pcl_here").unwrap_or(full);
        if !$crate::require_root(name) {
            return;
        }
    }};
    ($test:expr) => {
        if !$crate::require_root($test) {
            return;
        }
    };
}
