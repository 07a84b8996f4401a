//! Unix specifics of the socket: the socket file (parent directory, stale sockets, mode,
//! owner, removal of our own file only), the peer's credentials and the group check (the
//! peer's effective gid, or its supplementary groups from `/proc/<pid>/status`), and the
//! client-side checks that the socket and the process behind it belong to root. It must not
//! speak the protocol or log refusals (the server does), and nothing outside `lib.rs` may
//! select it: the rest of the crate reaches it as `sys`.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use interprocess::local_socket::ListenerOptions;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon;
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, Group, Uid, User};

use crate::error::IpcError;
use crate::server::PeerInfo;

/// Identifies the socket file we created, so that we remove only that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

fn setup_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IpcError {
    let path = path.to_path_buf();
    move |source| IpcError::Setup {
        action,
        path,
        source,
    }
}

/// Creates the socket's directory if missing (0755, whatever the umask) and clears a stale
/// socket: only a socket nobody answers on is removed; a live one or a non-socket is an error.
pub(crate) fn prepare_socket_path(path: &Path) -> Result<(), IpcError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        match fs::symlink_metadata(parent) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(setup_err("create the directory", parent))?;
                fs::set_permissions(parent, fs::Permissions::from_mode(0o755))
                    .map_err(setup_err("set the mode of", parent))?;
            }
            Err(e) => return Err(setup_err("inspect the directory", parent)(e)),
        }
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(setup_err("inspect", path)(e)),
        Ok(meta) if meta.file_type().is_socket() => match probe(path) {
            Ok(Probe::Live) => Err(IpcError::AlreadyRunning {
                path: path.to_path_buf(),
            }),
            Ok(Probe::Stale) => {
                tracing::debug!(path = %path.display(), "removing a stale socket");
                match fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(setup_err("remove the stale socket", path)(e))
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => Err(setup_err("check for a running server on", path)(e)),
        },
        Ok(_) => Err(IpcError::NotASocket {
            path: path.to_path_buf(),
        }),
    }
}

enum Probe {
    Live,
    Stale,
}

/// Whether a server answers on the socket at `path`. Non-blocking, so a live server with a
/// full backlog counts as live instead of hanging the caller.
fn probe(path: &Path) -> io::Result<Probe> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => Ok(Probe::Live),
        Err(Errno::ECONNREFUSED | Errno::ENOENT) => Ok(Probe::Stale),
        Err(e) => Err(e.into()),
    }
}

/// Asks the kernel for `mode` at bind time; the kernel still applies the umask to it, so the
/// file can only come out narrower, and [`secure_socket`] then sets it exactly.
pub(crate) fn with_mode(options: ListenerOptions<'_>, mode: u32) -> ListenerOptions<'_> {
    options.mode(mode)
}

/// Gives the freshly bound socket its owner (root:group) and exact mode, and records which
/// file it is.
pub(crate) fn secure_socket(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<FileId, IpcError> {
    std::os::unix::fs::lchown(path, Some(0), Some(group.unwrap_or(0))).map_err(setup_err(
        "change the owner (to root and the client group) of",
        path,
    ))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(setup_err("set the mode of", path))?;
    let meta = fs::symlink_metadata(path).map_err(setup_err("inspect", path))?;
    Ok(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Removes the socket file if it is still the one we made (a newer server may have replaced it).
pub(crate) fn remove_socket_if_ours(path: &Path, id: FileId) {
    match fs::symlink_metadata(path) {
        Ok(meta)
            if meta.file_type().is_socket() && meta.dev() == id.dev && meta.ino() == id.ino =>
        {
            if let Err(e) = fs::remove_file(path) {
                tracing::debug!(path = %path.display(), error = %e, "could not remove our socket");
            }
        }
        Ok(_) => {
            tracing::debug!(path = %path.display(), "socket path now belongs to someone else; left alone")
        }
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "socket already gone"),
    }
}

/// Whether a failed `accept()` is worth retrying (descriptor or memory exhaustion, a peer
/// that gave up) rather than a broken listener.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
    )
}

/// The group's name, if the system knows it.
pub(crate) fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

/// The user's name, if the system knows it.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The peer's credentials as the kernel recorded them at `connect()`.
pub(crate) fn peer_info(stream: &Stream) -> io::Result<PeerInfo> {
    let creds = stream.peer_creds()?;
    let missing = |what| io::Error::new(io::ErrorKind::Unsupported, format!("peer {what} unknown"));
    let uid = creds.euid().ok_or_else(|| missing("uid"))?;
    let gid = creds.egid().ok_or_else(|| missing("gid"))?;
    let pid = creds.pid().ok_or_else(|| missing("pid"))?;
    let pid = u32::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative peer pid"))?;
    Ok(PeerInfo { uid, gid, pid })
}

/// The outcome of the access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Allowed; the reason is for logs.
    Allowed(&'static str),
    /// Refused.
    Refused,
}

/// Root is always allowed; with a client group, so is a peer whose effective gid is the group
/// or whose supplementary groups (read from `/proc`) contain it.
pub(crate) async fn authorize(peer: PeerInfo, group: Option<u32>) -> Access {
    if peer.uid == 0 {
        return Access::Allowed("root");
    }
    let Some(group) = group else {
        return Access::Refused;
    };
    if peer.gid == group {
        return Access::Allowed("effective group");
    }
    let checked = tokio::task::spawn_blocking(move || in_supplementary_group(peer, group)).await;
    match checked {
        Ok(Ok(true)) => Access::Allowed("supplementary group"),
        Ok(Ok(false)) => Access::Refused,
        Ok(Err(e)) => {
            tracing::debug!(pid = peer.pid, error = %e, "could not read the peer's groups");
            Access::Refused
        }
        Err(e) => {
            tracing::debug!(pid = peer.pid, error = %e, "group check task failed");
            Access::Refused
        }
    }
}

fn in_supplementary_group(peer: PeerInfo, group: u32) -> io::Result<bool> {
    let text = fs::read_to_string(format!("/proc/{}/status", peer.pid))?;
    let status = parse_proc_status(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc status"))?;
    // The pid may have been reused since connect(): trust its groups only if the process
    // there is still the same user as the one the kernel recorded for the socket.
    if status.euid != peer.uid && status.ruid != peer.uid {
        tracing::debug!(
            pid = peer.pid,
            uid = peer.uid,
            "peer pid now belongs to another user"
        );
        return Ok(false);
    }
    Ok(status.groups.contains(&group))
}

/// What the access check needs from `/proc/<pid>/status`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProcStatus {
    /// Real uid.
    pub(crate) ruid: u32,
    /// Effective uid.
    pub(crate) euid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
}

/// Parses the `Uid:` and `Groups:` lines; `None` if either is missing or garbled.
pub(crate) fn parse_proc_status(text: &str) -> Option<ProcStatus> {
    let mut uids = None;
    let mut groups = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            let mut fields = rest.split_whitespace().map(str::parse::<u32>);
            let ruid = fields.next()?.ok()?;
            let euid = fields.next()?.ok()?;
            uids = Some((ruid, euid));
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            let parsed: Result<Vec<u32>, _> = rest.split_whitespace().map(str::parse).collect();
            groups = Some(parsed.ok()?);
        }
    }
    let (ruid, euid) = uids?;
    Some(ProcStatus {
        ruid,
        euid,
        groups: groups?,
    })
}

