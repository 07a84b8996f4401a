//! Undoes the system changes a crashed run left behind. It is idempotent and safe to run at
//! any time: at every start, and as `portcullisd recover` (the service manager's
//! ExecStopPost). Today the helper's only system change is its IPC socket file; the firewall
//! rules and eBPF programs of the enforcement layer add their undo here.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::Context;

use crate::Resolved;
use crate::state_lock::StateLock;

/// The file that says this helper turned conntrack accounting on (and must turn it off).
fn accounting_marker(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("conntrack-accounting-was-off")
}

/// Turns conntrack's byte accounting on (for the bytes of UDP flows), noting first in the
/// state directory that it was off, so that a stop — or the next start after a crash — turns
/// it off again. A failure leaves UDP bytes unknown, nothing else.
pub fn enable_accounting(state_dir: &Path) {
    let marker = accounting_marker(state_dir);
    // Noted before the change: a crash right after it still finds the note.
    let noted = std::fs::write(&marker, "1\n");
    match portcullis_intercept::enable_accounting() {
        Ok(Some(false)) if noted.is_ok() => tracing::info!("conntrack accounting turned on"),
        Ok(Some(false)) => {
            tracing::warn!("cannot note conntrack accounting's state; turning it back off");
            let _ = portcullis_intercept::restore_accounting(false);
        }
        Ok(Some(true) | None) => {
            let _ = std::fs::remove_file(&marker);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&marker);
            tracing::warn!(error = %e, "bytes of UDP flows stay unknown");
        }
    }
}

/// Turns conntrack accounting back off if this helper turned it on.
pub fn restore_accounting(state_dir: &Path) {
    if let Some(line) = undo_accounting(state_dir) {
        tracing::info!("{line}");
    }
}

fn undo_accounting(state_dir: &Path) -> Option<String> {
    let marker = accounting_marker(state_dir);
    if !marker.exists() {
        return None;
    }
    match portcullis_intercept::restore_accounting(false) {
        Ok(()) => {
            let _ = std::fs::remove_file(&marker);
            Some("turned conntrack accounting back off".to_owned())
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot turn conntrack accounting back off");
            None
        }
    }
}

/// Removes what a dead helper left; returns one line per thing undone (empty: nothing to do).
/// A live helper's files are left alone. The caller that is about to run a helper passes
/// the state lock it holds; `portcullisd recover` passes `None` and takes the lock itself,
/// so it never undoes the changes of a helper that runs.
pub fn recover(resolved: &Resolved, held: Option<&StateLock>) -> anyhow::Result<Vec<String>> {
    let paths = &resolved.paths;
    let _lock = match held {
        Some(_) => None,
        None if paths.state_dir.is_dir() => Some(StateLock::acquire(&paths.state_dir)?),
        None => None,
    };
    let mut done = Vec::new();
    if resolved.intercept.enabled {
        let removed = portcullis_intercept::recover()
            .context("cannot remove the firewall rules a crashed run left")?;
        for item in &removed.items {
            done.push(format!("removed firewall {item}"));
        }
    }
    if let Some(line) = undo_accounting(&paths.state_dir) {
        done.push(line);
    }
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
    match probe(path) {
        Ok(()) => anyhow::bail!(
            "a helper is still listening on {}; stop it first",
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

/// Connects without blocking: a live helper whose backlog is full answers `EAGAIN`, which
/// counts as live (a blocking connect would hang there).
fn probe(path: &Path) -> std::io::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINPROGRESS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files in `dir`; interception off, so the unit tests never touch netfilter.
    fn paths(dir: &Path) -> Resolved {
        Resolved {
            paths: crate::paths::Paths {
                state_dir: dir.join("state"),
                socket: dir.join("helper.sock"),
            },
            group: "portcullis".into(),
            intercept: crate::config::InterceptSection {
                enabled: false,
                ..crate::config::InterceptSection::default()
            },
            attribution: crate::config::AttributionSection::default(),
            dns: crate::dns::DnsSection::default(),
            history: crate::history::HistorySection::default(),
            intel: crate::config::IntelSection::default(),
            first_start: crate::config::FirstStartSection::default(),
            updates: crate::updates::UpdatesSection::default(),
        }
    }

    #[test]
    fn a_stale_socket_is_removed_and_a_second_run_has_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        drop(std::os::unix::net::UnixListener::bind(&p.paths.socket).unwrap());
        assert!(p.paths.socket.exists(), "binding left the socket file");
        assert_eq!(recover(&p, None).unwrap().len(), 1);
        assert!(!p.paths.socket.exists());
        assert!(recover(&p, None).unwrap().is_empty());
    }

    #[test]
    fn a_live_socket_and_a_regular_file_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let _live = std::os::unix::net::UnixListener::bind(&p.paths.socket).unwrap();
        assert!(
            recover(&p, None)
                .unwrap_err()
                .to_string()
                .contains("still listening")
        );
        assert!(p.paths.socket.exists());
        drop(_live);
        std::fs::remove_file(&p.paths.socket).unwrap();
        std::fs::write(&p.paths.socket, b"data").unwrap();
        assert!(
            recover(&p, None)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
        assert_eq!(std::fs::read(&p.paths.socket).unwrap(), b"data");
    }
}
