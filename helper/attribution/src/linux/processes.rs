//! Pid → [`ProcessInfo`]: reads a process' executable, command line, user, cgroup, parents and
//! app identity from `/proc` once and keeps the result, keyed by pid *and* start time, so a
//! recycled pid is never mistaken for the old process. Every use checks that the described
//! process still runs — with its pidfd when it has one (a poll), else by re-reading `stat` for
//! the start time — and re-reads the `exe` link: a process that called `execve` keeps its pid
//! and start time but becomes another program, and is read again. User names come from
//! `/etc/passwd` directly (no NSS: this runs on the verdict thread and must not wait on a
//! directory service). This module knows nothing of sockets.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::identity::{FlatpakInfo, IdentityFacts, flatpak_from_cgroup, identify};
use super::pidfd::PidFd;
use super::procfs::{ProcFs, Stat, parse_passwd, read_text, split_deleted};
use crate::ProcessInfo;

/// Most ancestors recorded in [`ProcessInfo::parents`].
pub(crate) const MAX_PARENTS: usize = 32;
/// Largest `/etc/passwd` read.
const PASSWD_LIMIT: u64 = 8 * 1024 * 1024;
/// Most pidfds held (the hot processes); the others are checked through `stat`.
const MAX_PIDFDS: usize = 256;

/// One remembered process.
#[derive(Debug)]
struct Cached {
    start_time: u64,
    exe_raw: OsString,
    info: Arc<ProcessInfo>,
    last_used: u64,
    /// A handle on the described process, opened before it was read.
    pidfd: Option<PidFd>,
}

/// The pid → process cache.
#[derive(Debug)]
pub(crate) struct ProcessCache {
    procfs: ProcFs,
    by_pid: HashMap<u32, Cached>,
    users: Users,
    max: usize,
    tick: u64,
    /// Whether pids of `procfs` are pids of this process' namespace (the real `/proc`), so
    /// pidfds may be opened for them.
    use_pidfds: bool,
}

impl ProcessCache {
    pub(crate) fn new(procfs: ProcFs, passwd: PathBuf, max: usize) -> ProcessCache {
        ProcessCache {
            use_pidfds: procfs.root() == std::path::Path::new("/proc"),
            procfs,
            by_pid: HashMap::new(),
            users: Users::new(passwd),
            max: max.max(1),
            tick: 0,
        }
    }