/// Closes both directions of the connection now, even while another task holds it.
pub(crate) fn shutdown(stream: &Stream) {
    match stream {
        Stream::UdSocket(s) => {
            if let Err(e) = socket::shutdown(s.as_fd().as_raw_fd(), socket::Shutdown::Both)
                && e != Errno::ENOTCONN
            {
                tracing::debug!(error = %e, "shutdown of a connection failed");
            }
        }
    }
}

/// Client side, before connecting: the path must be a socket, owned by root unless the
/// caller (a test) says otherwise.
pub(crate) fn check_socket(path: &Path, require_root_owner: bool) -> Result<(), IpcError> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(IpcError::NotRunning {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(IpcError::PermissionDenied {
            path: path.to_path_buf(),
            group: "portcullis".to_owned(),
            source: e,
        }),
        Err(e) => Err(IpcError::Connect {
            path: path.to_path_buf(),
            source: e,
        }),
        Ok(meta) if !meta.file_type().is_socket() => Err(IpcError::NotASocket {
            path: path.to_path_buf(),
        }),
        Ok(meta) if require_root_owner && meta.uid() != 0 => Err(IpcError::UntrustedSocket {
            path: path.to_path_buf(),
            owner_uid: meta.uid(),
        }),
        Ok(_) => Ok(()),
    }
}

/// The group allowed on the socket, by name where known, for the "join this group" advice.
pub(crate) fn socket_group(path: &Path) -> String {
    match fs::metadata(path) {
        Ok(meta) if meta.gid() != 0 => {
            group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string())
        }
        _ => "portcullis".to_owned(),
    }
}

/// Client side, after connecting: the process behind the socket must run as root.
pub(crate) fn check_server(stream: &Stream, path: &Path) -> Result<(), IpcError> {
    let creds = stream.peer_creds().map_err(|source| IpcError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    match creds.euid() {
        Some(0) => Ok(()),
        Some(uid) => Err(IpcError::UntrustedServer {
            path: path.to_path_buf(),
            uid,
        }),
        None => Err(IpcError::Unsupported {
            what: "checking the server's user",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uid_and_groups_lines() {
        let text = "Name:\tcat\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t100\t100\t100\n\
                    Groups:\t4 24 4242 \nNgid:\t0\n";
        let s = parse_proc_status(text).unwrap();
        assert_eq!(
            s,
            ProcStatus {
                ruid: 1000,
                euid: 1001,
                groups: vec![4, 24, 4242]
            }
        );
    }

    #[test]
    fn empty_groups_line_is_no_groups_and_garbage_is_none() {
        let s = parse_proc_status("Uid:\t5\t5\t5\t5\nGroups:\t\n").unwrap();
        assert!(s.groups.is_empty());
        assert_eq!(parse_proc_status("Uid:\t5\t5\t5\t5\n"), None);
        assert_eq!(parse_proc_status("Groups:\t1\n"), None);
        assert_eq!(parse_proc_status("Uid:\tx\t5\nGroups:\t1\n"), None);
        assert_eq!(parse_proc_status("Uid:\t5\t5\nGroups:\t1 two\n"), None);
        assert_eq!(parse_proc_status(""), None);
    }

    #[test]
    fn own_status_parses() {
        let text = fs::read_to_string("/proc/self/status").unwrap();
        let s = parse_proc_status(&text).unwrap();
        assert_eq!(s.euid, nix::unistd::geteuid().as_raw());
    }
}
