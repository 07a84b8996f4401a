//! Process file descriptors (`pidfd_open(2)`, Linux 5.3+): a handle on one process, not on a
//! pid number, so it tells whether *that* process still runs even after its pid is reused. The
//! process cache keeps one for each process it describes (up to a bound) to skip re-reading
//! `/proc/PID/stat` — the slowest step of a warm lookup — while staying safe against pid reuse.
//! This module only opens and polls them.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// A handle on one process.
#[derive(Debug)]
pub(crate) struct PidFd(OwnedFd);

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
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!fd.is_alive());
        assert!(PidFd::open(u32::MAX).is_err());
    }
}
