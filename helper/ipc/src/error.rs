//! The errors of this crate, one line each, written for the person at the terminal: what went
//! wrong and, where there is one, what to do about it. This module owns the wording; it must
//! not log, retry, or decide anything (callers do).

use std::io;
use std::path::PathBuf;

use portcullis_protocol::ErrorFrame;

use crate::frame::FrameError;

/// Everything that can go wrong serving or using the helper's socket.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// [`Server::bind`](crate::Server::bind) was called outside a Tokio runtime.
    #[error("the IPC server must be started inside a Tokio runtime")]
    NoRuntime,

    /// Preparing the socket path failed: creating its directory, inspecting or removing an
    /// old socket, setting the mode or the owner.
    #[error("could not {action} {}", path.display())]
    Setup {
        /// What was being done, e.g. "set the mode of".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The socket's directory is not safe to serve in: a symbolic link or not a directory, or
    /// (when serving as root) not owned by root or writable by its group or by others.
    /// Whoever can write the directory could swap the socket while root sets it up, so
    /// nothing is created in it.
    #[error(
        "refusing to serve in {}: {reason}; the socket's directory must be a real directory \
         owned by root and writable by root only",
        path.display()
    )]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it, e.g. "it is writable by others".
        reason: String,
    },

    /// The socket file changed while the server was setting it up (it is no longer the socket
    /// just bound); whatever is there now is left alone.
    #[error(
        "the socket {} was replaced while it was being set up; is another program using \
         this path?",
        path.display()
    )]
    SocketReplaced {
        /// The socket path.
        path: PathBuf,
    },

    /// Something that is not a socket sits at the socket path; it is left alone.
    #[error("{} exists and is not a socket; remove it or choose another socket path", path.display())]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },

    /// A live server already answers on the socket path.
    #[error("another portcullisd is already listening on {}", path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },

    /// Creating the listening socket failed.
    #[error("could not listen on {}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The listener failed in a way that retrying does not fix; the server stops accepting.
    #[error("the IPC listener failed and stopped accepting connections")]
    Accept(#[source] io::Error),

    /// The server's accept loop has ended (after an [`IpcError::Accept`] was reported).
    #[error("the IPC server is no longer accepting connections")]
    ServerClosed,

    /// Nothing listens on the socket path (no socket, or a stale one).
    #[error(
        "portcullisd is not running (nothing is listening on {}); start it with \
         `sudo systemctl start portcullisd` or `sudo make run`",
        path.display()
    )]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },

    /// The socket file is not owned by root, so it may not be the real helper.
    #[error(
        "refusing to talk to {}: the socket is owned by uid {owner_uid}, not root; \
         it may not be portcullisd",
        path.display()
    )]
    UntrustedSocket {
        /// The socket path.
        path: PathBuf,
        /// The owner of the socket file.
        owner_uid: u32,
    },

    /// The process serving the socket does not run as root, so it may not be the real helper.
    #[error(
        "refusing to talk to {}: the process serving it runs as uid {uid}, not root; \
         it may not be portcullisd",
        path.display()
    )]
    UntrustedServer {
        /// The socket path.
        path: PathBuf,
        /// The serving process' effective uid.
        uid: u32,
    },

    /// The OS refused access to the socket (its mode and group leave this user out).
    #[error(
        "permission denied on {}: only root and members of group {group} may talk to \
         portcullisd; ask an administrator to run `sudo adduser $USER {group}`, then log in again",
        path.display()
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
        /// The group that may connect (the socket's group, by name where known).
        group: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Connecting failed for another reason.
    #[error("could not connect to portcullisd at {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The helper refused this client or closed the connection with an error frame.
    #[error("portcullisd refused the connection: {}", .0.message)]
    Refused(ErrorFrame),

    /// The two sides speak different protocol versions.
    #[error(
        "portcullisd speaks protocol {theirs}, this program speaks {ours}; install the helper \
         and its clients from the same Portcullis release"
    )]
    VersionMismatch {
        /// Our `PROTOCOL_VERSION`.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },

    /// The helper answered the request with an error; nothing was changed.
    #[error("{}", .0.message)]
    Helper(ErrorFrame),

    /// The connection was lost while a request that must not be sent twice was in flight.
    #[error(
        "the connection to portcullisd was lost (did the helper restart?) while it handled \
         `{method}`; check whether it was applied before trying again"
    )]
    Disconnected {
        /// The request's method, as on the wire (e.g. `add_rule`).
        method: String,
    },

    /// The peer closed the connection.
    #[error("the connection to the peer was closed")]
    Closed,

    /// A frame could not be read or written.
    #[error("IPC framing failed")]
    Frame(#[from] FrameError),

    /// The peer sent a frame that does not belong at this point of the conversation.
    #[error("protocol error: {detail}")]
    Protocol {
        /// What was expected and what came.
        detail: String,
    },

    /// The peer did not answer in time.
    #[error("timed out {what}")]
    Timeout {
        /// What was being waited for, e.g. "waiting for the helper's greeting".
        what: &'static str,
    },

    /// [`Client::next_event`](crate::Client::next_event) was called before `Subscribe`.
    #[error("no events will come: send `Subscribe` first")]
    NotSubscribed,

    /// The operation is not available on this platform yet.
    #[error("{what} is not supported on this platform yet")]
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
}

impl IpcError {
    /// Whether the connection was lost or could not be made for a reason that may go away
    /// by itself (the helper restarting); such errors are retried by the client.
    pub fn is_transient(&self) -> bool {
        match self {
            IpcError::NotRunning { .. }
            | IpcError::Connect { .. }
            | IpcError::Closed
            | IpcError::Timeout { .. } => true,
            IpcError::Frame(e) => e.is_disconnect(),
            _ => false,
        }
    }
}
