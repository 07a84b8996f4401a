//! The helper's side of the socket: binding it safely (in a directory only root can write,
//! no deleting what is not a stale socket or our own, mode and owner set explicitly without
//! following symbolic links), accepting peers, authenticating each one by its
//! kernel credentials and running the `Hello` handshake in a task of its own with a timeout,
//! and handing out only connections that passed both. A refused or failed peer is logged and
//! closed; it never stops the accept loop. This module must not interpret requests (the daemon
//! does) and never trusts anything a peer says about itself.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{Mutex, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use portcullis_protocol::{
    ClientFrame, ErrorCode, ErrorFrame, MAX_FRAME_LEN, PROTOCOL_VERSION, RELEASE_VERSION,
    ServerFrame,
};

use crate::error::IpcError;
use crate::frame::{FrameError, FrameReader, write_frame};
use crate::sys;

/// The socket mode used unless configured otherwise: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// How long a new peer has to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many peers may be between accept and the end of their handshake at once; beyond it the
/// listener waits (new peers queue in the kernel's backlog).
const MAX_PENDING_HANDSHAKES: usize = 128;

/// Authenticated connections waiting for [`Server::accept`].
const ACCEPT_QUEUE: usize = 64;

/// How the server binds and whom it lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The socket path. Its directory is created 0755 if missing; when serving as root it
    /// must be a real directory (not a symbolic link) owned by root and writable by root only,
    /// or [`Server::bind`] refuses with [`IpcError::UnsafeDirectory`].
    pub path: PathBuf,
    /// The group allowed besides root (`portcullis`); `None` lets only root in.
    pub group: Option<u32>,
    /// The socket file's permission bits (only `0o777` is used); default
    /// [`DEFAULT_SOCKET_MODE`].
    pub mode: u32,
    /// The largest frame accepted from peers.
    pub max_frame_len: u32,
}

impl ServerConfig {
    /// Root only, mode 0660, the protocol's frame limit.
    pub fn new(path: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            path: path.into(),
            group: None,
            mode: DEFAULT_SOCKET_MODE,
            max_frame_len: MAX_FRAME_LEN,
        }
    }
}

/// Who is on the other end, as the kernel recorded it when the peer connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerInfo {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id (in the helper's pid namespace).
    pub pid: u32,
}

/// What the accept loop and the handshake tasks share.
#[derive(Debug)]
struct Shared {
    group: Option<u32>,
    /// The group's name (or number) for refusal messages.
    group_label: Option<String>,
    max_frame_len: u32,
}

/// The listening socket. Dropping it stops accepting and removes the socket file if it is
/// still the one this server created.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    incoming: Mutex<mpsc::Receiver<Result<Connection, IpcError>>>,
    accept_loop: JoinHandle<()>,
    socket_id: sys::FileId,
}

impl Server {
    /// Binds the socket described by `config`. Must be called inside a Tokio runtime: it
    /// starts the task that accepts and authenticates peers.
    pub fn bind(config: ServerConfig) -> Result<Server, IpcError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| IpcError::NoRuntime)?;
        let path = config.path.clone();
        let mode = config.mode & 0o777;
        let dir = sys::prepare_socket_path(&path)?;

        let bind_err = |source| IpcError::Bind {
            path: path.clone(),
            source,
        };
        let name = path
            .as_path()
            .to_fs_name::<GenericFilePath>()
            .map_err(bind_err)?;
        // Our own Drop removes the file, and only if it is still ours; interprocess'
        // reclaiming would remove whatever sits at the path.
        let options = ListenerOptions::new()
            .name(name)
            .reclaim_name(false)
            .try_overwrite(false);
        let listener = {
            let _guard = runtime.enter();
            sys::with_mode(options, mode).create_tokio()
        }
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => IpcError::AlreadyRunning { path: path.clone() },
            _ => bind_err(source),
        })?;

        // On a failure, whatever sits at the path is removed only if it is the socket we bound.
        let socket_id = sys::bound_socket(&dir, &path)?;
        if let Err(e) = sys::secure_socket(&dir, &path, socket_id, mode, config.group) {
            drop(listener);
            sys::remove_socket_if_ours(&path, socket_id);
            return Err(e);
        }
        drop(dir);

        let shared = Arc::new(Shared {
            group: config.group,
            group_label: config
                .group
                .map(|gid| sys::group_name(gid).unwrap_or_else(|| gid.to_string())),
            max_frame_len: config.max_frame_len,
        });
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let accept_loop = runtime.spawn(accept_loop(listener, shared, tx));
        tracing::debug!(path = %path.display(), mode = format_args!("{mode:o}"), group = ?config.group, "listening");
        Ok(Server {
            path,
            incoming: Mutex::new(rx),
            accept_loop,
            socket_id,
        })
    }

    /// The next authenticated, handshaken connection. Refused peers and failed handshakes are
    /// logged and skipped; only a listener-level failure is an error. Cancel-safe.
    pub async fn accept(&self) -> Result<Connection, IpcError> {
        let mut incoming = self.incoming.lock().await;
        incoming.recv().await.unwrap_or(Err(IpcError::ServerClosed))
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Aborting the loop drops the listener and every handshake still in progress.
        self.accept_loop.abort();
        sys::remove_socket_if_ours(&self.path, self.socket_id);
    }
}

