//! The HTTP server of browser mode: binding (loopback only), the guard every request passes
//! (Host, Origin, fetch site, session), the pages, and the two API routes. The rules of who
//! may do what live in [`crate::auth`]; this module applies them to every request, in one
//! place, before any handler runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use portcullis_desktop_entries::Cache as EntryCache;
use portcullis_ipc::ClientConfig;
use portcullis_protocol::{MAX_FRAME_LEN, Request};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::assets::Assets;
use crate::auth::{Auth, Exchange, fetch_site_allowed};
use crate::bridge::{Bridge, BridgeError, StreamItem};
use crate::error::WebError;

/// Event streams open at once (one per browser tab); each holds a helper connection, and
/// the helper allows 64 per user.
const MAX_STREAMS: usize = 8;

/// The page's Content-Security-Policy: everything from this server, nothing inline but
/// styles (the virtual list positions rows with `style`), no frames.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How to reach the helper.
    pub helper: ClientConfig,
    /// The built frontend (`frontend/dist`).
    pub web_root: PathBuf,
    /// Where to listen: a loopback address; port 0 picks a free one (the default).
    pub addr: SocketAddr,
    /// Whether open pages answer prompts (the helper waits for an answer only while one
    /// does). On by default: the page is a full UI.
    pub watch_prompts: bool,
    /// Apps' names and icons from their `.desktop` entries (default: this user's XDG
    /// directories).
    pub entries: Arc<EntryCache>,
}

impl ServeConfig {
    /// 127.0.0.1 on a random port, answering prompts.
    pub fn new(helper: ClientConfig, web_root: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            helper,
            web_root: web_root.into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            watch_prompts: true,
            entries: Arc::new(EntryCache::from_env()),
        }
    }
}

#[derive(Debug)]
struct AppState {
    auth: Auth,
    assets: Assets,
    bridge: Arc<Bridge>,
    entries: Arc<EntryCache>,
    streams: AtomicUsize,
}

/// A bound browser-mode server; [`WebServer::serve`] runs it.
#[derive(Debug)]
pub struct WebServer {
    listener: TcpListener,
    state: Arc<AppState>,
    addr: SocketAddr,
}

