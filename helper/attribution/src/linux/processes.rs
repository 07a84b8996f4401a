//! Pid → [`ProcessInfo`]: reads a process' executable, command line, user, cgroup, parents and
//! app identity from `/proc` once and keeps the result, keyed by pid *and* start time, so a
//! recycled pid is never mistaken for the old process. Every use checks that the described
//! process still runs — with its pidfd when it has one (a poll), else by re-reading `stat` for
//! the start time — and re-reads the `exe` link: a process that called `execve` keeps its pid
//! and start time but becomes another program, and is read again. User names come from
//! `/etc/passwd` directly (no NSS: this runs on the verdict thread and must not wait on a
//! directory service). This module knows nothing of sockets.
//!
//! Describing a new process is on the verdict thread, so it reads little: `stat` once, the
//! `exe` link, `cmdline`, `cgroup` and the effective uid (from the pidfd on Linux 6.13+, else
//! `status`), each with one `read` into a reused buffer; the environment only for an
//! executable inside an AppImage; and for the parents, only a check of the parent when its line
//! of ancestors is remembered (see [`Lineage`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::identity::{
    FlatpakInfo, IdentityFacts, flatpak_from_cgroup, identify, inside_appimage, snap_from_cgroup,
};
use super::pidfd::PidFd;
use super::procfs::{ProcFs, Stat, parse_passwd, read_text, split_deleted};
use crate::ProcessInfo;

/// Most ancestors recorded in [`ProcessInfo::parents`].
pub(crate) const MAX_PARENTS: usize = 32;
/// Largest `/etc/passwd` read.
const PASSWD_LIMIT: u64 = 8 * 1024 * 1024;
/// Most pidfds held (the hot processes); the others are checked through `stat`.
const MAX_PIDFDS: usize = 256;
/// Most lines of ancestors remembered (shells, launchers, browsers: the processes that start
/// others).
const MAX_LINEAGES: usize = 1024;
/// Most pidfds held for them; the others are checked through `stat`.
const MAX_LINEAGE_PIDFDS: usize = 64;

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

/// `(pid, executable)` of a process, then of its ancestors, up to pid 1 and at most
/// [`MAX_PARENTS`].
type Links = Arc<[(u32, PathBuf)]>;

/// A remembered ancestor: a process that started a described one, with its own ancestors, so
/// that describing its next child costs a check of this process instead of two reads per
/// ancestor up to pid 1.
///
/// What [`ProcessInfo::parents`] promises: the parent is the process that holds the child's
/// `ppid` now (same process by pidfd or start time) with the executable it runs now (its `exe`
/// is read again, so an `execve` is seen). The ancestors above it are as they were when the
/// parent was first read: one that exec'd or exited since keeps its remembered pid and
/// executable (the process that started the line, not whatever holds its pid now).
#[derive(Debug)]
struct Lineage {
    start_time: u64,
    /// The raw `exe` link when it was read, to notice an `execve`.
    exe_raw: OsString,
    /// This process, then its ancestors.
    links: Links,
    /// A handle opened before the process was read: while it polls alive, the pid is still
    /// this process's.
    pidfd: Option<PidFd>,
    last_used: u64,
}

/// An ancestor read while walking up to pid 1.
struct Walked {
    pid: u32,
    /// `None` if its `stat` could not be read (it exited during the walk).
    start_time: Option<u64>,
    exe_raw: OsString,
    pidfd: Option<PidFd>,
}

/// The pid → process cache.
#[derive(Debug)]
pub(crate) struct ProcessCache {
    procfs: ProcFs,
    by_pid: HashMap<u32, Cached>,
    /// How many entries of `by_pid` hold a pidfd.
    pidfds: usize,
    lineages: HashMap<u32, Lineage>,
    /// How many entries of `lineages` hold a pidfd.
    lineage_pidfds: usize,
    /// Whether ancestors are remembered (always, except to measure without).
    remember_lineages: bool,
    /// Walks left before the handles of exited ancestors are looked for again, when all
    /// [`MAX_LINEAGE_PIDFDS`] are held.
    sweep_countdown: usize,
    users: Users,
    max: usize,
    tick: u64,
    /// Whether pids of `procfs` are pids of this process' namespace (the real `/proc`), so
    /// pidfds may be opened for them.
    use_pidfds: bool,
    /// Whether pidfds answer `PIDFD_GET_INFO` here (until one says it cannot).
    pidfd_info: bool,
    /// Scratch memory for reading `/proc` files.
    buf: Vec<u8>,
}

