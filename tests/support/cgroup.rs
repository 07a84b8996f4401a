//! The lab's own cgroup2 group: finding the cgroup2 mount, creating `<mount>/pcl-<pid>-<N>-<name>`,
//! making children join it before `exec`, and removing it (with whatever still runs inside) at
//! teardown and when sweeping leftovers of dead runs.
//!
//! The helper attaches its (observe-only) eBPF programs to this group, never to the root cgroup,
//! so every process the lab starts must run inside it. This module moves processes into no other
//! cgroup than a lab's own, and kills a process only after checking — through a pidfd, so that a
//! recycled pid is never hit — that it still lives in the lab cgroup being removed (or below it).
//! Only processes of that lab run can be there.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns;

/// How long teardown keeps killing and retrying `rmdir` before it reports and gives up.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of the buffer a child reads its own `/proc/self/cgroup` into (on its stack).
const CGROUP_FILE_BUF: usize = 8192;

/// Reports on stderr, bypassing the test harness's capture (as the sweep does elsewhere).
fn report(msg: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ignored = writeln!(io::stderr(), "portcullis-lab: {msg}");
}

/// Where the unified (cgroup2) hierarchy is mounted: `/sys/fs/cgroup` on pure-v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones; `None` if there is no cgroup2 mount.
///
/// Read from `/proc/self/mountinfo`; a mount of the hierarchy's root wins over a bind mount of
/// a sub-group.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&text)
}

/// The cgroup2 mount point in `/proc/self/mountinfo` text (see [`cgroup2_mount`]).
fn parse_cgroup2_mount(text: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in text.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_ascii_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut fields = left.split_ascii_whitespace();
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        if !mount_point.starts_with('/') {
            continue;
        }
        let path = PathBuf::from(unescape_mount_field(mount_point));
        if root == "/" {
            return Some(path);
        }
        fallback.get_or_insert(path);
    }
    fallback
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0_u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(v) = u8::try_from(value) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `0::PATH` line (unified hierarchy) of a `/proc/PID/cgroup` text, without `0::`.
fn unified_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Whether the cgroup path `path` (as in `/proc/PID/cgroup`) is the group `name` or lies below
/// it: one of its components is `name`. Lab group names are unique (`pcl-<pid>-<N>-<name>`).
fn path_is_in(path: &str, name: &str) -> bool {
    path.split('/').any(|component| component == name)
}

/// A lab's own cgroup2 group.
#[derive(Debug)]
pub(crate) struct LabCgroup {
    path: PathBuf,
    name: String,
    /// `cgroup.procs`, open for children to write `0` (themselves) into before exec.
    procs: Arc<OwnedFd>,
}

