//! Peers of other users against a real server: refused outsiders (told why, and logged),
//! accepted group members (effective or supplementary group), outsiders stopped by the socket
//! mode before the server sees them, and a root-only server; and a client refusing a server
//! process that is not root. The other users are played by this very binary, copied to a
//! world-readable place and re-executed under `setpriv` with `PORTCULLIS_IPC_TEST_CHILD_SOCKET`
//! set (it then acts as a client and prints the outcome) or `PORTCULLIS_IPC_TEST_CHILD_LISTEN`
//! (it then listens on a plain socket). Needs root: without it each case prints
//! `SKIPPED (needs root): <case>`, and under CI (`CI=true`/`1`) the binary fails instead.
//! Own `main` (no libtest) so the child modes need no fake test; it reads libtest's options
//! (see `common::args`) and prints libtest's summary line; cases run one after another and a
//! failure fails the binary.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed step must fail the test at once, with its message"
)]

#[path = "common/mod.rs"]
#[expect(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "shared with the `ipc` tests, which use all of it"
)]
mod common;

use std::io::{Read as _, Write};
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_ipc::{Client, ClientConfig, IpcError, PeerInfo, ServerConfig};
use portcullis_protocol::Request;

use common::{Behaviour, FakeDaemon, GROUP, args};

const CHILD_ENV: &str = "PORTCULLIS_IPC_TEST_CHILD_SOCKET";
const LISTEN_ENV: &str = "PORTCULLIS_IPC_TEST_CHILD_LISTEN";
const OTHER_UID: u32 = 4243;
const OTHER_GID: u32 = 4244;

