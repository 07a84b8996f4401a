//! The bridge between the page and the helper: requests go through one shared `ipc` client
//! (connected on first use, dropped and made again after a failure), and each open event
//! stream gets a client of its own that watches prompts, so the helper asks the user only
//! while a page is open. It carries `protocol` values unchanged and never interprets them.

use std::time::Duration;

use portcullis_ipc::{Client, ClientConfig, IpcError};
use portcullis_protocol::{ErrorCode, Event, Reply, Request};
use serde::Serialize;
use tokio::sync::{Mutex, mpsc};

/// How long one request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Waits between attempts to reach a helper that is down.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Why the bridge could not get an answer from the helper (HTTP status 502), for the page to
/// explain: `kind` for code, `message` for people (it says what to do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeError {
    /// `not_running`, `permission_denied`, `untrusted`, `version_mismatch`, `timeout`,
    /// `disconnected`, `bad_request` or `unavailable`.
    pub kind: &'static str,
    /// One line for people.
    pub message: String,
}

impl BridgeError {
    /// Describes an `ipc` error, with its causes, for the page.
    pub fn from_ipc(e: &IpcError) -> BridgeError {
        let kind = match e {
            IpcError::NotRunning { .. } => "not_running",
            IpcError::PermissionDenied { .. } => "permission_denied",
            IpcError::Refused(f) if f.code == ErrorCode::PermissionDenied => "permission_denied",
            IpcError::UntrustedSocket { .. } | IpcError::UntrustedServer { .. } => "untrusted",
            IpcError::VersionMismatch { .. } => "version_mismatch",
            IpcError::Timeout { .. } => "timeout",
            IpcError::Disconnected { .. } => "disconnected",
            _ => "unavailable",
        };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        BridgeError { kind, message }
    }
}

/// The state of a page's link to the helper, sent as `event: helper`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HelperState {
    /// Connected and subscribed; events follow.
    Connected {
        /// The helper's release version.
        version: String,
    },
    /// Not connected; the bridge keeps trying.
    Down {
        /// What went wrong and what to do.
        error: BridgeError,
    },
}

/// What an event stream carries to the page.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// The link changed.
    Helper(HelperState),
    /// Something happened in the helper.
    Event(Event),
}

/// The shared request client.
#[derive(Debug)]
pub struct Bridge {
    config: ClientConfig,
    watch_prompts: bool,
    client: Mutex<Option<Client>>,
}

impl Bridge {
    /// A bridge to the helper at `config.path`; `watch_prompts`: event streams answer prompts.
    pub fn new(config: ClientConfig, watch_prompts: bool) -> Bridge {
        Bridge {
            config,
            watch_prompts,
            client: Mutex::new(None),
        }
    }

    /// Sends one request and returns the helper's reply (`Reply::Err` for errors the helper
    /// reported), or why the helper could not be asked.
    pub async fn request(&self, request: Request) -> Result<Reply, BridgeError> {
        if matches!(request, Request::Subscribe | Request::WatchPrompts) {
            return Err(BridgeError {
                kind: "bad_request",
                message: "subscriptions go through GET /api/events, not /api/request".into(),
            });
        }
        let mut slot = self.client.lock().await;
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if slot.is_none() {
                *slot = Some(Client::connect(self.config.clone()).await?);
            }
            match slot.as_mut() {
                Some(client) => client.call(request).await,
                None => Err(IpcError::Closed),
            }
        })
        .await;
        match outcome {
            Ok(Ok(response)) => Ok(Reply::Ok(response)),
            Ok(Err(IpcError::Helper(frame))) => Ok(Reply::Err(frame)),
            Ok(Err(e)) => {
                *slot = None;
                Err(BridgeError::from_ipc(&e))
            }
            Err(_elapsed) => {
                *slot = None;
                Err(BridgeError {
                    kind: "timeout",
                    message: format!(
                        "portcullisd did not answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                })
            }
        }
    }

    /// Feeds one page's event stream until the page goes away (`tx` closed): connects,
    /// subscribes (watching prompts if configured), forwards events, and after any failure
    /// reports [`HelperState::Down`] and tries again with a growing pause.
    pub async fn pump_events(&self, tx: mpsc::Sender<StreamItem>) {
        let mut retry = FIRST_RETRY;
        loop {
            let run = self.forward(&tx, &mut retry);
            let error = tokio::select! {
                error = run => error,
                () = tx.closed() => return,
            };
            let Some(error) = error else {
                return; // the page went away
            };
            tracing::debug!(error = %error.message, "event stream lost the helper");
            let down = StreamItem::Helper(HelperState::Down { error });
            if tx.send(down).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = tx.closed() => return,
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// One connection's worth of events; `Some(error)` when the helper was lost, `None` when
    /// the page was.
    async fn forward(
        &self,
        tx: &mpsc::Sender<StreamItem>,
        retry: &mut Duration,
    ) -> Option<BridgeError> {
        let mut client = match Client::connect(self.config.clone()).await {
            Ok(c) => c,
            Err(e) => return Some(BridgeError::from_ipc(&e)),
        };
        let subscribe = if self.watch_prompts {
            Request::WatchPrompts
        } else {
            Request::Subscribe
        };
        if let Err(e) = client.call(subscribe).await {
            return Some(BridgeError::from_ipc(&e));
        }
        *retry = FIRST_RETRY;
        let version = client.helper_version().to_owned();
        let up = StreamItem::Helper(HelperState::Connected { version });
        tx.send(up).await.ok()?;
        loop {
            match client.next_event().await {
                Ok(event) => tx.send(StreamItem::Event(event)).await.ok()?,
                Err(e) => return Some(BridgeError::from_ipc(&e)),
            }
        }
    }
}