async fn accept_loop(
    listener: interprocess::local_socket::tokio::Listener,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<Connection, IpcError>>,
) {
    let mut pending = JoinSet::new();
    loop {
        while pending.try_join_next().is_some() {}
        if pending.len() >= MAX_PENDING_HANDSHAKES {
            pending.join_next().await;
            continue;
        }
        match listener.accept().await {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                let tx = tx.clone();
                pending.spawn(async move {
                    if let Some(conn) = admit(stream, &shared).await {
                        // The server may be gone; then the connection just closes.
                        let _ = tx.send(Ok(conn)).await;
                    }
                });
            }
            Err(e) if sys::is_transient_accept_error(&e) => {
                tracing::warn!(error = %e, "accepting a client failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "the IPC listener failed; no longer accepting");
                let _ = tx.send(Err(IpcError::Accept(e))).await;
                return;
            }
        }
    }
}

/// Authenticates and greets one peer; `None` if it was refused or failed (already logged).
async fn admit(stream: Stream, shared: &Shared) -> Option<Connection> {
    let stream = Arc::new(stream);
    let peer = match sys::peer_info(&stream) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::debug!(error = %e, "could not read a peer's credentials; closing");
            return None;
        }
    };
    let mut writer = ConnectionWriter {
        stream: Arc::clone(&stream),
        max_frame_len: shared.max_frame_len,
    };
    let reader = FrameReader::new(SharedRead(stream), shared.max_frame_len);
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(peer, &mut writer, reader, shared),
    )
    .await
    {
        Ok(Ok(conn)) => {
            tracing::debug!(uid = peer.uid, gid = peer.gid, pid = peer.pid, client = %conn.client, "client connected");
            Some(conn)
        }
        Ok(Err(Refusal::Silent(reason))) => {
            tracing::debug!(
                uid = peer.uid,
                gid = peer.gid,
                pid = peer.pid,
                reason,
                "handshake failed"
            );
            writer.close();
            None
        }
        Ok(Err(Refusal::Told(frame))) => {
            tracing::debug!(uid = peer.uid, gid = peer.gid, pid = peer.pid, code = ?frame.code, "closing after a failed handshake");
            writer.close();
            None
        }
        Err(_) => {
            tracing::debug!(
                uid = peer.uid,
                gid = peer.gid,
                pid = peer.pid,
                "handshake timed out"
            );
            writer.close();
            None
        }
    }
}

enum Refusal {
    /// The peer was sent this error frame.
    Told(ErrorFrame),
    /// The peer went away or could not be told.
    Silent(&'static str),
}

async fn handshake(
    peer: PeerInfo,
    writer: &mut ConnectionWriter,
    mut reader: FrameReader<SharedRead>,
    shared: &Shared,
) -> Result<Connection, Refusal> {
    if let sys::Access::Allowed(why) = sys::authorize(&writer.stream, peer, shared.group).await {
        tracing::debug!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid,
            why,
            "peer allowed"
        );
    } else {
        tracing::info!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid,
            "refused a client that is neither root nor in the client group"
        );
        let message = refusal_message(peer, shared.group_label.as_deref()).await;
        return Err(tell(
            writer,
            ErrorFrame::new(ErrorCode::PermissionDenied, message),
        )
        .await);
    }

    let hello = ServerFrame::Hello {
        protocol_version: PROTOCOL_VERSION,
        version: RELEASE_VERSION.to_owned(),
    };
    if writer.send(&hello).await.is_err() {
        return Err(Refusal::Silent("could not send hello"));
    }
    let frame = match reader.read::<ClientFrame>().await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(Refusal::Silent("closed before its hello")),
        Err(e) => {
            return Err(match e.to_error_frame() {
                Some(frame) => tell(writer, frame).await,
                None => Refusal::Silent("connection failed before its hello"),
            });
        }
    };
    match frame {
        ClientFrame::Hello {
            protocol_version,
            client,
        } if protocol_version == PROTOCOL_VERSION => Ok(Connection {
            peer,
            client,
            reader: ConnectionReader {
                peer,
                frames: reader,
            },
            writer: ConnectionWriter {
                stream: Arc::clone(&writer.stream),
                max_frame_len: writer.max_frame_len,
            },
        }),
        ClientFrame::Hello {
            protocol_version,
            client,
        } => {
            tracing::info!(uid = peer.uid, pid = peer.pid, theirs = protocol_version, ours = PROTOCOL_VERSION, client = %client, "refused a client speaking another protocol version");
            let message = format!(
                "client speaks protocol {protocol_version}, helper speaks {PROTOCOL_VERSION}; \
                 update so the helper and its clients come from the same Portcullis release"
            );
            Err(tell(writer, ErrorFrame::new(ErrorCode::VersionMismatch, message)).await)
        }
        ClientFrame::Request { .. } => {
            let frame = ErrorFrame::new(ErrorCode::BadFrame, "bad frame: expected hello first");
            Err(tell(writer, frame).await)
        }
    }
}

