//! The clients' side of the socket (desktop app, browser bridge, `portcullisctl`): checking
//! that the socket and the process behind it belong to root before saying anything,
//! the `Hello` handshake, request ids, buffering events that arrive between responses, and
//! reconnecting after a helper restart — resending a request only when sending it twice is
//! harmless. It must not interpret responses beyond matching ids, and must never resend a
//! non-idempotent request.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName};

use portcullis_protocol::{
    ClientFrame, Event, MAX_FRAME_LEN, PROTOCOL_VERSION, Reply, Request, Response, ServerFrame,
};

use crate::error::IpcError;
use crate::frame::{FrameError, FrameReader, write_frame};
use crate::sys;

/// How long the helper has to greet a new connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `call` and `next_event` keep trying to reconnect after the connection was lost.
pub const RECONNECT_BUDGET: Duration = Duration::from_secs(3);

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Events kept for [`Client::next_event`]; beyond it the oldest are dropped and reported as
/// [`Event::Lagged`].
const MAX_BUFFERED_EVENTS: usize = 4096;

/// How to reach the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The helper's socket path.
    pub path: PathBuf,
    /// Refuse a socket file, or a serving process, not owned by root. Only tests turn it off.
    pub require_root_owner: bool,
    /// Who we are, for the helper's logs (e.g. `portcullisctl 0.1.0`).
    pub client_name: String,
    /// The largest frame accepted from the helper.
    pub max_frame_len: u32,
}

impl ClientConfig {
    /// Root-owned socket required, the protocol's frame limit.
    pub fn new(path: impl Into<PathBuf>, client_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            path: path.into(),
            require_root_owner: true,
            client_name: client_name.into(),
            max_frame_len: MAX_FRAME_LEN,
        }
    }
}

/// A connection to the helper that survives helper restarts.
///
/// One request at a time (`&mut self`); clients that need concurrency open several.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    conn: Option<Conn>,
    next_id: u64,
    events: EventQueue,
    subscribed: bool,
    /// Whether the subscription came from `WatchPrompts` (renewed as such after a reconnect).
    watches_prompts: bool,
    helper_version: String,
}

#[derive(Debug)]
struct Conn {
    frames: FrameReader<Stream>,
    /// Set when the connection can no longer be used (closed, out of step).
    dead: bool,
    /// Set while a frame is being written; still set afterwards if the write was cancelled,
    /// which leaves half a frame on the wire.
    writing: bool,
}

#[derive(Debug, Default)]
struct EventQueue {
    events: VecDeque<Event>,
    missed: u64,
}

impl EventQueue {
    fn push(&mut self, event: Event) {
        if self.events.len() >= MAX_BUFFERED_EVENTS {
            self.events.pop_front();
            self.missed = self.missed.saturating_add(1);
        }
        self.events.push_back(event);
    }

    /// Queues `Lagged { missed: 0 }` unless one is already last.
    fn mark_gap(&mut self) {
        if !matches!(self.events.back(), Some(Event::Lagged { missed: 0 })) {
            self.push(Event::Lagged { missed: 0 });
        }
    }

    fn pop(&mut self) -> Option<Event> {
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            return Some(Event::Lagged { missed });
        }
        self.events.pop_front()
    }
}

/// How a request failed.
struct Failure {
    error: IpcError,
    /// The request was written completely, so the helper may have acted on it.
    sent: bool,
}

impl Client {
    /// Connects and completes the handshake. Errors say what to do: helper not running,
    /// not allowed (join the group), untrusted socket, version mismatch.
    pub async fn connect(config: ClientConfig) -> Result<Client, IpcError> {
        let (conn, helper_version) = establish(&config).await?;
        Ok(Client {
            config,
            conn: Some(conn),
            next_id: 1,
            events: EventQueue::default(),
            subscribed: false,
            watches_prompts: false,
            helper_version,
        })
    }

