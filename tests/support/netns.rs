//! Low-level network-namespace plumbing: `ip netns add/del`, `ip -n NAME …`, entering a
//! namespace (per child with `setns` before `exec`, per thread for in-process work), finding
//! the processes inside a namespace, and sweeping what aborted runs left behind (their cgroups
//! through [`crate::cgroup::sweep`]).
//!
//! Every `ip` invocation here names a namespace; there is deliberately no function that runs
//! `ip` against the root namespace. Sweeping deletes only namespaces and lab directories named
//! `pcl-<pid>-…` whose `<pid>` is not a live process, and kills only processes that such a lab
//! recorded in its registry (pid and start time both matching) or that still live in its
//! cgroup; other processes found inside a leftover namespace are reported, not killed.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Every lab namespace and lab directory name starts with this.
pub(crate) const PREFIX: &str = "pcl-";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Reports a sweep action on stderr, bypassing the test harness's capture: cleaning up after
/// an earlier run should be visible even when the current test passes.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ignored = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Names of the named network namespaces (in `/run/netns`) that start with `prefix`, sorted.
///
/// Use it to check that a test left nothing behind, e.g. with the lab's name prefix.
pub fn netns_list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Path of a named namespace's handle.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether a named namespace exists.
pub(crate) fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Finds the `ip` tool, also when `/usr/sbin` is not on `PATH`.
fn ip_tool() -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join("ip");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("ip")
}

/// Runs `ip` with `args` and returns its stderr on failure.
fn ip_raw<S: AsRef<OsStr>>(args: &[S]) -> Result<(), String> {
    let out = Command::new(ip_tool())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}); install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// `ip netns add NAME`.
pub(crate) fn netns_add(name: &str) -> Result<(), String> {
    ip_raw(&["netns", "add", name])
}

/// `ip netns del NAME`.
pub(crate) fn netns_del(name: &str) -> Result<(), String> {
    ip_raw(&["netns", "del", name])
}

/// `ip -n NAME ARGS…`: the only way this crate configures interfaces, addresses and routes.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip_raw(&all).map_err(|e| format!("`ip {}` failed: {e}", all.join(" ")))
}

/// Opens a handle on a named namespace, for `setns`.
pub(crate) fn open_netns(name: &str) -> io::Result<OwnedFd> {
    File::open(netns_path(name)).map(OwnedFd::from)
}

/// Moves the calling thread into the namespace behind `fd`.
fn setns_net(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns only reads the descriptor, which `fd` keeps open for the call; it changes
    // the network namespace of the calling thread and nothing else.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `cmd` join the namespace `name` in the child, between fork and exec.
///
/// The child's pid stays the program's pid (no `nsenter` in between), which matters because the
/// firewall attributes traffic to the executable, and the child keeps the parent's mount
/// namespace, so `/sys/fs/cgroup` stays visible (`ip netns exec` would remount `/sys`).
pub(crate) fn enter_in_child(cmd: &mut Command, name: &str) -> io::Result<()> {
    let fd = Arc::new(open_netns(name)?);
    // SAFETY: the closure runs in the forked child before exec; it only calls setns(2) (async-
    // signal-safe) on a descriptor owned by the Arc the closure holds, and builds an
    // `io::Error` from errno without allocating.
    unsafe {
        cmd.pre_exec(move || setns_net(&fd));
    }
    Ok(())
}

/// Runs `f` on a fresh thread that has joined the namespace `name`, and returns its result.
///
/// Only that thread changes namespace; the caller's thread and the rest of the process stay in
/// theirs. A panic in `f` is passed on to the caller.
pub(crate) fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let fd = open_netns(name)
        .unwrap_or_else(|e| panic!("cannot open netns {name}: {e} (was the lab dropped?)"));
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            setns_net(&fd).unwrap_or_else(|e| panic!("setns into netns {name} failed: {e}"));
            f()
        });
        handle
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    })
}

/// The inode that identifies the namespace `name`, if it exists.
pub(crate) fn netns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(netns_path(name)).ok().map(|m| m.ino())
}

/// Pids of the processes whose network namespace has inode `inode` (other than this process).
pub(crate) fn pids_in_netns(inode: u64) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != me && in_netns_inode(pid, inode))
        .collect()
}

/// The short command name of a process, for messages.
pub(crate) fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
}