impl LabCgroup {
    /// Creates `<mount>/<name>`. A group of that name can only be left over from a dead run
    /// with the same pid (pid reuse): it is removed first, with whatever runs inside it.
    pub(crate) fn create(mount: &Path, name: &str) -> io::Result<LabCgroup> {
        let path = mount.join(name);
        if path.exists() {
            report(format_args!(
                "removing leftover cgroup {} (pid reuse)",
                path.display()
            ));
            remove_group(&path, name, REMOVE_TIMEOUT).map_err(io::Error::other)?;
        }
        std::fs::create_dir(&path)?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"));
        match procs {
            Ok(file) => Ok(LabCgroup {
                path,
                name: name.to_owned(),
                procs: Arc::new(OwnedFd::from(file)),
            }),
            Err(e) => {
                let _ignored = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// The group's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `cmd`'s child join this group between fork and exec (idempotent).
    ///
    /// A child that an earlier `pre_exec` of `cmd` already moved to another cgroup (a test's
    /// own group, e.g. to attach its own eBPF programs or to exclude it from the firewall)
    /// stays there: the child joins only while it is still in the cgroup it inherited.
    pub(crate) fn join_in_child(&self, cmd: &mut Command) {
        let fd = Arc::clone(&self.procs);
        // The cgroup the child inherits: this process's own, as a full line of the file.
        let inherited: Option<Vec<u8>> = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|text| unified_path(&text).map(|p| format!("0::{p}\n").into_bytes()));
        // SAFETY: the closure runs in the forked child before exec. It only calls open(2),
        // read(2), close(2) and write(2), all async-signal-safe, on a stack buffer and on
        // descriptors it owns or that the Arc keeps open; it allocates nothing (the `Vec` was
        // made before the fork and is only read) and builds an `io::Error` from errno.
        unsafe {
            cmd.pre_exec(move || {
                if inherited.as_deref().is_none_or(still_in_inherited_cgroup) {
                    // Writing "0" moves the writing process.
                    let rc = libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1);
                    if rc != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    /// Removes the group: kills what still runs inside it (or in groups below it: only lab
    /// processes can be there), waits, retries `rmdir` for a few seconds. Never panics.
    pub(crate) fn remove(&self) -> Result<(), String> {
        remove_group(&self.path, &self.name, REMOVE_TIMEOUT)
    }
}

/// Whether the calling process's `/proc/self/cgroup` still contains `line` (`0::PATH\n`).
/// Async-signal-safe: raw syscalls and a stack buffer only, for use between fork and exec.
/// `true` when the file cannot be read completely (joining the lab is the default).
fn still_in_inherited_cgroup(line: &[u8]) -> bool {
    const PATH: &CStr = c"/proc/self/cgroup";
    let mut buf = [0_u8; CGROUP_FILE_BUF];
    // SAFETY: `PATH` is a NUL-terminated string; open(2) only reads it.
    let fd = unsafe { libc::open(PATH.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return true;
    }
    let mut len = 0;
    let complete = loop {
        let Some(rest) = buf.get_mut(len..) else {
            break false;
        };
        if rest.is_empty() {
            break false; // full: the file may be longer than the buffer
        }
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes; `fd` is open.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        match usize::try_from(n) {
            Ok(0) => break true,
            Ok(n) => len += n,
            Err(_) => break false,
        }
    };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    if !complete {
        return true;
    }
    let text = buf.get(..len).unwrap_or_default();
    // `line` at the start of the file or right after a newline.
    text.starts_with(line)
        || text
            .windows(line.len() + 1)
            .any(|w| w.first() == Some(&b'\n') && w.get(1..) == Some(line))
}

/// Pids listed in `cgroup.procs` of `dir` and of every group below it.
fn pids_in_tree(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for sub in sub_groups(dir) {
        pids.extend(pids_in_tree(&sub));
    }
    pids
}

/// The groups directly below `dir`.
fn sub_groups(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes `dir` and every group below it, deepest first (`rmdir` each: a cgroup directory is
/// removed with rmdir(2), never by deleting its files). Missing is fine.
fn rmdir_tree(dir: &Path) -> io::Result<()> {
    for sub in sub_groups(dir) {
        rmdir_tree(&sub)?;
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes the lab group `dir` (named `name`): kills every process inside it or below it that
/// is verifiably still there, then `rmdir`s, retrying until `timeout`.
fn remove_group(dir: &Path, name: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = pids_in_tree(dir);
        if pids.is_empty() {
            match rmdir_tree(dir) {
                Ok(()) => return Ok(()),
                // EBUSY right after the last process left: the kernel is still releasing it.
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot remove cgroup {}: {e}", dir.display()));
                }
                Err(_) => {}
            }
        } else if Instant::now() >= deadline {
            return Err(format!(
                "processes {pids:?} are still inside cgroup {}",
                dir.display()
            ));
        } else {
            for pid in pids {
                if kill_if_in_group(pid, name) {
                    report(format_args!(
                        "killed process {pid} ({}) left in cgroup {}",
                        netns::comm(pid),
                        dir.display()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGKILL to `pid` if it lives in the lab group `name` (or below it), checked without a
/// race against pid reuse: the process is pinned with a pidfd before its cgroup is read, and
/// the signal goes through that pidfd. Returns whether the signal was sent.
fn kill_if_in_group(pid: u32, name: &str) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
    let Ok(raw_fd) = i32::try_from(rc) else {
        return false;
    };
    if raw_fd < 0 {
        return false; // gone already
    }
    // SAFETY: pidfd_open just returned this descriptor; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
    // The pidfd pins the process we read about next: if `pid` was recycled in between, the
    // file describes another process, which is not in our group, and nothing is sent.
    let ours = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .is_some_and(|text| unified_path(&text).is_some_and(|p| path_is_in(p, name)));
    if !ours {
        return false;
    }
    // SAFETY: pidfd_send_signal(2) on a pidfd we own, with no siginfo (NULL) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// Removes the groups `pcl-<pid>-…` under `mount` whose `<pid>` is not alive: leftovers of dead
/// lab runs. Processes still inside such a group (or below it) can only be leftovers of that
/// run: they are killed first. Never panics; reports what it does.
pub(crate) fn sweep(mount: &Path) {
    let Ok(entries) = std::fs::read_dir(mount) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some(pid) = netns::owner_pid(&name) else {
            continue;
        };
        if netns::pid_alive(pid) {
            continue;
        }
        let dir = entry.path();
        report(format_args!(
            "sweep: removing leftover cgroup {}",
            dir.display()
        ));
        if let Err(e) = remove_group(&dir, &name, REMOVE_TIMEOUT) {
            report(format_args!("sweep: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_is_parsed_for_hybrid_and_pure_v2_hosts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(pure),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A bind mount of a sub-group loses against the root; alone it is the fallback.
        let bind = "50 23 0:26 /sub /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_cgroup2_mount(bind), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(
            parse_cgroup2_mount(&format!("{bind}{pure}")),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(parse_cgroup2_mount("nothing here\n"), None);
    }

    #[test]
    fn group_membership_is_by_path_component() {
        assert_eq!(unified_path("1:cpu:/\n0::/pcl-1-2-x\n"), Some("/pcl-1-2-x"));
        assert!(path_is_in("/pcl-1-2-x", "pcl-1-2-x"));
        assert!(path_is_in("/pcl-1-2-x/inner", "pcl-1-2-x"));
        assert!(path_is_in("/outer/pcl-1-2-x", "pcl-1-2-x"));
        assert!(!path_is_in("/pcl-1-2-xy", "pcl-1-2-x"));
        assert!(!path_is_in("/", "pcl-1-2-x"));
    }

    #[test]
    fn this_process_is_still_in_its_own_cgroup() {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Some(p) = unified_path(&text) {
            assert!(still_in_inherited_cgroup(format!("0::{p}\n").as_bytes()));
            assert!(!still_in_inherited_cgroup(b"0::/no-such-group-here\n"));
        }
    }
}