    /// The process `pid` as it is now, and whether it came from the cache.
    pub(crate) fn get(&mut self, pid: u32) -> io::Result<(Arc<ProcessInfo>, bool)> {
        self.tick += 1;
        // Fast check: the described process still runs (so the pid is still its own) and
        // still runs the same executable.
        if let Some(cached) = self.by_pid.get_mut(&pid)
            && cached.pidfd.as_ref().is_some_and(PidFd::is_alive)
            && self.procfs.exe_raw(pid)? == cached.exe_raw
        {
            cached.last_used = self.tick;
            return Ok((Arc::clone(&cached.info), true));
        }
        // Opened before reading: if it still runs later, it is the process we read.
        let pidfd = self.open_pidfd(pid);
        let stat = self.procfs.stat(pid)?;
        let exe_raw = self.procfs.exe_raw(pid)?;
        if let Some(cached) = self.by_pid.get_mut(&pid)
            && cached.start_time == stat.start_time
            && cached.exe_raw == exe_raw
        {
            cached.last_used = self.tick;
            if !cached.pidfd.as_ref().is_some_and(PidFd::is_alive) {
                cached.pidfd = pidfd;
            }
            return Ok((Arc::clone(&cached.info), true));
        }
        let info = Arc::new(self.read(&stat, &exe_raw)?);
        // Re-read the start time: if the pid was recycled while we read, what we read may mix
        // two processes.
        if self.procfs.stat(pid)?.start_time != stat.start_time {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the process was replaced while it was read",
            ));
        }
        if self.by_pid.len() >= self.max {
            self.evict();
        }
        self.by_pid.insert(
            pid,
            Cached {
                start_time: stat.start_time,
                exe_raw,
                info: Arc::clone(&info),
                last_used: self.tick,
                pidfd,
            },
        );
        Ok((info, false))
    }

    /// A pidfd for `pid` if pidfds apply here and fewer than [`MAX_PIDFDS`] are held.
    fn open_pidfd(&self, pid: u32) -> Option<PidFd> {
        let held = self.by_pid.values().filter(|c| c.pidfd.is_some()).count();
        if !self.use_pidfds || held >= MAX_PIDFDS {
            return None;
        }
        PidFd::open(pid).ok()
    }

    /// Drops the least recently used half.
    fn evict(&mut self) {
        let mut ticks: Vec<u64> = self.by_pid.values().map(|c| c.last_used).collect();
        ticks.sort_unstable();
        let cutoff = ticks.get(ticks.len() / 2).copied().unwrap_or(u64::MAX);
        self.by_pid.retain(|_, c| c.last_used >= cutoff);
    }

    fn read(&mut self, stat: &Stat, exe_raw: &OsStr) -> io::Result<ProcessInfo> {
        let pid = stat.pid;
        let (exe, exe_deleted) = split_deleted(exe_raw);
        let cmdline = self.procfs.cmdline(pid)?;
        let uid = self.procfs.effective_uid(pid)?;
        let cgroup = self.procfs.cgroup(pid)?;
        // The sandbox's file is only needed to check a Flatpak claim.
        let flatpak_info = if flatpak_from_cgroup(&cgroup).is_none() {
            FlatpakInfo::Absent
        } else {
            match self.procfs.flatpak_info(pid) {
                Ok(text) => super::procfs::parse_flatpak_info(&text)
                    .map_or(FlatpakInfo::Absent, FlatpakInfo::App),
                Err(e) if e.kind() == io::ErrorKind::NotFound => FlatpakInfo::Absent,
                Err(_) => FlatpakInfo::Unreadable,
            }
        };
        let appimage = self
            .procfs
            .environ_value(pid, "APPIMAGE")
            .ok()
            .flatten()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_file());
        let app = identify(IdentityFacts {
            cgroup: &cgroup,
            flatpak_info,
            appimage,
            exe: &exe,
        });
        Ok(ProcessInfo {
            pid,
            start_time: stat.start_time,
            exe,
            exe_deleted,
            cmdline,
            uid,
            user: self.users.name(uid),
            parents: self.parents(stat.ppid),
            cgroup,
            app,
            comm: stat.comm.clone(),
            partial: false,
        })
    }

    /// The process `pid` that started at `start_time` (clock ticks after boot): read now if it
    /// still runs (and cached, so that it can still be named after it exits), or as it was
    /// described while it ran if it has exited since. `None` if it exited unseen, or if `pid`
    /// now belongs to another process. The `bool` says whether the answer came from the cache.
    pub(crate) fn get_started(
        &mut self,
        pid: u32,
        start_time: u64,
    ) -> Option<(Arc<ProcessInfo>, bool)> {
        let remembered = self
            .by_pid
            .get(&pid)
            .filter(|c| c.start_time == start_time)
            .map(|c| Arc::clone(&c.info));
        // Described before: `get` revalidates it (a pidfd poll and the exe link when it still
        // runs). Otherwise it is read only if `stat` shows the pid is still that process.
        let runs = remembered.is_some()
            || self
                .procfs
                .stat(pid)
                .is_ok_and(|stat| stat.start_time == start_time);
        if runs
            && let Ok((info, cached)) = self.get(pid)
            && info.start_time == start_time
        {
            return Some((info, cached));
        }
        // It exited (or was replaced while it was read): the description from when it ran.
        let info = remembered?;
        Some((info, true))
    }

    /// The user name of `uid`, from the passwd file.
    pub(crate) fn user_name(&mut self, uid: u32) -> Option<String> {
        self.users.name(uid)
    }

    /// The ancestors of a process that started at `start_time` and whose parent was `ppid`:
    /// [`parents`](Self::parents) if that pid still belongs to a process at least as old,
    /// else only the pid (its process is gone, and the pid may name another one now).
    pub(crate) fn parents_of_exited(&self, ppid: u32, start_time: u64) -> Vec<(u32, PathBuf)> {
        match self.procfs.stat(ppid) {
            Ok(stat) if stat.start_time <= start_time => self.parents(ppid),
            _ if ppid == 0 => Vec::new(),
            _ => vec![(ppid, PathBuf::new())],
        }
    }

    /// The ancestors from `ppid` up to pid 1, at most [`MAX_PARENTS`]; an ancestor whose
    /// executable cannot be read (a kernel thread) has an empty path.
    fn parents(&self, mut ppid: u32) -> Vec<(u32, PathBuf)> {
        let mut out = Vec::new();
        while ppid != 0 && out.len() < MAX_PARENTS {
            let exe = self
                .procfs
                .exe_raw(ppid)
                .map(|raw| split_deleted(&raw).0)
                .unwrap_or_default();
            out.push((ppid, exe));
            if ppid == 1 {
                break;
            }
            match self.procfs.stat(ppid) {
                // A loop in a fake tree, or pid 1's parent 0: stop.
                Ok(stat) if stat.ppid != ppid => ppid = stat.ppid,
                _ => break,
            }
        }
        out
    }
}

