//! Unix specifics of the socket: the socket file (a parent directory only root can write,
//! stale sockets, mode and owner set without following symbolic links, removal of our own
//! file only), the peer's credentials and the group check (the peer's effective gid, or its
//! supplementary groups as the kernel recorded them at `connect()`, `SO_PEERGROUPS`;
//! `/proc/<pid>/status` only on kernels without it), and the client-side checks that the
//! socket and the process behind it belong to root. It must not speak the protocol or log
//! refusals (the server does), and nothing outside `lib.rs` may select it: the rest of the
//! crate reaches it as `sys`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::Path;

use interprocess::local_socket::ListenerOptions;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon;
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode};
use nix::unistd::{Gid, Group, Uid, UnlinkatFlags, User};

use crate::error::IpcError;
use crate::server::PeerInfo;

/// Identifies the socket file we created, so that we secure and remove only that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: libc::dev_t,
    ino: libc::ino_t,
}

impl FileId {
    fn of(stat: &FileStat) -> FileId {
        FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

/// The socket's directory, opened without following a symbolic link and checked by
/// [`prepare_socket_path`]. The socket file is then inspected, owned and moded relative to
/// this descriptor, never through a path that could be redirected.
#[derive(Debug)]
pub(crate) struct SocketDir {
    /// The directory (opened `O_DIRECTORY | O_NOFOLLOW`).
    fd: OwnedFd,
    /// The socket's name inside it.
    name: OsString,
}

fn setup_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IpcError {
    let path = path.to_path_buf();
    move |source| IpcError::Setup {
        action,
        path,
        source,
    }
}

fn unsafe_dir(path: &Path, reason: impl Into<String>) -> IpcError {
    IpcError::UnsafeDirectory {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn is_type(stat: &FileStat, kind: libc::mode_t) -> bool {
    stat.st_mode & libc::S_IFMT == kind
}

/// Prepares the socket's directory and clears a stale socket.
///
/// A missing directory is created (0755, whatever the umask). The directory must be a real
/// directory, not a symbolic link; when we run as root it must also be owned by root and
/// writable by nobody else (not by its group, not by others, sticky bit or not), because
/// whoever can write it could swap the socket for something else while root sets it up.
/// Only a socket nobody answers on is removed; a live one or a non-socket is an error.
pub(crate) fn prepare_socket_path(path: &Path) -> Result<SocketDir, IpcError> {
    let name = path
        .file_name()
        .ok_or_else(|| {
            setup_err("use as a socket path", path)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it does not end in a file name",
            ))
        })?
        .to_os_string();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let created = match fs::symlink_metadata(parent) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(unsafe_dir(
                parent,
                "it is a symbolic link (give the path of the directory it points to)",
            ));
        }
        Ok(meta) if !meta.is_dir() => return Err(unsafe_dir(parent, "it is not a directory")),
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(setup_err("create the directory", parent))?;
            true
        }
        Err(e) => return Err(setup_err("inspect the directory", parent)(e)),
    };
    // O_NOFOLLOW: had the directory been swapped for a symlink since the look above, this
    // fails instead of opening wherever the link points.
    let fd = nix::fcntl::open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP => unsafe_dir(parent, "it is a symbolic link"),
        Errno::ENOTDIR => unsafe_dir(parent, "it is not a directory"),
        e => setup_err("open the directory", parent)(e.into()),
    })?;
    let stat = nix::sys::stat::fstat(&fd)
        .map_err(|e| setup_err("inspect the directory", parent)(e.into()))?;
    if nix::unistd::geteuid().is_root() {
        check_root_dir(parent, &stat)?;
    }
    if created {
        // DirBuilder's mode went through the umask (which can only narrow it, so the checks
        // above hold either way); set it exactly, on the descriptor that was checked.
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o755))
            .map_err(|e| setup_err("set the mode of", parent)(e.into()))?;
    }
    let dir = SocketDir { fd, name };
    clear_stale_socket(&dir, path)?;
    Ok(dir)
}

