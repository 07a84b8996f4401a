//! Undoes the system changes a crashed run left behind. It is idempotent and safe to run at
//! any time: at every start, and as `portcullisd recover` (the service manager's
//! ExecStopPost). Today the helper's only system change is its IPC socket file; the firewall
//! rules and eBPF programs of the enforcement layer add their undo here.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::Context;

use crate::paths::Paths;

/// Removes what a dead helper left; returns one line per thing undone (empty: nothing to do).
/// A live helper's files are left alone.
pub fn recover(paths: &Paths) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    if remove_stale_socket(&paths.socket)? {
        done.push(format!("removed stale socket {}", paths.socket.display()));
    }
    if done.is_empty() {
        tracing::info!("recover: nothing to undo");
    }
    Ok(done)
}

/// Removes `path` if it is a socket nobody listens on. A live socket is an error: another
/// helper runs, and recovering under it would break it. Anything else at the path is left
/// alone and reported.
fn remove_stale_socket(path: &Path) -> anyhow::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{} exists but is not a socket; refusing to remove it",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => anyhow::bail!(
            "a helper is still listening on {}; stop it first (systemctl stop portcullisd)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            tracing::info!(socket = %path.display(), "removed stale socket");
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("cannot check socket {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            state_dir: dir.join("state"),
            socket: dir.join("helper.sock"),
        }
    }

    #[test]
    fn a_stale_socket_is_removed_and_a_second_run_has_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        drop(std::os::unix::net::UnixListener::bind(&p.socket).unwrap());
        assert!(p.socket.exists(), "binding left the socket file");
        assert_eq!(recover(&p).unwrap().len(), 1);
        assert!(!p.socket.exists());
        assert!(recover(&p).unwrap().is_empty());
    }

    #[test]
    fn a_live_socket_and_a_regular_file_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let _live = std::os::unix::net::UnixListener::bind(&p.socket).unwrap();
        assert!(
            recover(&p)
                .unwrap_err()
                .to_string()
                .contains("still listening")
        );
        assert!(p.socket.exists());
        drop(_live);
        std::fs::remove_file(&p.socket).unwrap();
        std::fs::write(&p.socket, b"data").unwrap();
        assert!(
            recover(&p)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
        assert_eq!(std::fs::read(&p.socket).unwrap(), b"data");
    }
}