/// User names by uid from a passwd file, re-read when the file changes.
#[derive(Debug)]
struct Users {
    path: PathBuf,
    modified: Option<SystemTime>,
    names: HashMap<u32, String>,
}

impl Users {
    fn new(path: PathBuf) -> Users {
        Users {
            path,
            modified: None,
            names: HashMap::new(),
        }
    }

    fn name(&mut self, uid: u32) -> Option<String> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_none() || modified != self.modified {
            self.reload(modified);
        }
        self.names.get(&uid).cloned()
    }

    fn reload(&mut self, modified: Option<SystemTime>) {
        self.modified = modified;
        self.names = match read_text(&self.path, PASSWD_LIMIT) {
            Ok(text) => parse_passwd(&text),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the passwd file; users stay unnamed");
                HashMap::new()
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_and_cached() {
        let mut cache =
            ProcessCache::new(ProcFs::new("/proc".into()), PathBuf::from("/etc/passwd"), 8);
        let me = std::process::id();
        let (info, cached) = cache.get(me).unwrap();
        assert!(!cached);
        assert_eq!(info.pid, me);
        assert_eq!(info.exe, std::env::current_exe().unwrap());
        assert!(!info.exe_deleted);
        assert!(!info.cmdline.is_empty());
        assert!(!info.parents.is_empty());
        assert!(info.parents.len() <= MAX_PARENTS);
        if info.uid == 0 {
            assert_eq!(info.user.as_deref(), Some("root"));
        }
        let (again, cached) = cache.get(me).unwrap();
        assert!(cached);
        assert!(Arc::ptr_eq(&info, &again));
    }

    #[test]
    fn get_started_names_only_the_process_that_started_then() {
        let mut cache =
            ProcessCache::new(ProcFs::new("/proc".into()), PathBuf::from("/etc/passwd"), 8);
        let me = std::process::id();
        let start = ProcFs::new("/proc".into()).stat(me).unwrap().start_time;
        let (info, cached) = cache.get_started(me, start).unwrap();
        assert_eq!((info.pid, cached), (me, false));
        assert!(!info.partial);
        assert!(!info.comm.is_empty());
        assert!(
            cache.get_started(me, start).unwrap().1,
            "now from the cache"
        );
        // Another start time: the pid names another process than the one recorded.
        assert!(cache.get_started(me, start + 1).is_none());
        assert!(cache.get_started(me, start.wrapping_sub(1)).is_none());

        // A child described while it ran is still described after it exits.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let child_start = ProcFs::new("/proc".into()).stat(pid).unwrap().start_time;
        let (seen, _) = cache.get_started(pid, child_start).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let (after, cached) = cache.get_started(pid, child_start).unwrap();
        assert!(cached);
        assert!(Arc::ptr_eq(&seen, &after));
        // Never seen and gone: nothing.
        let mut other = std::process::Command::new("true").spawn().unwrap();
        let other_pid = other.id();
        other.wait().unwrap();
        assert!(cache.get_started(other_pid, 1).is_none());
    }

    #[test]
    fn eviction_keeps_the_recent_half() {
        let mut cache = ProcessCache::new(ProcFs::new("/proc".into()), "/etc/passwd".into(), 2);
        cache.get(std::process::id()).unwrap();
        cache.get(1).ok();
        cache.get(std::process::id()).unwrap();
        cache.evict();
        assert!(cache.by_pid.contains_key(&std::process::id()));
        assert!(cache.by_pid.len() <= 2);
    }
}
