//! Integration tests of the IPC socket, server and client against each other, in-process and
//! as root (they fail, never skip, without root). Peers of other users are in `peer_auth.rs`.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test at once, with its message"
)]

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod raw;
mod reconnect;
mod round_trip;
mod socket_file;
