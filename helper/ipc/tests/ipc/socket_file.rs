//! The socket file: created with exact mode and owner whatever the umask, stale sockets
//! replaced, anything else left alone, removed on drop only if still ours; and the client's
//! checks of the file before it connects.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_and_owner_are_set_exactly_whatever_the_umask() {
    common::require_root();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
    common::require_root();
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
    common::require_root();
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
    common::require_root();
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
    common::require_root();
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
    common::require_root();
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
    common::require_root();
    let dir = common::open_dir();
    let err = Server::bind(common::server_config(&common::socket_path(dir.path()))).unwrap_err();
    assert!(matches!(err, IpcError::NoRuntime), "{err:?}");
}

#[test]
fn the_socket_mode_keeps_only_permission_bits() {
    common::require_root();
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
