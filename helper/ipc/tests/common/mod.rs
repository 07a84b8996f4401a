//! Shared by the integration tests: the root check (skip, or fail under CI), throwaway socket
//! directories, the command-line parsing of the custom `peer_auth` harness ([`args`]), and a
//! fake daemon that serves `portcullis-ipc` connections the way `portcullisd` will (reader and
//! writer halves, error frames on bad input) with canned answers. It must not reach into the
//! crate's internals: it uses the public API only.

pub mod args;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use portcullis_ipc::{ClientConfig, Connection, PeerInfo, Server, ServerConfig};
use portcullis_protocol::{
    AppInfo, AppKind, ClientFrame, EnforcementState, ErrorCode, ErrorFrame, Event,
    PROTOCOL_VERSION, Reply, Request, Response, ServerFrame, SettingsView, Status,
};

/// The group the tests allow besides root; it need not exist in /etc/group.
pub const GROUP: u32 = 4242;

/// Whether a test that needs root may go on (the socket is chowned to root and other users
/// are played with setpriv). As root: `true`. Otherwise, under CI (`CI=true` or `CI=1`), it
/// panics, since CI runs as root and a missing privilege there is a failure; elsewhere it
/// prints `SKIPPED (needs root): <test>` to stderr and returns `false` so the test returns.
/// Tests use [`require_root!`], which names the test and returns for it.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        !in_ci(),
        "test {test} needs root and CI is set (CI runs the tests as root), so this is a \
         failure, not a skip: run `sudo cargo test -p portcullis-ipc`"
    );
    // Straight to stderr, not `eprintln!`: libtest captures that and would hide the skip of
    // a passing test.
    let _ignored = writeln!(std::io::stderr(), "SKIPPED (needs root): {test}");
    false
}

/// Whether the environment says this is CI (`CI=true`, any case, or `CI=1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A test's name as libtest shows it (`socket_file::some_test`), from the type name of a
/// function item declared inside it (`ipc::socket_file::some_test::{{closure}}::here`).
pub fn test_name(inner: &str) -> String {
    let path = inner.strip_suffix("::here").unwrap_or(inner);
    let path = path.replace("::{{closure}}", "");
    match path.split_once("::") {
        Some((_crate, rest)) => rest.to_owned(),
        None => path,
    }
}

/// Returns from the calling test unless it runs as root; see [`root_or_skip`].
macro_rules! require_root {
    () => {
        if !$crate::common::root_or_skip(&$crate::common::test_name({
            fn here() {}
            ::std::any::type_name_of_val(&here)
        })) {
            return;
        }
    };
}
pub(crate) use require_root;

/// A temporary directory that other users may traverse (0755).
pub fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("portcullis-ipc-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The socket path inside `dir`, in a `run/` subdirectory that does not exist yet.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("run").join("portcullisd.sock")
}

/// Server settings for tests: group 4242, mode 0660.
pub fn server_config(path: &Path) -> ServerConfig {
    ServerConfig {
        group: Some(GROUP),
        ..ServerConfig::new(path)
    }
}

/// Client settings for tests (the socket is root-owned, so the strict default holds).
pub fn client_config(path: &Path) -> ClientConfig {
    ClientConfig::new(path, "ipc-tests")
}

/// How the fake daemon behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Reported as `Status.pid` and in `AppAdded` keys, to tell restarted daemons apart.
    pub generation: u32,
    /// Never answer `ListApps` and `AddRule` (to hold a request in flight).
    pub hang: bool,
}

/// A daemon stand-in serving canned answers.
pub struct FakeDaemon {
    /// Events sent to every subscribed connection.
    pub events: broadcast::Sender<Event>,
    /// Every peer that completed the handshake.
    pub peers: Arc<Mutex<Vec<PeerInfo>>>,
    /// Notified when a request arrives that `hang` holds.
    pub hung: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    /// Binds and serves. Panics if binding fails.
    pub fn start(config: ServerConfig, behaviour: Behaviour) -> FakeDaemon {
        let server = Server::bind(config).unwrap();
        let (events, _) = broadcast::channel(64);
        let peers = Arc::new(Mutex::new(Vec::new()));
        let hung = Arc::new(Notify::new());
        let task = tokio::spawn(serve_all(
            server,
            behaviour,
            events.clone(),
            Arc::clone(&peers),
            Arc::clone(&hung),
        ));
        FakeDaemon {
            events,
            peers,
            hung,
            task: Some(task),
        }
    }