async fn tell(writer: &mut ConnectionWriter, frame: ErrorFrame) -> Refusal {
    match writer.send(&ServerFrame::Error(frame.clone())).await {
        Ok(()) => Refusal::Told(frame),
        Err(_) => Refusal::Silent("could not send the error frame"),
    }
}

async fn refusal_message(peer: PeerInfo, group: Option<&str>) -> String {
    let uid = peer.uid;
    let Some(group) = group else {
        return format!(
            "permission denied: uid {uid} is not root, and only root may talk to portcullisd"
        );
    };
    let user = tokio::task::spawn_blocking(move || sys::user_name(uid))
        .await
        .ok()
        .flatten();
    let user = user.unwrap_or_else(|| format!("<the user with uid {uid}>"));
    format!(
        "permission denied: uid {uid} is neither root nor in group {group}; ask an administrator \
         to run `adduser {user} {group}`"
    )
}

/// Reads through a stream shared with a [`ConnectionWriter`].
#[derive(Debug)]
struct SharedRead(Arc<Stream>);

impl AsyncRead for SharedRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut stream: &Stream = &self.0;
        Pin::new(&mut stream).poll_read(cx, buf)
    }
}

/// An authenticated client that completed the handshake.
#[derive(Debug)]
pub struct Connection {
    /// Who it is, from the kernel.
    pub peer: PeerInfo,
    client: String,
    reader: ConnectionReader,
    writer: ConnectionWriter,
}

impl Connection {
    /// What the client called itself in its `Hello` (for logs only; not authenticated).
    pub fn client_name(&self) -> &str {
        &self.client
    }

    /// The next frame from the client; `Ok(None)` when it closed cleanly. On an error the
    /// connection is out of step: answer with [`Connection::send_error_and_close`] using
    /// [`FrameError::to_error_frame`] (when that is `Some`), or just drop it. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<ClientFrame>, FrameError> {
        self.reader.recv().await
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: &ServerFrame) -> Result<(), IpcError> {
        self.writer.send(frame).await
    }

    /// Sends an error frame, then closes the connection.
    pub async fn send_error_and_close(mut self, error: ErrorFrame) -> Result<(), IpcError> {
        self.writer.send_error_and_close(error).await
    }

    /// Splits into a half that reads requests and a half that writes responses and events,
    /// for use from different tasks. The connection closes when both are dropped, or at once
    /// with [`ConnectionWriter::close`].
    pub fn split(self) -> (ConnectionReader, ConnectionWriter) {
        (self.reader, self.writer)
    }
}

/// The reading half of a [`Connection`].
#[derive(Debug)]
pub struct ConnectionReader {
    peer: PeerInfo,
    frames: FrameReader<SharedRead>,
}

impl ConnectionReader {
    /// Who is on the other end.
    pub fn peer(&self) -> PeerInfo {
        self.peer
    }

    /// As [`Connection::recv`]. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<ClientFrame>, FrameError> {
        self.frames.read().await
    }
}

/// The writing half of a [`Connection`].
#[derive(Debug)]
pub struct ConnectionWriter {
    stream: Arc<Stream>,
    max_frame_len: u32,
}

impl ConnectionWriter {
    /// Sends one frame. Frames over the frame limit are refused before anything is written.
    /// Not cancel-safe: a frame interrupted halfway leaves the connection unusable.
    pub async fn send(&mut self, frame: &ServerFrame) -> Result<(), IpcError> {
        let mut stream: &Stream = &self.stream;
        write_frame(&mut stream, frame, self.max_frame_len)
            .await
            .map_err(IpcError::from)
    }

    /// Sends an error frame, then closes the connection (both halves).
    pub async fn send_error_and_close(&mut self, error: ErrorFrame) -> Result<(), IpcError> {
        let sent = self.send(&ServerFrame::Error(error)).await;
        self.close();
        sent
    }

    /// Closes the connection in both directions now; the reader sees the end of the stream.
    pub fn close(&self) {
        sys::shutdown(&self.stream);
    }
}