    /// The helper's release version, from its latest `Hello`.
    pub fn helper_version(&self) -> &str {
        &self.helper_version
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Sends `request` and waits for its response. A `Reply::Err` becomes
    /// [`IpcError::Helper`]. Events that arrive meanwhile are kept for
    /// [`Client::next_event`]. If the connection turns out dead (helper restarted), this
    /// reconnects within [`RECONNECT_BUDGET`]; a request already sent is resent only if
    /// [`Request::is_idempotent`], otherwise the result is [`IpcError::Disconnected`].
    pub async fn call(&mut self, request: Request) -> Result<Response, IpcError> {
        let mut last = None;
        for _attempt in 0..2 {
            self.ensure_live().await?;
            let Some(conn) = self.conn.as_mut() else {
                return Err(IpcError::Closed);
            };
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let result = conn
                .exchange(id, &request, self.config.max_frame_len, &mut self.events)
                .await;
            if conn.dead {
                self.conn = None;
            }
            match result {
                Ok(response) => {
                    if request == Request::Subscribe || request == Request::WatchPrompts {
                        self.subscribed = true;
                        // Watching prompts includes the subscription; renew the stronger one.
                        self.watches_prompts |= request == Request::WatchPrompts;
                    }
                    return Ok(response);
                }
                Err(Failure { error, sent }) => {
                    if !error.is_transient() {
                        return Err(error);
                    }
                    if sent && !request.is_idempotent() {
                        tracing::debug!(error = %error, "connection lost with a non-idempotent request in flight");
                        return Err(IpcError::Disconnected {
                            method: method_name(&request),
                        });
                    }
                    tracing::debug!(error = %error, sent, "connection lost; reconnecting to retry");
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or(IpcError::Closed))
    }

    /// The next event (after a successful `Subscribe`). If the connection is lost, this
    /// reconnects and subscribes again; any reconnect while subscribed queues an
    /// [`Event::Lagged`] with `missed: 0` (the number is unknown) at the point of the gap, so
    /// the caller reloads what it shows. Cancel-safe while waiting for an event.
    pub async fn next_event(&mut self) -> Result<Event, IpcError> {
        loop {
            if let Some(event) = self.events.pop() {
                return Ok(event);
            }
            if !self.subscribed {
                return Err(IpcError::NotSubscribed);
            }
            let Some(conn) = self.conn.as_mut().filter(|c| !c.dead && !c.writing) else {
                self.reconnect().await?;
                continue;
            };
            match conn.frames.read::<ServerFrame>().await {
                Ok(Some(ServerFrame::Event { event })) => return Ok(event),
                Ok(Some(ServerFrame::Response { id, .. })) => {
                    tracing::debug!(id, "ignoring a response nobody waits for");
                }
                Ok(Some(ServerFrame::Error(frame))) => {
                    self.conn = None;
                    return Err(IpcError::Refused(frame));
                }
                Ok(Some(ServerFrame::Hello { .. })) => {
                    self.conn = None;
                    return Err(IpcError::Protocol {
                        detail: "a second hello from the helper".into(),
                    });
                }
                Ok(None) => {
                    tracing::debug!("the helper closed the connection; reconnecting");
                    self.conn = None;
                }
                Err(e) if e.is_disconnect() => {
                    tracing::debug!(error = %e, "the connection failed; reconnecting");
                    self.conn = None;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e.into());
                }
            }
        }
    }

    /// Makes sure there is a connection that is not known to be dead, reconnecting if needed.
    /// Frames already waiting are taken in (events kept), so a helper that has gone away is
    /// noticed before a request is sent on its connection.
    async fn ensure_live(&mut self) -> Result<(), IpcError> {
        if let Some(conn) = self.conn.as_mut() {
            conn.take_ready(&mut self.events).await;
            if !conn.dead && !conn.writing {
                return Ok(());
            }
        }
        self.reconnect().await
    }

    /// Connects again within [`RECONNECT_BUDGET`], resubscribing if we had subscribed.
    async fn reconnect(&mut self) -> Result<(), IpcError> {
        self.conn = None;
        if self.subscribed {
            // Events sent while we were away are lost; say so where the gap is.
            self.events.mark_gap();
        }
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.try_reconnect().await {
                Ok((conn, version)) => {
                    tracing::debug!(path = %self.config.path.display(), "reconnected to the helper");
                    self.conn = Some(conn);
                    self.helper_version = version;
                    return Ok(());
                }
                Err(e) if e.is_transient() && started.elapsed() + backoff <= RECONNECT_BUDGET => {
                    tracing::debug!(error = %e, "reconnect failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_reconnect(&mut self) -> Result<(Conn, String), IpcError> {
        let (mut conn, version) = establish(&self.config).await?;
        if self.subscribed {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let renew = if self.watches_prompts {
                Request::WatchPrompts
            } else {
                Request::Subscribe
            };
            conn.exchange(id, &renew, self.config.max_frame_len, &mut self.events)
                .await
                .map_err(|f| f.error)?;
        }
        Ok((conn, version))
    }
}

impl Conn {
    /// Writes request `id` and reads until its response, keeping events.
    async fn exchange(
        &mut self,
        id: u64,
        request: &Request,
        max_frame_len: u32,
        events: &mut EventQueue,
    ) -> Result<Response, Failure> {
        let frame = ClientFrame::Request {
            id,
            request: request.clone(),
        };
        self.writing = true;
        let written = write_frame(self.frames.get_mut(), &frame, max_frame_len).await;
        self.writing = false;
        match written {
            Ok(()) => {}
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Encode(_))) => {
                // Refused before anything was written: the connection is fine.
                return Err(Failure {
                    error: e.into(),
                    sent: false,
                });
            }
            Err(e) => {
                self.dead = true;
                return Err(Failure {
                    error: e.into(),
                    sent: false,
                });
            }
        }
        let lost = |conn: &mut Conn, error: IpcError| {
            conn.dead = true;
            Err(Failure { error, sent: true })
        };
        loop {
            match self.frames.read::<ServerFrame>().await {
                Ok(Some(ServerFrame::Response { id: got, reply })) if got == id => {
                    return match reply {
                        Reply::Ok(response) => Ok(response),
                        Reply::Err(frame) => Err(Failure {
                            error: IpcError::Helper(frame),
                            sent: true,
                        }),
                    };
                }
                Ok(Some(ServerFrame::Response { id: got, .. })) => {
                    tracing::debug!(id = got, "ignoring a response to an abandoned request");
                }
                Ok(Some(ServerFrame::Event { event })) => events.push(event),
                Ok(Some(ServerFrame::Error(frame))) => return lost(self, IpcError::Refused(frame)),
                Ok(Some(ServerFrame::Hello { .. })) => {
                    let detail = "a second hello from the helper".to_owned();
                    return lost(self, IpcError::Protocol { detail });
                }
                Ok(None) => return lost(self, IpcError::Closed),
                Err(e) => return lost(self, e.into()),
            }
        }
    }

    /// Takes in every frame that has already arrived, without waiting. Marks the connection
    /// dead if it was closed or broken.
    async fn take_ready(&mut self, events: &mut EventQueue) {
        loop {
            let Some(result) = now_or_never(self.frames.read::<ServerFrame>()).await else {
                return;
            };
            match result {
                Ok(Some(ServerFrame::Event { event })) => events.push(event),
                Ok(Some(ServerFrame::Response { id, .. })) => {
                    tracing::debug!(id, "ignoring a response to an abandoned request");
                }
                Ok(Some(ServerFrame::Error(frame))) => {
                    tracing::debug!(message = %frame.message, "the helper closed the connection");
                    self.dead = true;
                    return;
                }
                Ok(Some(ServerFrame::Hello { .. })) | Ok(None) | Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }
}

/// Polls `future` once: its output if it is ready now, `None` otherwise (the future is then
/// dropped, so it must be cancel-safe).
async fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        Poll::Ready(match future.as_mut().poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

/// One attempt: check the socket, connect, check the server, handshake.
async fn establish(config: &ClientConfig) -> Result<(Conn, String), IpcError> {
    let path = &config.path;
    sys::check_socket(path, config.require_root_owner)?;
    let name = path
        .as_path()
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| IpcError::Connect {
            path: path.clone(),
            source,
        })?;
    let stream = Stream::connect(name)
        .await
        .map_err(|source| connect_error(path, source))?;
    if config.require_root_owner {
        sys::check_server(&stream, path)?;
    }
    let mut frames = FrameReader::new(stream, config.max_frame_len);
    let greeting = tokio::time::timeout(CONNECT_TIMEOUT, frames.read::<ServerFrame>())
        .await
        .map_err(|_| IpcError::Timeout {
            what: "waiting for the helper's greeting",
        })?;
    let version = match greeting {
        Ok(Some(ServerFrame::Hello {
            protocol_version,
            version,
        })) => {
            if protocol_version != PROTOCOL_VERSION {
                return Err(IpcError::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: protocol_version,
                });
            }
            version
        }
        Ok(Some(ServerFrame::Error(frame))) => return Err(IpcError::Refused(frame)),
        Ok(Some(other)) => {
            return Err(IpcError::Protocol {
                detail: format!("expected the helper's hello, got {}", frame_kind(&other)),
            });
        }
        Ok(None) => return Err(IpcError::Closed),
        Err(e) => return Err(e.into()),
    };
    let hello = ClientFrame::Hello {
        protocol_version: PROTOCOL_VERSION,
        client: config.client_name.clone(),
    };
    let mut conn = Conn {
        frames,
        dead: false,
        writing: false,
    };
    write_frame(conn.frames.get_mut(), &hello, config.max_frame_len).await?;
    Ok((conn, version))
}

fn connect_error(path: &Path, source: std::io::Error) -> IpcError {
    let path = path.to_path_buf();
    match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            IpcError::NotRunning { path }
        }
        std::io::ErrorKind::PermissionDenied => {
            let group = sys::socket_group(&path);
            IpcError::PermissionDenied {
                path,
                group,
                source,
            }
        }
        _ => IpcError::Connect { path, source },
    }
}

fn frame_kind(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Hello { .. } => "hello",
        ServerFrame::Response { .. } => "a response",
        ServerFrame::Event { .. } => "an event",
        ServerFrame::Error(_) => "an error",
    }
}

/// The request's method as on the wire (`add_rule`), for messages.
fn method_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("method").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "the request".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_the_wire_names() {
        assert_eq!(method_name(&Request::Status), "status");
        assert_eq!(method_name(&Request::RemoveRule { id: 3 }), "remove_rule");
    }

    #[test]
    fn a_full_event_queue_drops_the_oldest_and_reports_the_loss_first() {
        let mut q = EventQueue::default();
        for i in 0..(MAX_BUFFERED_EVENTS as u64 + 3) {
            q.push(Event::Lagged { missed: i });
        }
        assert_eq!(q.pop(), Some(Event::Lagged { missed: 3 }));
        assert_eq!(
            q.pop(),
            Some(Event::Lagged { missed: 3 }),
            "oldest kept is #3"
        );
        assert_eq!(q.pop(), Some(Event::Lagged { missed: 4 }));
    }

    #[test]
    fn config_defaults_are_strict() {
        let c = ClientConfig::new("/run/x.sock", "t");
        assert!(c.require_root_owner);
        assert_eq!(c.max_frame_len, MAX_FRAME_LEN);
    }
}