/// A directory root may serve in: owned by root and writable by root alone.
fn check_root_dir(path: &Path, stat: &FileStat) -> Result<(), IpcError> {
    if !is_type(stat, libc::S_IFDIR) {
        return Err(unsafe_dir(path, "it is not a directory"));
    }
    if stat.st_uid != 0 {
        return Err(unsafe_dir(
            path,
            format!("it is owned by uid {}, not root", stat.st_uid),
        ));
    }
    if stat.st_mode & libc::S_IWOTH != 0 {
        return Err(unsafe_dir(path, "it is writable by others"));
    }
    if stat.st_mode & libc::S_IWGRP != 0 {
        return Err(unsafe_dir(path, "it is writable by its group"));
    }
    Ok(())
}

/// Removes a stale socket at the path; a live one or anything else is an error.
fn clear_stale_socket(dir: &SocketDir, path: &Path) -> Result<(), IpcError> {
    match nix::sys::stat::fstatat(&dir.fd, dir.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(setup_err("inspect", path)(e.into())),
        Ok(stat) if is_type(&stat, libc::S_IFSOCK) => match probe(path) {
            Ok(Probe::Live) => Err(IpcError::AlreadyRunning {
                path: path.to_path_buf(),
            }),
            Ok(Probe::Stale) => {
                tracing::debug!(path = %path.display(), "removing a stale socket");
                match nix::unistd::unlinkat(
                    &dir.fd,
                    dir.name.as_os_str(),
                    UnlinkatFlags::NoRemoveDir,
                ) {
                    Ok(()) | Err(Errno::ENOENT) => Ok(()),
                    Err(e) => Err(setup_err("remove the stale socket", path)(e.into())),
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

/// Asks the kernel for `mode` at bind time (interprocess `fchmod`s the socket descriptor
/// before `bind()`, so the file never appears wider than this); the kernel still applies the
/// umask, so the file can only come out narrower, and [`secure_socket`] then sets it exactly.
pub(crate) fn with_mode(options: ListenerOptions<'_>, mode: u32) -> ListenerOptions<'_> {
    options.mode(mode)
}

/// Identifies the socket just bound in `dir`, before anything is done to it. Fails, leaving
/// the entry alone, if it is not a socket.
pub(crate) fn bound_socket(dir: &SocketDir, path: &Path) -> Result<FileId, IpcError> {
    let stat = nix::sys::stat::fstatat(&dir.fd, dir.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| setup_err("inspect the new socket", path)(e.into()))?;
    if !is_type(&stat, libc::S_IFSOCK) {
        return Err(IpcError::SocketReplaced {
            path: path.to_path_buf(),
        });
    }
    Ok(FileId::of(&stat))
}

/// Gives the freshly bound socket `id` its owner (root:group) and exact mode without following
/// a symbolic link, then checks that the path still leads to that very socket with that owner
/// and mode.
pub(crate) fn secure_socket(
    dir: &SocketDir,
    path: &Path,
    id: FileId,
    mode: u32,
    group: Option<u32>,
) -> Result<(), IpcError> {
    let name = dir.name.as_os_str();
    let gid = group.unwrap_or(0);
    let still_ours = |stat: &FileStat| is_type(stat, libc::S_IFSOCK) && FileId::of(stat) == id;
    let stat = nix::sys::stat::fstatat(&dir.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| setup_err("inspect the new socket", path)(e.into()))?;
    if !still_ours(&stat) {
        return Err(IpcError::SocketReplaced {
            path: path.to_path_buf(),
        });
    }
    nix::unistd::fchownat(
        &dir.fd,
        name,
        Some(Uid::from_raw(0)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| setup_err("change the owner (to root and the client group) of", path)(e.into()))?;
    chmod_socket(dir, path, id, mode)?;

    let stat = nix::sys::stat::fstatat(&dir.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| setup_err("inspect the new socket", path)(e.into()))?;
    let by_path = nix::sys::stat::lstat(path).map_err(|e| setup_err("inspect", path)(e.into()))?;
    if !still_ours(&stat) || !still_ours(&by_path) {
        return Err(IpcError::SocketReplaced {
            path: path.to_path_buf(),
        });
    }
    if stat.st_uid != 0 || stat.st_gid != gid || stat.st_mode & 0o7777 != mode & 0o777 {
        return Err(setup_err("set the owner and mode of", path)(
            io::Error::other(format!(
                "it came out {:o} {}:{}",
                stat.st_mode & 0o7777,
                stat.st_uid,
                stat.st_gid
            )),
        ));
    }
    Ok(())
}

/// Sets the mode of the socket `id` in `dir` without following a symbolic link: `fchmodat`
/// with `AT_SYMLINK_NOFOLLOW` (glibc 2.32+ and musl refuse a symlink there rather than change
/// its target); where the C library cannot do that at all (`EOPNOTSUPP`, older glibc), the
/// same by hand on Linux.
fn chmod_socket(dir: &SocketDir, path: &Path, id: FileId, mode: u32) -> Result<(), IpcError> {
    let mode = Mode::from_bits_truncate(mode & 0o777);
    match nix::sys::stat::fchmodat(
        &dir.fd,
        dir.name.as_os_str(),
        mode,
        FchmodatFlags::NoFollowSymlink,
    ) {
        Ok(()) => Ok(()),
        #[cfg(target_os = "linux")]
        Err(Errno::EOPNOTSUPP) => chmod_socket_by_handle(dir, path, id, mode),
        Err(e) => Err(setup_err("set the mode of", path)(e.into())),
    }
}

/// Opens the entry itself (`O_PATH | O_NOFOLLOW`: a symlink is opened as the link, never its
/// target), checks that it is the socket `id`, and changes that very inode through
/// `/proc/self/fd`.
#[cfg(target_os = "linux")]
fn chmod_socket_by_handle(
    dir: &SocketDir,
    path: &Path,
    id: FileId,
    mode: Mode,
) -> Result<(), IpcError> {
    let handle = nix::fcntl::openat(
        &dir.fd,
        dir.name.as_os_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| setup_err("open the new socket", path)(e.into()))?;
    let stat = nix::sys::stat::fstat(&handle)
        .map_err(|e| setup_err("inspect the new socket", path)(e.into()))?;
    if !is_type(&stat, libc::S_IFSOCK) || FileId::of(&stat) != id {
        return Err(IpcError::SocketReplaced {
            path: path.to_path_buf(),
        });
    }
    let by_handle = format!("/proc/self/fd/{}", handle.as_raw_fd());
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        by_handle.as_str(),
        mode,
        FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| setup_err("set the mode of", path)(e.into()))
}

/// Removes the socket file if it is still the one we made (a newer server may have replaced it).
pub(crate) fn remove_socket_if_ours(path: &Path, id: FileId) {
    match nix::sys::stat::lstat(path) {
        Ok(stat) if is_type(&stat, libc::S_IFSOCK) && FileId::of(&stat) == id => {
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
/// or whose supplementary groups contain it. Those come from the kernel's record of the peer
/// at `connect()` (`SO_PEERGROUPS`); only a kernel without that option (before Linux 4.13)
/// falls back to `/proc/<pid>/status`.
pub(crate) async fn authorize(stream: &Stream, peer: PeerInfo, group: Option<u32>) -> Access {
    match stream {
        Stream::UdSocket(s) => authorize_fd(s.as_fd(), peer, group).await,
    }
}

/// [`authorize`] on the connection's descriptor.
async fn authorize_fd(fd: BorrowedFd<'_>, peer: PeerInfo, group: Option<u32>) -> Access {
    if peer.uid == 0 {
        return Access::Allowed("root");
    }
    let Some(group) = group else {
        return Access::Refused;
    };
    if peer.gid == group {
        return Access::Allowed("effective group");
    }
    match peer_groups(fd) {
        Ok(groups) if groups.contains(&group) => Access::Allowed("supplementary group"),
        Ok(_) => Access::Refused,
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            tracing::debug!(
                pid = peer.pid,
                "no SO_PEERGROUPS; reading the peer's groups from /proc"
            );
            let checked =
                tokio::task::spawn_blocking(move || in_supplementary_group(peer, group)).await;
            match checked {
                Ok(Ok(true)) => Access::Allowed("supplementary group (from /proc)"),
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
        Err(e) => {
            tracing::debug!(pid = peer.pid, error = %e, "could not read the peer's groups");
            Access::Refused
        }
    }
}

/// The peer's supplementary groups as the kernel recorded them at `connect()`
/// (`getsockopt(SOL_SOCKET, SO_PEERGROUPS)`, Linux 4.13 and later). A kernel without the
/// option fails with `ENOPROTOOPT`.
#[cfg(target_os = "linux")]
fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    const GID_SIZE: usize = std::mem::size_of::<libc::gid_t>();
    /// The largest group list a process can have (Linux `NGROUPS_MAX`).
    const MAX_GROUPS: usize = 65_536;
    let too_many = || io::Error::new(io::ErrorKind::InvalidData, "implausibly many peer groups");
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    // The list was fixed at connect(), so the size learnt from a first ERANGE is final; a
    // second ERANGE is an error rather than a loop.
    for _ in 0..2 {
        let capacity = groups.len().checked_mul(GID_SIZE).ok_or_else(too_many)?;
        let mut len = libc::socklen_t::try_from(capacity).map_err(|_| too_many())?;
        // SAFETY: `groups` is a live, writable, gid_t-aligned buffer of exactly `len` bytes,
        // and `len` a live socklen_t; the kernel writes at most `len` bytes of gids and then
        // the length it used (or, with ERANGE, the length it needs) into `len`. `fd` is a
        // borrowed, open descriptor for the whole call. Neither pointer is kept.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast::<libc::c_void>(),
                &mut len,
            )
        };
        // errno before anything else can touch it.
        let failed = (rc != 0).then(io::Error::last_os_error);
        let needed = usize::try_from(len).map_err(|_| too_many())? / GID_SIZE;
        let Some(err) = failed else {
            if needed > groups.len() {
                return Err(too_many());
            }
            groups.truncate(needed);
            return Ok(groups);
        };
        if err.raw_os_error() != Some(libc::ERANGE) || needed <= groups.len() {
            return Err(err);
        }
        if needed > MAX_GROUPS {
            return Err(too_many());
        }
        groups.resize(needed, 0);
    }
    Err(io::Error::other("the peer's group list did not fit twice"))
}

/// Other Unix systems: no `SO_PEERGROUPS`, so the caller falls back to `/proc`.
#[cfg(not(target_os = "linux"))]
fn peer_groups(_fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT))
}

/// The `/proc` fallback for kernels without `SO_PEERGROUPS`.
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

    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::os::unix::process::CommandExt;

    use nix::sys::socket::sockopt::PeerCredentials;

    /// As `common::root_or_skip` of the integration tests: go on as root; otherwise fail under
    /// CI (`CI=true` or `CI=1`) and print a SKIPPED line elsewhere.
    fn root_or_skip(test: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        assert!(
            !ci,
            "test {test} needs root; CI runs the tests as root, so this is a failure, not a skip"
        );
        // Past libtest's capture, so that a skip is seen even when the test passes.
        let _ignored = writeln!(io::stderr(), "SKIPPED (needs root): {test}");
        false
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn peer_groups_come_from_the_kernel_record_of_the_peer() {
        // A socketpair's peer is this process: its recorded groups are ours.
        let (a, _b) = UnixStream::pair().unwrap();
        let mut from_socket = peer_groups(a.as_fd()).unwrap();
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        from_socket.sort_unstable();
        ours.sort_unstable();
        assert_eq!(from_socket, ours);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_peers_supplementary_group_counts_even_after_it_exited() {
        // The peer connects with 41 groups, 4242 among them (more than the first buffer holds:
        // the ERANGE retry), and exits before the check: /proc has nothing left to say about
        // it, the kernel's record at connect() still does.
        if !root_or_skip("sys::tests::a_peers_supplementary_group_counts_even_after_it_exited") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        let addr = UnixAddr::new(&path).unwrap();
        let mut groups: Vec<Gid> = (5000..5040).map(Gid::from_raw).collect();
        groups.push(Gid::from_raw(4242));
        let mut peer = std::process::Command::new("/bin/true");
        // SAFETY: the closure runs in the forked child before exec. It makes only system calls
        // (setgroups, setresgid, setresuid, socket, connect) on values prepared before the
        // fork, and allocates nothing.
        unsafe {
            peer.pre_exec(move || {
                nix::unistd::setgroups(&groups)?;
                let gid = Gid::from_raw(4244);
                nix::unistd::setresgid(gid, gid, gid)?;
                let uid = Uid::from_raw(4243);
                nix::unistd::setresuid(uid, uid, uid)?;
                let fd = socket::socket(
                    AddressFamily::Unix,
                    SockType::Stream,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )?;
                socket::connect(fd.as_raw_fd(), &addr)?;
                Ok(())
            })
        };
        assert!(peer.status().unwrap().success());
        let (stream, _) = listener.accept().unwrap();
        let creds = socket::getsockopt(&stream, PeerCredentials).unwrap();
        let info = PeerInfo {
            uid: creds.uid(),
            gid: creds.gid(),
            pid: u32::try_from(creds.pid()).unwrap(),
        };
        assert_eq!((info.uid, info.gid), (4243, 4244));
        assert!(
            in_supplementary_group(info, 4242).is_err(),
            "/proc still knows the peer; the test proves nothing"
        );
        let mut recorded = peer_groups(stream.as_fd()).unwrap();
        recorded.sort_unstable();
        let mut expected: Vec<u32> = (5000..5040).collect();
        expected.insert(0, 4242);
        assert_eq!(recorded, expected);
        let rt = runtime();
        assert_eq!(
            rt.block_on(authorize_fd(stream.as_fd(), info, Some(4242))),
            Access::Allowed("supplementary group")
        );
        assert_eq!(
            rt.block_on(authorize_fd(stream.as_fd(), info, Some(4245))),
            Access::Refused
        );
        assert_eq!(
            rt.block_on(authorize_fd(stream.as_fd(), info, None)),
            Access::Refused
        );
    }

    #[test]
    fn a_symlink_swapped_in_for_the_socket_is_neither_followed_nor_removed() {
        if !root_or_skip(
            "sys::tests::a_symlink_swapped_in_for_the_socket_is_neither_followed_nor_removed",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let socket_dir = prepare_socket_path(&path).unwrap();
        let _listener = UnixListener::bind(&path).unwrap();
        let id = bound_socket(&socket_dir, &path).unwrap();

        let target = dir.path().join("precious");
        fs::write(&target, b"x").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();

        let err = secure_socket(&socket_dir, &path, id, 0o666, Some(4242)).unwrap_err();
        assert!(matches!(err, IpcError::SocketReplaced { .. }), "{err:?}");
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o600,
            "the link's target was chmodded"
        );
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "the link's target was chowned"
        );
        let link = fs::symlink_metadata(&path).unwrap();
        assert_eq!(link.uid(), 0, "the link itself was chowned");

        remove_socket_if_ours(&path, id);
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_fallback_chmod_changes_only_the_socket_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let socket_dir = prepare_socket_path(&path).unwrap();
        let _listener = UnixListener::bind(&path).unwrap();
        let id = bound_socket(&socket_dir, &path).unwrap();
        chmod_socket_by_handle(&socket_dir, &path, id, Mode::from_bits_truncate(0o604)).unwrap();
        assert_eq!(fs::symlink_metadata(&path).unwrap().mode() & 0o7777, 0o604);

        let target = dir.path().join("precious");
        fs::write(&target, b"x").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = chmod_socket_by_handle(&socket_dir, &path, id, Mode::from_bits_truncate(0o666))
            .unwrap_err();
        assert!(matches!(err, IpcError::SocketReplaced { .. }), "{err:?}");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn the_socket_is_secured_in_place_and_checked() {
        if !root_or_skip("sys::tests::the_socket_is_secured_in_place_and_checked") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let socket_dir = prepare_socket_path(&path).unwrap();
        let _listener = UnixListener::bind(&path).unwrap();
        let id = bound_socket(&socket_dir, &path).unwrap();
        secure_socket(&socket_dir, &path, id, 0o640, Some(4242)).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), (0, 4242));
        remove_socket_if_ours(&path, id);
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "our socket is removed"
        );
    }

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
