//! Process file descriptors (`pidfd_open(2)`, Linux 5.3+): a handle on one process, not on a
//! pid number, so it tells whether *that* process still runs even after its pid is reused. The
//! process cache keeps one for each process it describes (up to a bound) to skip re-reading
//! `/proc/PID/stat` — the slowest step of a warm lookup — while staying safe against pid reuse.
//! On Linux 6.13+ a pidfd also answers the process' effective uid (`PIDFD_GET_INFO`), cheaper
//! than formatting and parsing `/proc/PID/status`. This module only opens, polls and asks them.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// A handle on one process.
#[derive(Debug)]
pub(crate) struct PidFd(OwnedFd);

/// `struct pidfd_info` as first published (Linux 6.13, 64 bytes); later kernels accept it and
/// fill only these fields.
#[repr(C)]
#[derive(Debug, Default)]
struct PidFdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    spare: u32,
}

/// `PIDFD_INFO_CREDS`: the uids and gids were filled in.
const PIDFD_INFO_CREDS: u64 = 1 << 1;
/// `PIDFD_GET_INFO`: `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::Ioctl = libc::_IOWR::<PidFdInfo>(0xFF, 11);

impl PidFd {
    /// Opens a handle on the process that has pid `pid` in this process' pid namespace now.
    pub(crate) fn open(pid: u32) -> io::Result<PidFd> {
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(rc)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "descriptor out of range"))?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Whether the process has not exited yet. A pidfd becomes readable when its process
    /// exits; any error counts as exited (the caller then checks the slow way).
    pub(crate) fn is_alive(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd that outlives the call; timeout 0 never blocks.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, 0) };
        rc == 0
    }

    /// The process' effective uid, if it has not been reaped. `Unsupported` on kernels without
    /// `PIDFD_GET_INFO` (before 6.13); `ESRCH` once the process is reaped — so an answer also
    /// proves the pid was still this process's when it was given.
    pub(crate) fn euid(&self) -> io::Result<u32> {
        let mut info = PidFdInfo {
            mask: PIDFD_INFO_CREDS,
            ..PidFdInfo::default()
        };
        // SAFETY: PIDFD_GET_INFO writes at most size_of::<PidFdInfo>() bytes (the size is
        // encoded in the request) into `info`, which is valid and outlives the call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), PIDFD_GET_INFO, &raw mut info) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // ENOTTY: no pidfd ioctls (before 6.11); EINVAL: namespace ioctls only (6.11, 6.12).
            return Err(match e.raw_os_error() {
                Some(libc::ENOTTY | libc::EINVAL) => io::Error::new(io::ErrorKind::Unsupported, e),
                _ => e,
            });
        }
        if info.mask & PIDFD_INFO_CREDS == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "PIDFD_GET_INFO returned no credentials",
            ));
        }
        Ok(info.euid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_alive_until_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = PidFd::open(child.id()).unwrap();
        assert!(fd.is_alive());
        match fd.euid() {
            // SAFETY: geteuid(2) cannot fail.
            Ok(euid) => assert_eq!(euid, unsafe { libc::geteuid() }),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}"),
        }
        child.kill().unwrap();
        // Exited but not reaped: still answered; reaped: not.
        while fd.is_alive() {
            std::thread::yield_now();
        }
        if let Ok(euid) = fd.euid() {
            // SAFETY: geteuid(2) cannot fail.
            assert_eq!(euid, unsafe { libc::geteuid() });
        }
        child.wait().unwrap();
        assert!(!fd.is_alive());
        assert!(fd.euid().is_err());
        assert!(PidFd::open(u32::MAX).is_err());
    }
}