    /// Stops like a killed helper: listener and every connection closed, socket removed.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn serve_all(
    server: Server,
    behaviour: Behaviour,
    events: broadcast::Sender<Event>,
    peers: Arc<Mutex<Vec<PeerInfo>>>,
    hung: Arc<Notify>,
) {
    // The connections live in this set, so aborting this task closes all of them.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let conn = match server.accept().await {
            Ok(conn) => conn,
            Err(e) => panic!("accept failed: {e}"),
        };
        peers.lock().unwrap().push(conn.peer);
        connections.spawn(serve(conn, behaviour, events.clone(), Arc::clone(&hung)));
    }
}

enum Out {
    Frame(ServerFrame),
    Close(ErrorFrame),
    Subscribe,
}

/// One connection, as the daemon will do it: a reader loop and a writer loop over the two
/// halves (in one task here, so that aborting it closes the connection).
async fn serve(
    conn: Connection,
    behaviour: Behaviour,
    events: broadcast::Sender<Event>,
    hung: Arc<Notify>,
) {
    let (mut reader, mut writer) = conn.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let read_loop = async move {
        loop {
            match reader.recv().await {
                Ok(Some(ClientFrame::Request { id, request })) => {
                    if behaviour.hang
                        && matches!(request, Request::ListApps | Request::AddRule { .. })
                    {
                        hung.notify_one();
                        continue;
                    }
                    let subscribe = request == Request::Subscribe;
                    let reply = answer(&request, behaviour.generation);
                    if out_tx
                        .send(Out::Frame(ServerFrame::Response { id, reply }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if subscribe && out_tx.send(Out::Subscribe).await.is_err() {
                        return;
                    }
                }
                Ok(Some(ClientFrame::Hello { .. })) => {
                    let e = ErrorFrame::new(ErrorCode::BadFrame, "bad frame: a second hello");
                    let _ = out_tx.send(Out::Close(e)).await;
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    if let Some(frame) = e.to_error_frame() {
                        let _ = out_tx.send(Out::Close(frame)).await;
                    }
                    return;
                }
            }
        }
    };
    let write_loop = async move {
        let mut subscription: Option<broadcast::Receiver<Event>> = None;
        loop {
            let out = tokio::select! {
                out = out_rx.recv() => match out {
                    Some(out) => out,
                    None => return,
                },
                event = async {
                    match subscription.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match event {
                    Ok(event) => Out::Frame(ServerFrame::Event { event }),
                    Err(_) => return,
                },
            };
            match out {
                Out::Frame(frame) => {
                    if writer.send(&frame).await.is_err() {
                        return;
                    }
                }
                Out::Close(error) => {
                    let _ = writer.send_error_and_close(error).await;
                    return;
                }
                Out::Subscribe => {
                    subscription = Some(events.subscribe());
                    let event = Event::AppAdded {
                        app: app(&format!("gen-{}", behaviour.generation)),
                    };
                    if writer.send(&ServerFrame::Event { event }).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::join!(read_loop, write_loop);
}

/// A canned app profile.
pub fn app(key: &str) -> AppInfo {
    AppInfo {
        key: key.to_owned(),
        kind: AppKind::Executable,
        name: key.to_owned(),
        created_unix_ms: 0,
        last_seen_unix_ms: 0,
        overrides: 0,
        rules: 0,
    }
}

fn answer(request: &Request, generation: u32) -> Reply {
    match request {
        Request::Status => Reply::Ok(Response::Status(Status {
            version: "fake".into(),
            protocol_version: PROTOCOL_VERSION,
            uptime_secs: 0,
            pid: generation,
            enforcement: EnforcementState::Off {
                reason: "fake daemon".into(),
            },
            apps: 0,
            rules: 0,
            clients: 0,
            attribution: None,
        })),
        Request::ShowApp { app: key } => Reply::Ok(Response::App {
            app: app(key),
            settings: SettingsView {
                app: Some(key.clone()),
                entries: Vec::new(),
            },
            rules: Vec::new(),
        }),
        Request::ListApps => Reply::Ok(Response::Apps(vec![app(&format!("gen-{generation}"))])),
        Request::Subscribe => Reply::Ok(Response::Subscribed),
        _ => Reply::Err(ErrorFrame::new(
            ErrorCode::NotFound,
            "the fake daemon knows nothing of that",
        )),
    }
}

/// The `pid` a fake daemon put in its status (its generation).
pub fn generation_of(response: &Response) -> u32 {
    match response {
        Response::Status(status) => status.pid,
        other => panic!("expected a status, got {other:?}"),
    }
}
