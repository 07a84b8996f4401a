//! The local socket between `portcullisd` and its clients: framing (4-byte big-endian length +
//! JSON, see [`frame`]), the server with peer authentication (root, or the client group, from
//! the kernel's record of the peer; see [`Server`]) and the client that checks it talks to a
//! root-owned helper and reconnects across helper restarts (see [`Client`]). This crate owns
//! the transport only: it must not interpret requests or hold policy, and it never trusts what
//! a peer says about itself. Platform code (credentials, file modes and owners) lives in one
//! module per platform, selected here and nowhere else.

pub mod client;
pub mod error;
pub mod frame;
pub mod server;

#[cfg(unix)]
#[path = "unix.rs"]
mod sys;

#[cfg(not(unix))]
#[path = "other.rs"]
mod sys;

pub use client::{Client, ClientConfig};
pub use error::IpcError;
pub use frame::{FrameError, FrameReader, decode_frame, encode_frame, read_frame, write_frame};
pub use server::{
    Connection, ConnectionReader, ConnectionWriter, DEFAULT_SOCKET_MODE, PeerInfo, Server,
    ServerConfig,
};