impl ProcessCache {
    pub(crate) fn new(procfs: ProcFs, passwd: PathBuf, max: usize) -> ProcessCache {
        ProcessCache {
            use_pidfds: procfs.root() == std::path::Path::new("/proc"),
            procfs,
            by_pid: HashMap::new(),
            pidfds: 0,
            lineages: HashMap::new(),
            lineage_pidfds: 0,
            remember_lineages: true,
            sweep_countdown: 0,
            users: Users::new(passwd),
            max: max.max(1),
            tick: 0,
            pidfd_info: true,
            buf: Vec::new(),
        }
    }

    /// The process `pid` as it is now, and whether it came from the cache.
    pub(crate) fn get(&mut self, pid: u32) -> io::Result<(Arc<ProcessInfo>, bool)> {
        self.lookup(pid, None)
    }

    /// [`get`](Self::get), but only for the process that started at `expected_start`: if `pid`
    /// now belongs to another one, an error before anything else is read.
    fn lookup(
        &mut self,
        pid: u32,
        expected_start: Option<u64>,
    ) -> io::Result<(Arc<ProcessInfo>, bool)> {
        self.tick += 1;
        // Fast check: the described process still runs (so the pid is still its own) and
        // still runs the same executable.
        if let Some(cached) = self.by_pid.get_mut(&pid)
            && cached.pidfd.as_ref().is_some_and(PidFd::is_alive)
        {
            if expected_start.is_some_and(|start| start != cached.start_time) {
                return Err(replaced());
            }
            if self.procfs.exe_raw(pid)? == cached.exe_raw {
                cached.last_used = self.tick;
                return Ok((Arc::clone(&cached.info), true));
            }
        }
        // Opened before reading: if it still runs later, it is the process we read. Not for a
        // process probably described already (its pid is known) when no handle could be kept.
        let pidfd = if self.pidfds < MAX_PIDFDS || !self.by_pid.contains_key(&pid) {
            self.open_pidfd(pid)
        } else {
            None
        };
        let stat = self.procfs.stat_in(pid, &mut self.buf)?;
        if expected_start.is_some_and(|start| start != stat.start_time) {
            return Err(replaced());
        }
        let exe_raw = self.procfs.exe_raw(pid)?;
        if let Some(cached) = self.by_pid.get_mut(&pid)
            && cached.start_time == stat.start_time
            && cached.exe_raw == exe_raw
        {
            cached.last_used = self.tick;
            if !cached.pidfd.as_ref().is_some_and(PidFd::is_alive) {
                let had = cached.pidfd.is_some();
                cached.pidfd = pidfd.filter(|_| self.pidfds < MAX_PIDFDS || had);
                self.pidfds = self.pidfds - usize::from(had) + usize::from(cached.pidfd.is_some());
            }
            return Ok((Arc::clone(&cached.info), true));
        }
        let info = Arc::new(self.read(&stat, &exe_raw, pidfd.as_ref())?);
        // If the pid was recycled while we read, what we read may mix two processes: a pidfd
        // still alive proves it was not; else the start time must not have changed.
        if !pidfd.as_ref().is_some_and(PidFd::is_alive)
            && self.procfs.stat_in(pid, &mut self.buf)?.start_time != stat.start_time
        {
            return Err(replaced());
        }
        if self.by_pid.len() >= self.max && !self.by_pid.contains_key(&pid) {
            self.evict();
        }
        // Kept only while few are held; it still served the reads above.
        let pidfd = pidfd.filter(|_| self.pidfds < MAX_PIDFDS);
        self.pidfds += usize::from(pidfd.is_some());
        let old = self.by_pid.insert(
            pid,
            Cached {
                start_time: stat.start_time,
                exe_raw,
                info: Arc::clone(&info),
                last_used: self.tick,
                pidfd,
            },
        );
        if old.is_some_and(|old| old.pidfd.is_some()) {
            self.pidfds -= 1;
        }
        Ok((info, false))
    }