type Case = (&'static str, fn(&Lab));

const CASES: [Case; 7] = [
    (
        "an_outsider_is_refused_told_why_and_logged",
        an_outsider_is_refused_told_why_and_logged,
    ),
    (
        "a_member_by_effective_group_is_accepted",
        a_member_by_effective_group_is_accepted,
    ),
    (
        "a_member_by_supplementary_group_is_accepted",
        a_member_by_supplementary_group_is_accepted,
    ),
    (
        "the_socket_mode_stops_outsiders_before_the_server_sees_them",
        the_socket_mode_stops_outsiders_before_the_server_sees_them,
    ),
    (
        "a_root_only_server_refuses_group_members",
        a_root_only_server_refuses_group_members,
    ),
    (
        "many_refused_peers_do_not_stop_the_accept_loop",
        many_refused_peers_do_not_stop_the_accept_loop,
    ),
    (
        "the_client_refuses_a_server_process_not_running_as_root",
        the_client_refuses_a_server_process_not_running_as_root,
    ),
];

fn main() -> ExitCode {
    if let Some(socket) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&socket));
    }
    if let Some(socket) = std::env::var_os(LISTEN_ENV) {
        return listening_child(Path::new(&socket));
    }
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", args::USAGE);
            return ExitCode::from(101);
        }
    };
    if args.help {
        println!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|(name, _)| args.selects(name))
        .collect();
    let filtered_out = CASES.len() - selected.len();
    if args.list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }

    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    // Every case plays other users and owns sockets by root. Without root each case is
    // skipped (a SKIPPED line on stderr) or, under CI, fails the binary.
    let lab = nix::unistd::geteuid()
        .is_root()
        .then(|| Lab::new(Logs::install()));
    let mut failed = Vec::new();
    for (name, case) in &selected {
        let ok = match &lab {
            Some(lab) => std::panic::catch_unwind(AssertUnwindSafe(|| case(lab))).is_ok(),
            None => {
                // Panics under CI; otherwise prints the SKIPPED line.
                let _root = common::root_or_skip(name);
                true
            }
        };
        if args.quiet {
            print!("{}", if ok { "." } else { "F" });
        } else {
            println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        }
        if !ok {
            failed.push(*name);
        }
    }
    if args.quiet {
        println!();
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    let passed = selected.len() - failed.len();
    println!(
        "\n{}\n",
        args::summary(passed, failed.len(), filtered_out, started.elapsed())
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The other child: a server that is not root. It binds `socket` (plain Unix socket, no
/// handshake), says `LISTENING`, and keeps the socket until its stdin closes.
fn listening_child(socket: &Path) -> ExitCode {
    let listener = match std::os::unix::net::UnixListener::bind(socket) {
        Ok(listener) => listener,
        Err(e) => {
            println!("ERR bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("LISTENING");
    let mut rest = Vec::new();
    let _ignored = std::io::stdin().read_to_end(&mut rest);
    drop(listener);
    ExitCode::SUCCESS
}

/// The child: connect as whoever we were started as, make one call, print the outcome.
fn child(socket: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("ERR runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = runtime.block_on(async {
        match Client::connect(ClientConfig::new(socket, "peer-auth-child")).await {
            Ok(mut client) => match client.call(Request::Status).await {
                Ok(response) => format!("OK {}", common::generation_of(&response)),
                Err(e) => format!("CALL-ERR {e:?}"),
            },
            Err(IpcError::Refused(frame)) => format!("REFUSED {:?} {}", frame.code, frame.message),
            Err(e @ IpcError::PermissionDenied { .. }) => format!("EACCES {e}"),
            Err(e) => format!("ERR {e:?}"),
        }
    });
    println!("{line}");
    ExitCode::SUCCESS
}

/// Log lines written by the crate, captured for assertions.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn install() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .init();
        logs
    }

    fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[mark..]).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The copied test executable, runnable by other users, and the captured logs.
struct Lab {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    logs: Logs,
}

impl Lab {
    fn new(logs: Logs) -> Lab {
        // The build directory may be under /root (0700): other users could not run the
        // binary from there.
        let dir = common::open_dir();
        let exe = dir.path().join("peer-auth-child");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Lab {
            _dir: dir,
            exe,
            logs,
        }
    }

    /// Runs the child under `setpriv` with these id options; its one-line outcome.
    async fn run_as(&self, socket: &Path, ids: &[String]) -> String {
        let out = tokio::process::Command::new("setpriv")
            .args(ids)
            .arg("--")
            .arg(&self.exe)
            .env(CHILD_ENV, socket)
            .output()
            .await
            .expect("could not run setpriv (util-linux)");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success(),
            "child {ids:?} failed: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

fn the_client_refuses_a_server_process_not_running_as_root(lab: &Lab) {
    block_on(async {
        use tokio::io::AsyncBufReadExt as _;

        // A directory the other user may bind in, and its server: a plain socket, no helper.
        let dir = common::open_dir();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::os::unix::fs::chown(&run, Some(OTHER_UID), Some(OTHER_GID)).unwrap();
        let path = run.join("fake.sock");
        let mut server = tokio::process::Command::new("setpriv")
            .args(ids(OTHER_GID, None))
            .arg("--")
            .arg(&lab.exe)
            .env(LISTEN_ENV, &path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("could not run setpriv (util-linux)");
        let stdout = server.stdout.take().unwrap();
        let first = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::BufReader::new(stdout).lines().next_line(),
        )
        .await
        .expect("the fake server did not start in time")
        .unwrap();
        assert_eq!(first.as_deref(), Some("LISTENING"));

        // The file passes the owner check (root took it over), so only the check of the
        // process behind it can tell: that process runs as OTHER_UID.
        std::os::unix::fs::lchown(&path, Some(0), Some(0)).unwrap();
        let err = Client::connect(common::client_config(&path))
            .await
            .unwrap_err();
        assert!(
            matches!(err, IpcError::UntrustedServer { uid: OTHER_UID, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to talk to {}: the process serving it runs as uid {OTHER_UID}, not \
                 root; it may not be portcullisd",
                path.display()
            )
        );

        drop(server.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
            .await
            .expect("the fake server did not stop")
            .unwrap();
        assert!(status.success(), "fake server: {status}");
    });
}

fn ids(regid: u32, groups: Option<u32>) -> Vec<String> {
    let mut v = vec![
        "--reuid".to_owned(),
        OTHER_UID.to_string(),
        "--regid".to_owned(),
        regid.to_string(),
    ];
    match groups {
        Some(g) => v.extend(["--groups".to_owned(), g.to_string()]),
        None => v.push("--clear-groups".to_owned()),
    }
    v
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A daemon on a fresh socket, plus a root client connected before anything else happens.
async fn setup(
    config: impl FnOnce(&Path) -> ServerConfig,
) -> (tempfile::TempDir, PathBuf, FakeDaemon, Client) {
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(
        config(&path),
        Behaviour {
            generation: 1,
            hang: false,
        },
    );
    let bystander = Client::connect(common::client_config(&path)).await.unwrap();
    (dir, path, daemon, bystander)
}

async fn still_serving(path: &Path, bystander: &mut Client) {
    assert_eq!(
        common::generation_of(&bystander.call(Request::Status).await.unwrap()),
        1
    );
    let mut fresh = Client::connect(common::client_config(path)).await.unwrap();
    assert_eq!(
        common::generation_of(&fresh.call(Request::Status).await.unwrap()),
        1
    );
}

fn other_peers(daemon: &FakeDaemon) -> Vec<PeerInfo> {
    daemon
        .peers
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|p| p.uid == OTHER_UID)
        .collect()
}

fn an_outsider_is_refused_told_why_and_logged(lab: &Lab) {
    block_on(async {
        let (_dir, path, daemon, mut bystander) = setup(|p| ServerConfig {
            mode: 0o666,
            ..common::server_config(p)
        })
        .await;
        let mark = lab.logs.mark();
        let outcome = lab.run_as(&path, &ids(OTHER_GID, None)).await;
        let expected = format!(
            "REFUSED PermissionDenied permission denied: uid {OTHER_UID} is neither root nor in \
             group {GROUP}; ask an administrator to run `adduser "
        );
        assert!(outcome.starts_with(&expected), "{outcome}");
        assert!(outcome.ends_with(&format!(" {GROUP}`")), "{outcome}");

        let logs = lab.logs.since(mark);
        let refusal = logs
            .lines()
            .find(|l| l.contains("refused a client"))
            .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
        assert!(refusal.contains("INFO"), "{refusal}");
        assert!(refusal.contains(&format!("uid={OTHER_UID}")), "{refusal}");
        assert!(refusal.contains(&format!("gid={OTHER_GID}")), "{refusal}");
        assert!(refusal.contains("pid="), "{refusal}");
        assert!(
            other_peers(&daemon).is_empty(),
            "a refused peer was handed to the daemon"
        );
        still_serving(&path, &mut bystander).await;
    });
}

fn a_member_by_effective_group_is_accepted(lab: &Lab) {
    block_on(async {
        let (_dir, path, daemon, mut bystander) = setup(common::server_config).await;
        let outcome = lab.run_as(&path, &ids(GROUP, None)).await;
        assert_eq!(outcome, "OK 1");
        let peers = other_peers(&daemon);
        assert_eq!(peers.len(), 1, "{peers:?}");
        assert_eq!((peers[0].uid, peers[0].gid), (OTHER_UID, GROUP));
        assert_ne!(peers[0].pid, std::process::id());
        still_serving(&path, &mut bystander).await;
    });
}

fn a_member_by_supplementary_group_is_accepted(lab: &Lab) {
    block_on(async {
        let (_dir, path, daemon, mut bystander) = setup(common::server_config).await;
        let mark = lab.logs.mark();
        let outcome = lab.run_as(&path, &ids(OTHER_GID, Some(GROUP))).await;
        assert_eq!(outcome, "OK 1");
        let peers = other_peers(&daemon);
        assert_eq!(peers.len(), 1, "{peers:?}");
        assert_eq!((peers[0].uid, peers[0].gid), (OTHER_UID, OTHER_GID));
        let logs = lab.logs.since(mark);
        assert!(logs.contains("supplementary group"), "{logs}");
        still_serving(&path, &mut bystander).await;
    });
}

fn the_socket_mode_stops_outsiders_before_the_server_sees_them(lab: &Lab) {
    block_on(async {
        let (_dir, path, daemon, mut bystander) = setup(common::server_config).await;
        let mark = lab.logs.mark();
        let outcome = lab.run_as(&path, &ids(OTHER_GID, None)).await;
        let expected = format!(
            "EACCES permission denied on {}: only root and members of group {GROUP} may talk to \
             portcullisd; ask an administrator to run `sudo adduser $USER {GROUP}`, then log in again",
            path.display()
        );
        assert_eq!(outcome, expected);
        let logs = lab.logs.since(mark);
        assert!(
            !logs.contains(&format!("uid={OTHER_UID}")),
            "the server saw the peer:\n{logs}"
        );
        assert!(other_peers(&daemon).is_empty());
        still_serving(&path, &mut bystander).await;
    });
}

fn a_root_only_server_refuses_group_members(lab: &Lab) {
    block_on(async {
        let (_dir, path, daemon, mut bystander) = setup(|p| ServerConfig {
            mode: 0o666,
            group: None,
            ..common::server_config(p)
        })
        .await;
        let outcome = lab.run_as(&path, &ids(GROUP, Some(GROUP))).await;
        assert_eq!(
            outcome,
            format!(
                "REFUSED PermissionDenied permission denied: uid {OTHER_UID} is not root, and \
                 only root may talk to portcullisd"
            )
        );
        assert!(other_peers(&daemon).is_empty());
        still_serving(&path, &mut bystander).await;
    });
}

fn many_refused_peers_do_not_stop_the_accept_loop(lab: &Lab) {
    block_on(async {
        let (_dir, path, daemon, mut bystander) = setup(|p| ServerConfig {
            mode: 0o666,
            ..common::server_config(p)
        })
        .await;
        let mark = lab.logs.mark();
        let refused = ids(OTHER_GID, None);
        let member = ids(GROUP, None);
        let mut runs = Vec::new();
        for i in 0..8 {
            runs.push(lab.run_as(&path, if i % 4 == 3 { &member } else { &refused }));
        }
        let calls = async {
            for _ in 0..20 {
                assert!(bystander.call(Request::Status).await.is_ok());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (outcomes, ()) = tokio::join!(futures_join_all(runs), calls);
        for (i, outcome) in outcomes.iter().enumerate() {
            if i % 4 == 3 {
                assert_eq!(outcome, "OK 1", "run {i}");
            } else {
                assert!(
                    outcome.starts_with("REFUSED PermissionDenied"),
                    "run {i}: {outcome}"
                );
            }
        }
        let logs = lab.logs.since(mark);
        assert_eq!(
            logs.lines()
                .filter(|l| l.contains("refused a client"))
                .count(),
            6,
            "{logs}"
        );
        assert_eq!(other_peers(&daemon).len(), 2);
        still_serving(&path, &mut bystander).await;
    });
}

/// Runs the futures concurrently, results in order.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, future) in results.iter_mut().zip(futures.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => *slot = Some(out),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}