impl WebServer {
    /// Loads the frontend, checks the address is loopback, binds, and makes the token.
    /// Must be called inside a Tokio runtime.
    pub async fn bind(config: ServeConfig) -> Result<WebServer, WebError> {
        if !config.addr.ip().is_loopback() {
            return Err(WebError::NotLoopback { addr: config.addr });
        }
        let assets = Assets::load(&config.web_root)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| WebError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WebError::Bind {
            addr: config.addr,
            source,
        })?;
        let state = Arc::new(AppState {
            auth: Auth::new(addr)?,
            assets,
            bridge: Arc::new(Bridge::new(config.helper, config.watch_prompts)),
            entries: config.entries,
            streams: AtomicUsize::new(0),
        });
        Ok(WebServer {
            listener,
            state,
            addr,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The one-time login URL (`http://127.0.0.1:PORT/?token=…`), until it has been used.
    pub fn login_url(&self) -> Option<String> {
        self.state.auth.login_url()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        let app = router(self.state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(WebError::Serve)
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/request", post(api_request))
        .route("/api/events", get(api_events))
        .route("/api/app-entries", get(api_app_entries))
        .route("/api/app-icon", get(api_app_icon))
        .fallback(asset)
        .layer(DefaultBodyLimit::max(MAX_FRAME_LEN as usize))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A refusal: status and a one-line reason as plain text.
fn refuse(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

/// Runs before every handler: Host, Origin, fetch site, and (except for `/`, which may carry
/// the token) the session cookie. Adds the security headers to every answer.
async fn guard(State(st): State<Arc<AppState>>, req: HttpRequest, next: Next) -> Response {
    let mut response = match check(&st, &req) {
        Ok(()) => next.run(req).await,
        Err((status, reason)) => refuse(status, reason),
    };
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `Err((status, reason))` when the request must be refused.
fn check(st: &AppState, req: &HttpRequest) -> Result<(), (StatusCode, &'static str)> {
    let headers = req.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).unwrap_or("");
    if !st.auth.host_allowed(host) {
        tracing::debug!("refused a request with a foreign Host header");
        return Err((
            StatusCode::FORBIDDEN,
            "refused: the Host header does not name this server (use the printed URL)",
        ));
    }
    match text(header::ORIGIN) {
        Some(origin) if !st.auth.origin_allowed(origin, host) => {
            tracing::debug!("refused a request from a foreign origin");
            return Err((
                StatusCode::FORBIDDEN,
                "refused: requests from other sites are not accepted",
            ));
        }
        None if req.method() != Method::GET && req.method() != Method::HEAD => {
            return Err((
                StatusCode::FORBIDDEN,
                "refused: a request that changes something must carry an Origin header",
            ));
        }
        _ => {}
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !fetch_site_allowed(site)
    {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: requests from other sites are not accepted",
        ));
    }
    if req.uri().path() != "/" && !st.auth.has_session(text(header::COOKIE)) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "not signed in: open the link that `portcullis --serve` printed",
        ));
    }
    Ok(())
}

/// `/`: with `?token=`, the one-time exchange; otherwise the app, for a signed-in browser.
async fn index(
    State(st): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = query.get("token") {
        return match st.auth.exchange(token) {
            Ok(Exchange::Session(session)) => {
                tracing::info!("a browser signed in to browser mode");
                // A page, not a redirect: the navigation it makes starts on this origin, so
                // the SameSite=Strict cookie goes with it even when the link was opened from
                // another application.
                let page = "<!doctype html><meta charset=utf-8><meta http-equiv=refresh \
                            content=\"0;url=/\"><title>Portcullis</title>\
                            <p>Signed in. <a href=\"/\">Open Portcullis</a></p>\n";
                let cookie = st.auth.set_cookie(&session);
                (
                    [
                        (header::SET_COOKIE, cookie),
                        (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                    ],
                    page,
                )
                    .into_response()
            }
            Ok(Exchange::Refused) => {
                tracing::info!("refused a wrong or already used browser-mode token");
                refuse(
                    StatusCode::FORBIDDEN,
                    "refused: this link is wrong or was already used; restart \
                     `portcullis --serve` for a new one",
                )
            }
            Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    }
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    if !st.auth.has_session(cookie) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "not signed in: open the link that `portcullis --serve` printed",
        );
    }
    serve_asset(&st, "/")
}

/// Any other GET: a file of the frontend.
async fn asset(State(st): State<Arc<AppState>>, req: HttpRequest) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    serve_asset(&st, req.uri().path())
}

fn serve_asset(st: &AppState, path: &str) -> Response {
    match st.assets.get(path) {
        Some(a) => {
            let cache = if path.starts_with("/assets/") {
                // Vite names these by content hash.
                "private, max-age=31536000, immutable"
            } else {
                "no-store"
            };
            (
                [
                    (header::CONTENT_TYPE, a.content_type),
                    (header::CACHE_CONTROL, cache),
                ],
                Body::from(a.bytes.clone()),
            )
                .into_response()
        }
        None => refuse(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `POST /api/request`: one protocol request, answered with the helper's reply.
async fn api_request(State(st): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let error = BridgeError {
                kind: "bad_request",
                message: format!("not a valid request: {e}"),
            };
            return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
    };
    match st.bridge.request(request).await {
        Ok(reply) => axum::Json(reply).into_response(),
        Err(error) => {
            let status = if error.kind == "bad_request" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, axum::Json(error)).into_response()
        }
    }
}

/// The longest app key `GET /api/app-icon` looks up.
const MAX_KEY_LEN: usize = 4096;

/// An icon's own policy: nothing in it runs or loads (an SVG opened on its own included).
const ICON_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// `GET /api/app-entries`: every app key that has a `.desktop` entry, with its name and
/// whether it has an icon.
async fn api_app_entries(State(st): State<Arc<AppState>>) -> Response {
    let entries = st.entries.clone();
    match tokio::task::spawn_blocking(move || entries.catalog().labels()).await {
        Ok(labels) => axum::Json(labels).into_response(),
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "the scan failed"),
    }
}

/// `GET /api/app-icon?key=KEY`: the icon the scan found for an app key. Only keys, never
/// paths: whatever else is asked is 404.
async fn api_app_icon(
    State(st): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(key) = query.get("key").filter(|k| k.len() <= MAX_KEY_LEN).cloned() else {
        return refuse(StatusCode::BAD_REQUEST, "which app? (?key=…)");
    };
    let entries = st.entries.clone();
    let icon = tokio::task::spawn_blocking(move || entries.catalog().icon(&key)).await;
    match icon {
        Ok(Some(icon)) => (
            [
                (header::CONTENT_TYPE, icon.content_type),
                (header::CACHE_CONTROL, "private, max-age=300"),
                (header::CONTENT_SECURITY_POLICY, ICON_CSP),
            ],
            Body::from(icon.bytes),
        )
            .into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no icon for this app"),
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "the scan failed"),
    }
}

/// Decrements the open-stream count when a stream ends.
struct StreamSlot(Arc<AppState>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `GET /api/events`: Server-Sent Events for as long as the page keeps it open.
async fn api_events(State(st): State<Arc<AppState>>) -> Response {
    if st.streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        st.streams.fetch_sub(1, Ordering::SeqCst);
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many open Portcullis tabs; close one",
        );
    }
    let slot = StreamSlot(st.clone());
    let (tx, rx) = mpsc::channel::<StreamItem>(256);
    let bridge = st.bridge.clone();
    tokio::spawn(async move { bridge.pump_events(tx).await });
    Sse::new(event_stream(rx, slot))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn event_stream(
    rx: mpsc::Receiver<StreamItem>,
    slot: StreamSlot,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    futures_util::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        let item = rx.recv().await?;
        let event = match &item {
            StreamItem::Helper(state) => sse::Event::default().event("helper").json_data(state),
            StreamItem::Event(event) => sse::Event::default().event("event").json_data(event),
        };
        let event = event.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "an event could not be encoded");
            sse::Event::default().comment("unencodable event skipped")
        });
        Some((Ok(event), (rx, slot)))
    })
}