    /// A pidfd for `pid` if pidfds apply here.
    fn open_pidfd(&self, pid: u32) -> Option<PidFd> {
        if !self.use_pidfds {
            return None;
        }
        PidFd::open(pid).ok()
    }

    /// Drops the least recently used half.
    fn evict(&mut self) {
        let cutoff = median(self.by_pid.values().map(|c| c.last_used).collect());
        self.by_pid.retain(|_, c| c.last_used >= cutoff);
        self.pidfds = self.by_pid.values().filter(|c| c.pidfd.is_some()).count();
    }

    fn read(
        &mut self,
        stat: &Stat,
        exe_raw: &OsStr,
        pidfd: Option<&PidFd>,
    ) -> io::Result<ProcessInfo> {
        let pid = stat.pid;
        let (exe, exe_deleted) = split_deleted(exe_raw);
        let cmdline = self.procfs.cmdline_in(pid, &mut self.buf)?;
        let uid = match self.euid(pidfd) {
            Some(uid) => uid,
            None => self.procfs.effective_uid_in(pid, &mut self.buf)?,
        };
        let cgroup = self.procfs.cgroup_in(pid, &mut self.buf)?;
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
        // The environment only matters (and is only read) for a program inside an AppImage.
        let appimage = if inside_appimage(&exe) {
            self.procfs
                .environ_value(pid, "APPIMAGE")
                .ok()
                .flatten()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute() && p.is_file())
        } else {
            None
        };
        // The security label is only needed to check a snap claim.
        let label = snap_from_cgroup(&cgroup).and_then(|_| self.procfs.security_label(pid).ok());
        let app = identify(IdentityFacts {
            cgroup: &cgroup,
            flatpak_info,
            appimage,
            label,
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

    /// The effective uid from the pidfd, if this kernel answers it. The answer is the read
    /// process's: the pidfd was opened before `stat` was read, and it answers only while its
    /// process holds the pid.
    fn euid(&mut self, pidfd: Option<&PidFd>) -> Option<u32> {
        if !self.pidfd_info {
            return None;
        }
        match pidfd?.euid() {
            Ok(uid) => Some(uid),
            Err(e) => {
                if e.kind() == io::ErrorKind::Unsupported {
                    tracing::debug!(error = %e, "no PIDFD_GET_INFO; uids come from /proc/PID/status");
                    self.pidfd_info = false;
                }
                None
            }
        }
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
        // Revalidated (a pidfd poll and the exe link) if described before, else read only if
        // `stat` shows the pid is still that process.
        if let Ok((info, cached)) = self.lookup(pid, Some(start_time))
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
    pub(crate) fn parents_of_exited(&mut self, ppid: u32, start_time: u64) -> Vec<(u32, PathBuf)> {
        if ppid == 0 {
            return Vec::new();
        }
        self.tick += 1;
        match self.lineage(ppid) {
            (Some(parent_start), links) if parent_start <= start_time => links.to_vec(),
            _ => vec![(ppid, PathBuf::new())],
        }
    }

    /// The ancestors from `ppid` up to pid 1, at most [`MAX_PARENTS`]; an ancestor whose
    /// executable cannot be read (a kernel thread) has an empty path. See [`Lineage`] for how
    /// current each link is.
    fn parents(&mut self, ppid: u32) -> Vec<(u32, PathBuf)> {
        if ppid == 0 {
            return Vec::new();
        }
        self.lineage(ppid).1.to_vec()
    }

    /// `pid` and its ancestors, with `pid`'s start time (`None` if its `stat` cannot be read).
    /// Walks up from `pid`, reading the `exe` link and `stat` of each ancestor, until pid 1, a
    /// process that is its own parent (only in a broken tree), [`MAX_PARENTS`] links, or a
    /// remembered ancestor whose line is reused; then remembers the line of each process read
    /// on the way whose line is whole.
    fn lineage(&mut self, pid: u32) -> (Option<u64>, Links) {
        if let Some((start_time, links)) = self.remembered_lineage(pid, true) {
            return (Some(start_time), links);
        }
        let mut walked: Vec<Walked> = Vec::new();
        let mut base: Option<Links> = None;
        // Whether the walk ended where the line truly ends (not at an unreadable ancestor or
        // at the bound).
        let mut whole = false;
        let mut next = pid;
        if self.lineage_pidfds >= MAX_LINEAGE_PIDFDS {
            self.release_exited_lineage_pidfds();
        }
        loop {
            if !walked.is_empty()
                && let Some((_, links)) = self.remembered_lineage(next, false)
            {
                base = Some(links);
                whole = true;
                break;
            }
            if walked.len() == MAX_PARENTS {
                break;
            }
            let pidfd = if self.lineage_pidfds < MAX_LINEAGE_PIDFDS && self.remember_lineages {
                self.open_pidfd(next)
            } else {
                None
            };
            let exe_raw = self.procfs.exe_raw(next).unwrap_or_default();
            let stat = self.procfs.stat_in(next, &mut self.buf).ok();
            walked.push(Walked {
                pid: next,
                start_time: stat.as_ref().map(|s| s.start_time),
                exe_raw,
                pidfd,
            });
            match stat {
                None => break,
                // pid 1's parent is 0, as is kthreadd's; a process that is its own parent
                // only exists in a broken fake tree.
                Some(stat) if next == 1 || stat.ppid == 0 || stat.ppid == next => {
                    whole = true;
                    break;
                }
                Some(stat) => next = stat.ppid,
            }
        }
        // Build each line from the top down: a process, then its parent's line.
        let mut links: Links = base.unwrap_or_else(|| Arc::from(Vec::new()));
        let mut start_time = None;
        for w in walked.into_iter().rev() {
            let mut line = Vec::with_capacity((links.len() + 1).min(MAX_PARENTS));
            line.push((w.pid, split_deleted(&w.exe_raw).0));
            line.extend(links.iter().take(MAX_PARENTS - 1).cloned());
            links = Arc::from(line);
            start_time = w.start_time;
            if let Some(start_time) = w.start_time
                && (whole || links.len() == MAX_PARENTS)
            {
                self.remember_lineage(
                    w.pid,
                    Lineage {
                        start_time,
                        exe_raw: w.exe_raw,
                        links: Arc::clone(&links),
                        pidfd: w.pidfd,
                        last_used: self.tick,
                    },
                );
            }
        }
        (start_time, links)
    }

    /// The remembered line of `pid` and its start time, if `pid` is still that process (its
    /// pidfd is alive, or without one, the start time matches) and, with `check_exe`, still
    /// runs the same executable.
    fn remembered_lineage(&mut self, pid: u32, check_exe: bool) -> Option<(u64, Links)> {
        let entry = self.lineages.get_mut(&pid)?;
        if !entry.pidfd.as_ref().is_some_and(PidFd::is_alive) {
            // Exited (or never had a handle): its handle is of no more use.
            if entry.pidfd.take().is_some() {
                self.lineage_pidfds -= 1;
            }
            // A zombie keeps its pid, and its start time says so.
            let stat = self.procfs.stat_in(pid, &mut self.buf).ok()?;
            if stat.start_time != entry.start_time {
                return None;
            }
        }
        if check_exe && self.procfs.exe_raw(pid).unwrap_or_default() != entry.exe_raw {
            return None;
        }
        entry.last_used = self.tick;
        Some((entry.start_time, Arc::clone(&entry.links)))
    }

    /// Closes the handles of remembered ancestors that have exited, so that new ones get
    /// handles: at most once every [`MAX_LINEAGE_PIDFDS`] calls (a poll of each handle held).
    fn release_exited_lineage_pidfds(&mut self) {
        if self.sweep_countdown > 0 {
            self.sweep_countdown -= 1;
            return;
        }
        self.sweep_countdown = MAX_LINEAGE_PIDFDS;
        for lineage in self.lineages.values_mut() {
            if lineage.pidfd.as_ref().is_some_and(|fd| !fd.is_alive()) {
                lineage.pidfd = None;
            }
        }
        self.lineage_pidfds = self.lineages.values().filter(|l| l.pidfd.is_some()).count();
    }

    /// Remembers the line of `pid`, in place of any other, within the bounds.
    fn remember_lineage(&mut self, pid: u32, mut lineage: Lineage) {
        if !self.remember_lineages {
            return;
        }
        if let Some(old) = self.lineages.remove(&pid)
            && old.pidfd.is_some()
        {
            self.lineage_pidfds -= 1;
        }
        if self.lineages.len() >= MAX_LINEAGES {
            let cutoff = median(self.lineages.values().map(|l| l.last_used).collect());
            self.lineages.retain(|_, l| l.last_used >= cutoff);
            self.lineage_pidfds = self.lineages.values().filter(|l| l.pidfd.is_some()).count();
        }
        if lineage.pidfd.is_some() {
            if self.lineage_pidfds < MAX_LINEAGE_PIDFDS {
                self.lineage_pidfds += 1;
            } else {
                lineage.pidfd = None;
            }
        }
        self.lineages.insert(pid, lineage);
    }
}

/// The error for a pid that belongs to another process than the one asked about or read.
fn replaced() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "the pid belongs to another process than the one read",
    )
}

/// The median of `ticks` (the upper one of an even count): entries used at or after it are the
/// recent half. `u64::MAX` (drop everything) for none.
fn median(mut ticks: Vec<u64>) -> u64 {
    let middle = ticks.len() / 2;
    if middle >= ticks.len() {
        return u64::MAX;
    }
    *ticks.select_nth_unstable(middle).1
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
    use crate::AppIdentity;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A fake proc tree in a temporary directory (the larger one of `linux::tests` builds fd
    /// links too).
    struct Fake {
        _dir: tempfile::TempDir,
        root: PathBuf,
        passwd: PathBuf,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("proc");
            std::fs::create_dir_all(&root).unwrap();
            let passwd = dir.path().join("passwd");
            std::fs::write(&passwd, "alice:x:1000:1000::/home/alice:/bin/sh\n").unwrap();
            let fake = Fake {
                _dir: dir,
                root,
                passwd,
            };
            fake.add(1, 0, 1, "/sbin/init");
            fake
        }

        /// Creates (or replaces) a process.
        fn add(&self, pid: u32, ppid: u32, start: u64, exe: &str) {
            self.add_with_environ(pid, ppid, start, exe, b"HOME=/home/alice\0");
        }

        fn add_with_environ(&self, pid: u32, ppid: u32, start: u64, exe: &str, environ: &[u8]) {
            let dir = self.root.join(pid.to_string());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let comm = Path::new(exe).file_name().unwrap().to_string_lossy();
            let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
            write(
                "stat",
                format!(
                    "{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n"
                )
                .as_bytes(),
            );
            write("status", b"Name:\tx\nUid:\t1000\t1000\t1000\t1000\n");
            write("cmdline", format!("{exe}\0").as_bytes());
            write(
                "cgroup",
                b"0::/user.slice/user-1000.slice/session-1.scope\n",
            );
            write("environ", environ);
            symlink(exe, dir.join("exe")).unwrap();
        }

        fn cache(&self) -> ProcessCache {
            ProcessCache::new(ProcFs::new(self.root.clone()), self.passwd.clone(), 64)
        }
    }

    fn links(list: &[(u32, &str)]) -> Vec<(u32, PathBuf)> {
        list.iter()
            .map(|&(pid, exe)| (pid, PathBuf::from(exe)))
            .collect()
    }

    /// The counts of held pidfds match the handles held.
    fn assert_counts(cache: &ProcessCache) {
        let held = cache.by_pid.values().filter(|c| c.pidfd.is_some()).count();
        assert_eq!(cache.pidfds, held);
        assert!(held <= MAX_PIDFDS);
        let held = cache
            .lineages
            .values()
            .filter(|l| l.pidfd.is_some())
            .count();
        assert_eq!(cache.lineage_pidfds, held);
        assert!(held <= MAX_LINEAGE_PIDFDS);
        assert!(cache.lineages.len() <= MAX_LINEAGES);
    }

    #[test]
    fn ancestors_are_remembered_and_the_parent_checked() {
        let t = Fake::new();
        t.add(200, 1, 10, "/usr/bin/session");
        t.add(201, 200, 20, "/bin/bash");
        for pid in 300..=305 {
            t.add(pid, 201, 30, "/usr/bin/curl");
        }
        let mut c = t.cache();
        let mut parents = |pid| c.get(pid).unwrap().0.parents.clone();
        let first = links(&[
            (201, "/bin/bash"),
            (200, "/usr/bin/session"),
            (1, "/sbin/init"),
        ]);
        assert_eq!(parents(300), first);

        // The grandparent exits and the parent is reparented to pid 1: the line above the
        // parent is the remembered one (who started it), not read again.
        std::fs::remove_dir_all(t.root.join("200")).unwrap();
        t.add(201, 1, 20, "/bin/bash");
        assert_eq!(parents(301), first);

        // The parent calls execve: read again, with its parent as it is now.
        t.add(201, 1, 20, "/usr/bin/zsh");
        assert_eq!(
            parents(302),
            links(&[(201, "/usr/bin/zsh"), (1, "/sbin/init")])
        );

        // The parent's pid is reused (another start time): read again.
        t.add(201, 1, 40, "/usr/bin/other");
        assert_eq!(
            parents(303),
            links(&[(201, "/usr/bin/other"), (1, "/sbin/init")])
        );

        // A parent that cannot be read at all: its pid alone.
        std::fs::remove_dir_all(t.root.join("201")).unwrap();
        assert_eq!(parents(304), links(&[(201, "")]));
        assert_counts(&c);
    }

    #[test]
    fn a_deep_line_is_remembered_only_where_whole() {
        let t = Fake::new();
        // 1 ← 1000 ← 1001 ← … ← 1040.
        for pid in 1000..=1040_u32 {
            t.add(pid, if pid == 1000 { 1 } else { pid - 1 }, 5, "/bin/sh");
        }
        let mut c = t.cache();
        let deep = c.get(1040).unwrap().0;
        assert_eq!(deep.parents.len(), MAX_PARENTS);
        // The walk stopped at the bound: only the parent's line is whole.
        assert!(c.lineages.contains_key(&1039));
        assert!(!c.lineages.contains_key(&1038));
        // A child of 1020 walks up to pid 1 and remembers every line on the way.
        let shallow = c.get(1021).unwrap().0;
        assert_eq!(shallow.parents.len(), 22);
        assert_eq!(shallow.parents.last().unwrap().0, 1);
        assert!(c.lineages.contains_key(&1000));
        // The deep child's line, made again from remembered lines, is the same.
        let mut again = t.cache();
        again.remember_lineages = false;
        assert_eq!(again.get(1040).unwrap().0.parents, deep.parents);
        assert_counts(&c);
    }

    #[test]
    fn parents_of_an_exited_process_need_an_older_parent() {
        let t = Fake::new();
        t.add(200, 1, 10, "/usr/bin/session");
        let mut c = t.cache();
        // Started before the parent: the pid names another process now.
        assert_eq!(c.parents_of_exited(200, 5), links(&[(200, "")]));
        assert_eq!(
            c.parents_of_exited(200, 15),
            links(&[(200, "/usr/bin/session"), (1, "/sbin/init")])
        );
        assert_eq!(c.parents_of_exited(999, 15), links(&[(999, "")]));
        assert!(c.parents_of_exited(0, 15).is_empty());
    }

    #[test]
    fn the_environment_is_read_only_inside_an_appimage() {
        let t = Fake::new();
        let image = t.root.parent().unwrap().join("Tool.AppImage");
        std::fs::write(&image, b"ELF").unwrap();
        let environ = format!("APPIMAGE={}\0", image.display());
        t.add_with_environ(
            300,
            1,
            5,
            "/tmp/.mount_Tool1a/usr/bin/tool",
            environ.as_bytes(),
        );
        // A program the AppImage started, outside the image: it inherited the variable.
        t.add_with_environ(301, 300, 6, "/usr/bin/firefox", environ.as_bytes());
        let mut c = t.cache();
        assert_eq!(c.get(300).unwrap().0.app, AppIdentity::AppImage(image));
        assert_eq!(
            c.get(301).unwrap().0.app,
            AppIdentity::Executable("/usr/bin/firefox".into())
        );
    }

    #[test]
    fn remembered_lines_and_handles_stay_bounded() {
        let mut c = ProcessCache::new(ProcFs::new("/proc".into()), "/etc/passwd".into(), 8);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let lineage = |fd: Option<PidFd>, tick| Lineage {
            start_time: 1,
            exe_raw: OsString::new(),
            links: Arc::from(Vec::new()),
            pidfd: fd,
            last_used: tick,
        };
        for n in 0..(MAX_LINEAGES + 100) as u32 {
            c.tick += 1;
            let fd = (n < 100).then(|| PidFd::open(child.id()).unwrap());
            c.remember_lineage(1_000_000 + n % 2000, lineage(fd, c.tick));
            assert_counts(&c);
        }
        // Replacing a line with a handle releases the old one.
        c.lineages.clear();
        c.lineage_pidfds = 0;
        for _ in 0..3 {
            c.remember_lineage(5, lineage(Some(PidFd::open(child.id()).unwrap()), c.tick));
            assert_counts(&c);
        }
        // All handles held, of a process that exits: a walk releases them.
        for n in 0..MAX_LINEAGE_PIDFDS as u32 {
            c.remember_lineage(
                10 + n,
                lineage(Some(PidFd::open(child.id()).unwrap()), c.tick),
            );
        }
        assert_eq!(c.lineage_pidfds, MAX_LINEAGE_PIDFDS);
        child.kill().unwrap();
        child.wait().unwrap();
        c.sweep_countdown = 0;
        c.get(std::process::id()).unwrap();
        assert!(c.lineage_pidfds < MAX_LINEAGE_PIDFDS);
        assert_counts(&c);
    }

    #[test]
    fn children_of_this_process_share_its_remembered_line() {
        let me = std::process::id();
        let mut c = ProcessCache::new(ProcFs::new("/proc".into()), "/etc/passwd".into(), 8);
        let mut fresh = ProcessCache::new(ProcFs::new("/proc".into()), "/etc/passwd".into(), 8);
        fresh.remember_lineages = false;
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in &children {
            let info = c.get(child.id()).unwrap().0;
            assert_eq!(info.parents.first().unwrap().0, me);
            assert_eq!(info.parents, fresh.get(child.id()).unwrap().0.parents);
            assert!(c.lineages.contains_key(&me));
        }
        assert!(fresh.lineages.is_empty());
        // The uid from the pidfd (or `status`) is this process's.
        // SAFETY: geteuid(2) cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(c.get(children[0].id()).unwrap().0.uid, euid);
        for child in &mut children {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert_counts(&c);
    }

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
        assert_counts(&cache);
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

    /// Times the description of first-seen processes: 500 children of this process, all
    /// started first (`spawn` returns once a child has called `execve`), then each described
    /// once; their ancestors are this process and its own. With ancestors read for each child
    /// (as before they were remembered) and remembered. Prints p50/p99/max and the first
    /// description (which walks every ancestor); asserts nothing about time. Run with
    /// `cargo test --release -p portcullis-attribution --lib first_sight -- --ignored
    /// --nocapture` on a quiet machine.
    #[test]
    #[ignore = "a measurement: run by hand"]
    fn first_sight_timing() {
        use std::io::Write as _;
        use std::time::{Duration, Instant};
        const CHILDREN: usize = 500;

        let measure = |remember_lineages: bool| -> Vec<Duration> {
            let mut cache = ProcessCache::new(
                ProcFs::new("/proc".into()),
                PathBuf::from("/etc/passwd"),
                4096,
            );
            cache.remember_lineages = remember_lineages;
            let mut children: Vec<_> = (0..CHILDREN)
                .map(|_| {
                    std::process::Command::new("/bin/sleep")
                        .arg("30")
                        .spawn()
                        .unwrap()
                })
                .collect();
            let times = children
                .iter()
                .map(|child| {
                    let started = Instant::now();
                    let (info, cached) = cache.get(child.id()).unwrap();
                    let spent = started.elapsed();
                    assert!(!cached);
                    assert_eq!(info.parents.first().map(|p| p.0), Some(std::process::id()));
                    spent
                })
                .collect();
            for child in &mut children {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            times
        };

        for remember_lineages in [false, true] {
            let times = measure(remember_lineages);
            let first = times.first().copied().unwrap();
            let mut sorted = times;
            sorted.sort_unstable();
            let at = |q: usize| sorted.get(sorted.len() * q / 100).copied().unwrap();
            let _ = writeln!(
                std::io::stderr(),
                "first sight of {CHILDREN} children, ancestors {}: p50 {:.1?}, p99 {:.1?}, \
                 max {:.1?}, first {first:.1?}",
                if remember_lineages {
                    "remembered"
                } else {
                    "read"
                },
                at(50),
                at(99),
                sorted.last().unwrap(),
            );
        }
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
        assert_counts(&cache);
    }
}
