//! Placeholder for platforms without Unix sockets (Windows named pipes come later). It keeps
//! the crate compiling there and fails closed: no peer is authenticated, so every peer is
//! refused, and a client cannot check who owns the pipe, so it refuses when asked to. It must
//! not pretend to check anything.

use std::io;
use std::path::Path;

use interprocess::local_socket::ListenerOptions;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon;

use crate::error::IpcError;
use crate::server::PeerInfo;

/// Identifies the socket we created (nothing to identify yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId;

/// The socket's directory (nothing to hold yet).
#[derive(Debug)]
pub(crate) struct SocketDir;

pub(crate) fn prepare_socket_path(_path: &Path) -> Result<SocketDir, IpcError> {
    Ok(SocketDir)
}

pub(crate) fn with_mode(options: ListenerOptions<'_>, _mode: u32) -> ListenerOptions<'_> {
    options
}

pub(crate) fn bound_socket(_dir: &SocketDir, _path: &Path) -> Result<FileId, IpcError> {
    Ok(FileId)
}

pub(crate) fn secure_socket(
    _dir: &SocketDir,
    _path: &Path,
    _id: FileId,
    _mode: u32,
    _group: Option<u32>,
) -> Result<(), IpcError> {
    Ok(())
}

pub(crate) fn remove_socket_if_ours(_path: &Path, _id: FileId) {}

pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

pub(crate) fn group_name(_gid: u32) -> Option<String> {
    None
}

pub(crate) fn user_name(_uid: u32) -> Option<String> {
    None
}

pub(crate) fn peer_info(stream: &Stream) -> io::Result<PeerInfo> {
    let creds = stream.peer_creds()?;
    let pid = creds.pid().unwrap_or(0);
    Ok(PeerInfo {
        uid: u32::MAX,
        gid: u32::MAX,
        pid,
    })
}

/// The outcome of the access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Allowed; the reason is for logs.
    #[expect(
        dead_code,
        reason = "nothing is allowed until named-pipe security exists"
    )]
    Allowed(&'static str),
    /// Refused.
    Refused,
}

pub(crate) async fn authorize(_stream: &Stream, _peer: PeerInfo, _group: Option<u32>) -> Access {
    Access::Refused
}

pub(crate) fn shutdown(_stream: &Stream) {}

pub(crate) fn check_socket(_path: &Path, require_root_owner: bool) -> Result<(), IpcError> {
    if require_root_owner {
        return Err(IpcError::Unsupported {
            what: "checking who owns the helper's pipe",
        });
    }
    Ok(())
}

pub(crate) fn socket_group(_path: &Path) -> String {
    "portcullis".to_owned()
}

pub(crate) fn check_server(_stream: &Stream, _path: &Path) -> Result<(), IpcError> {
    Err(IpcError::Unsupported {
        what: "checking who serves the helper's pipe",
    })
}