/// Whether `pid` names a process (or a zombie) right now.
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`); with the
/// pid it identifies one process across pid reuse.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let after = stat.rsplit_once(')')?.1;
    // `after` starts at field 3 (state), so field 22 is the 20th item.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The pid embedded in a lab name `pcl-<pid>-…`.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Sends SIGKILL to `pid`.
pub(crate) fn sigkill(pid: u32) -> io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)
}

/// The registry file in a lab directory: one `PID STARTTIME` line per spawned process.
pub(crate) fn registry_path(lab_dir: &Path) -> PathBuf {
    lab_dir.join("pids")
}

/// Kills the processes recorded in a leftover lab directory that are provably the ones the dead
/// lab spawned: a `PID STARTTIME` line whose start time still matches, or a bare `PID` line
/// (written by the child before exec) whose process still sits inside one of the dead lab's
/// namespaces (`<dir name>-c`, `<dir name>-s`).
fn kill_registered(lab_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(registry_path(lab_dir)) else {
        return;
    };
    let name = lab_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inodes: Vec<u64> = ["c", "s"]
        .iter()
        .filter_map(|side| netns_inode(&format!("{name}-{side}")))
        .collect();
    let mut killed = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(Ok(pid)) = it.next().map(str::parse::<u32>) else {
            continue;
        };
        if pid == std::process::id() || killed.contains(&pid) {
            continue;
        }
        let tied = match it.next().map(str::parse::<u64>) {
            Some(Ok(st)) => start_time(pid) == Some(st),
            Some(Err(_)) => false,
            None => inodes.iter().any(|&ino| in_netns_inode(pid, ino)),
        };
        if tied {
            report!(
                "portcullis-lab: sweep: killing leftover process {pid} ({}) of {}",
                comm(pid),
                lab_dir.display()
            );
            if let Err(e) = sigkill(pid) {
                report!("portcullis-lab: sweep: kill {pid}: {e}");
            }
            killed.push(pid);
        }
    }
}

/// Whether process `pid` lives in the network namespace with inode `inode`.
fn in_netns_inode(pid: u32, inode: u64) -> bool {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .is_ok_and(|l| l.as_os_str() == OsStr::new(&format!("net:[{inode}]")))
}

/// Serializes sweeps within this process (tests run labs on parallel threads).
static SWEEP: Mutex<()> = Mutex::new(());

/// Holds off every sweep in this process while the guard lives. The sweep self-test builds a
/// fake dead run under it, so that a lab starting in a parallel test cannot sweep that run
/// half-built (before its registry of processes exists).
#[doc(hidden)]
pub fn hold_sweeps() -> std::sync::MutexGuard<'static, ()> {
    SWEEP.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes what labs of dead processes left behind: their registered processes, their lab
/// directories under `lab_root`, their cgroups under `cgroup_mount` (with the processes inside)
/// and their namespaces. Never panics; reports problems.
pub(crate) fn sweep(lab_root: &Path, cgroup_mount: &Path) {
    let _guard = hold_sweeps();
    let dead = |name: &str| owner_pid(name).is_some_and(|pid| !pid_alive(pid));

    if let Ok(entries) = std::fs::read_dir(lab_root) {
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !dead(&name) {
                continue;
            }
            let dir = entry.path();
            kill_registered(&dir);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                report!(
                    "portcullis-lab: sweep: cannot remove {}: {e}",
                    dir.display()
                );
            }
        }
    }

    // Before the namespaces: what still runs in a dead run's cgroup is killed there, so that
    // its namespaces empty.
    crate::cgroup::sweep(cgroup_mount);

    for name in netns_list_with_prefix(PREFIX) {
        if !dead(&name) {
            continue;
        }
        if let Some(inode) = netns_inode(&name) {
            // Give killed processes a moment to go, then report whatever still lives there.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut left = pids_in_netns(inode);
            while !left.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                left = pids_in_netns(inode);
            }
            for pid in left {
                report!(
                    "portcullis-lab: sweep: process {pid} ({}) still runs inside leftover netns \
                     {name}; not killing a process this lab cannot tie to its run",
                    comm(pid)
                );
            }
        }
        report!("portcullis-lab: sweep: deleting leftover netns {name}");
        if let Err(e) = netns_del(&name)
            && netns_exists(&name)
        {
            report!("portcullis-lab: sweep: cannot delete netns {name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_lab_names() {
        assert_eq!(owner_pid("pcl-1234-3-echo-c"), Some(1234));
        assert_eq!(owner_pid("pcl-999999-old-c"), Some(999_999));
        assert_eq!(owner_pid("pcl-x-old-c"), None);
        assert_eq!(owner_pid("other-1234"), None);
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id();
        let a = start_time(me);
        assert!(a.is_some());
        assert_eq!(a, start_time(me));
    }
}
