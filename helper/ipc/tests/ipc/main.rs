//! Integration tests of the IPC socket, server and client against each other, in-process and
//! as root: without root each test prints `SKIPPED (needs root): <test>` and returns, and
//! under CI (`CI=true`/`1`) it fails instead. Peers of other users are in `peer_auth.rs`, whose
//! command-line parsing is tested here (`harness_args`).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test at once, with its message"
)]

#[path = "../common/mod.rs"]
mod common;

mod harness_args;
mod hostile;
mod raw;
mod reconnect;
mod round_trip;
mod socket_file;
