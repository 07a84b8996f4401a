//! The socket file: served only from a directory only root can write (not a symbolic link,
//! not group- or world-writable, not another user's), created with exact mode and owner
//! whatever the umask, stale sockets replaced, anything else left alone, removed on drop only
//! if still ours; and the client's checks of the file before it connects.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;
use std::path::Path;

use portcullis_ipc::{Client, ClientConfig, IpcError, Server, ServerConfig};
use portcullis_protocol::Request;

use crate::common::{self, Behaviour, FakeDaemon, GROUP};

/// Restores the umask when dropped.
struct Umask(nix::sys::stat::Mode);

impl Umask {
    fn set(bits: u32) -> Umask {
        Umask(nix::sys::stat::umask(
            nix::sys::stat::Mode::from_bits_truncate(bits),
        ))
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.0);
    }
}

/// Set in the child process that runs [`mode_and_owner_are_set_exactly_whatever_the_umask`]
/// on its own.
const UMASK_CHILD_ENV: &str = "PORTCULLIS_IPC_TEST_UMASK_CHILD";

/// The umask belongs to the whole process, and the other tests of this binary run at the same
/// time in other threads, creating directories and sockets. So this test re-executes the test
/// binary with only itself selected and runs the case there, where the umask it sets touches
/// nothing else.
#[test]
fn mode_and_owner_are_set_exactly_whatever_the_umask() {
    common::require_root!();
    if std::env::var_os(UMASK_CHILD_ENV).is_some() {
        umask_case();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "socket_file::mode_and_owner_are_set_exactly_whatever_the_umask",
            "--exact",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(UMASK_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the umask case failed in its child process:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed;"),
        "the child process did not run the umask case:\n{stdout}\n{stderr}"
    );
}

/// The umask case proper; runs alone in its process.
fn umask_case() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = common::open_dir();
        let path = dir.path().join("new-dir").join("portcullisd.sock");
        let server = {
            let _umask = Umask::set(0o077);
            Server::bind(ServerConfig {
                mode: 0o666,
                ..common::server_config(&path)
            })
            .unwrap()
        };
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o666);
        assert_eq!((meta.uid(), meta.gid()), (0, GROUP));
        let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(
            parent.mode() & 0o7777,
            0o755,
            "the socket directory is created 0755"
        );
        drop(server);
        assert!(!path.exists(), "dropping the server removes its socket");

        let root_only = Server::bind(ServerConfig::new(&path)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o660);
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "without a group the socket is root:root"
        );
        assert_eq!(root_only.path(), path.as_path());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();

    // Stale: bound, then its process "died" (std does not unlink on drop).
    drop(StdListener::bind(&path).unwrap());
    assert!(path.exists());
    let err = Client::connect(common::client_config(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IpcError::NotRunning { .. }),
        "a stale socket means not running: {err:?}"
    );
    let daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    assert!(client.call(Request::Status).await.is_ok());
    daemon.stop().await;

    // Live: someone answers, so binding fails and their socket stays.
    let live = StdListener::bind(&path).unwrap();
    let err = Server::bind(common::server_config(&path)).unwrap_err();
    assert!(matches!(err, IpcError::AlreadyRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "another portcullisd is already listening on {}",
            path.display()
        )
    );
    let id = std::fs::symlink_metadata(&path).unwrap().ino();
    drop(live);
    assert_eq!(
        std::fs::symlink_metadata(&path).unwrap().ino(),
        id,
        "the live socket was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_but_a_socket_at_the_path_is_left_alone() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();

    std::fs::write(&path, b"precious").unwrap();
    let err = Server::bind(common::server_config(&path)).unwrap_err();
    assert!(matches!(err, IpcError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    let err = Client::connect(common::client_config(&path))
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::NotASocket { .. }), "{err:?}");
    std::fs::remove_file(&path).unwrap();

    std::fs::create_dir(&path).unwrap();
    let err = Server::bind(common::server_config(&path)).unwrap_err();
    assert!(matches!(err, IpcError::NotASocket { .. }), "{err:?}");
    assert!(path.is_dir());
    std::fs::remove_dir(&path).unwrap();

    std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
    let err = Server::bind(common::server_config(&path)).unwrap_err();
    assert!(matches!(err, IpcError::NotASocket { .. }), "{err:?}");
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_leaves_a_socket_that_is_no_longer_ours() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let server = Server::bind(common::server_config(&path)).unwrap();
    // Someone (a newer helper) replaced the socket.
    std::fs::remove_file(&path).unwrap();
    let newer = StdListener::bind(&path).unwrap();
    drop(server);
    assert!(
        path.exists(),
        "the newer socket must survive the old server's drop"
    );
    drop(newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_socket_not_owned_by_root() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    std::os::unix::fs::lchown(&path, Some(4243), None).unwrap();

    let err = Client::connect(common::client_config(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpcError::UntrustedSocket {
                owner_uid: 4243,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("owned by uid 4243, not root"),
        "{err}"
    );

    let relaxed = ClientConfig {
        require_root_owner: false,
        ..common::client_config(&path)
    };
    let mut client = Client::connect(relaxed).await.unwrap();
    assert!(client.call(Request::Status).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_socket_means_the_helper_is_not_running() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let err = Client::connect(common::client_config(&path))
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::NotRunning { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("portcullisd is not running")
            && text.contains(&path.display().to_string())
            && text.contains("`sudo systemctl start portcullisd` or `sudo make run`"),
        "{text}"
    );
}

#[test]
fn binding_outside_a_runtime_is_an_error_not_a_panic() {
    common::require_root!();
    let dir = common::open_dir();
    let err = Server::bind(common::server_config(&common::socket_path(dir.path()))).unwrap_err();
    assert!(matches!(err, IpcError::NoRuntime), "{err:?}");
}

#[test]
fn the_socket_mode_keeps_only_permission_bits() {
    common::require_root!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = common::open_dir();
        let path = common::socket_path(dir.path());
        let _server = Server::bind(ServerConfig {
            mode: 0o4660,
            ..common::server_config(&path)
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o660);
    });
}

/// The full refusal for `dir`.
fn unsafe_dir_message(dir: &Path, reason: &str) -> String {
    format!(
        "refusing to serve in {}: {reason}; the socket's directory must be a real directory \
         owned by root and writable by root only",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_others_could_write_is_refused_and_left_as_it_was() {
    common::require_root!();
    let dir = common::open_dir();
    let run = dir.path().join("run");
    let path = run.join("portcullisd.sock");
    std::fs::create_dir(&run).unwrap();
    // A stale socket: in a safe directory it would be removed; here it must stay.
    drop(StdListener::bind(&path).unwrap());
    let stale = std::fs::symlink_metadata(&path).unwrap().ino();
    for (mode, owner, reason) in [
        (0o775, 0, "it is writable by its group"),
        (0o1770, 0, "it is writable by its group"),
        (0o777, 0, "it is writable by others"),
        (0o1777, 0, "it is writable by others"),
        (0o757, 0, "it is writable by others"),
        (0o755, 4243, "it is owned by uid 4243, not root"),
        (0o700, 4243, "it is owned by uid 4243, not root"),
    ] {
        std::os::unix::fs::chown(&run, Some(owner), Some(0)).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Server::bind(common::server_config(&path)).unwrap_err();
        assert!(
            matches!(err, IpcError::UnsafeDirectory { .. }),
            "{mode:o} {owner}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            unsafe_dir_message(&run, reason),
            "{mode:o} {owner}"
        );
        assert_eq!(
            std::fs::symlink_metadata(&path).unwrap().ino(),
            stale,
            "{mode:o} {owner}: the socket path was touched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_world_writable_directory_like_tmp_is_refused() {
    common::require_root!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.path().join("portcullisd.sock");
    let err = Server::bind(common::server_config(&path)).unwrap_err();
    assert_eq!(
        err.to_string(),
        unsafe_dir_message(dir.path(), "it is writable by others")
    );
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "a socket was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_a_symlink_or_not_a_directory_is_refused() {
    common::require_root!();
    let dir = common::open_dir();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let err = Server::bind(common::server_config(&link.join("portcullisd.sock"))).unwrap_err();
    assert!(matches!(err, IpcError::UnsafeDirectory { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        unsafe_dir_message(
            &link,
            "it is a symbolic link (give the path of the directory it points to)"
        )
    );
    assert_eq!(
        std::fs::read_dir(&real).unwrap().count(),
        0,
        "something was made behind the link"
    );

    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = Server::bind(common::server_config(&file.join("portcullisd.sock"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        unsafe_dir_message(&file, "it is not a directory")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_only_directories_are_served_in() {
    common::require_root!();
    for mode in [0o755, 0o750, 0o700] {
        let dir = common::open_dir();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(mode)).unwrap();
        let path = run.join("portcullisd.sock");
        let daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
        let mut client = Client::connect(common::client_config(&path)).await.unwrap();
        assert!(client.call(Request::Status).await.is_ok(), "{mode:o}");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o660, 0, GROUP)
        );
        let dir_mode = std::fs::metadata(&run).unwrap().mode() & 0o7777;
        assert_eq!(dir_mode, mode, "an existing directory keeps its mode");
        daemon.stop().await;
    }
}
