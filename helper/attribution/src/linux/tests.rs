//! Unit tests of the `/proc` stages against a fake proc tree in a temporary directory: what
//! the index and the process cache answer when processes exit, exec, or their pids are reused.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::inodes::{IndexConfig, InodeIndex, Owner};
use super::processes::ProcessCache;
use super::procfs::ProcFs;
use crate::AppIdentity;

/// One process of the fake tree.
struct Fake<'a> {
    pid: u32,
    ppid: u32,
    start: u64,
    exe: &'a str,
    cgroup: &'a str,
    environ: &'a [u8],
    fds: &'a [(u32, u64)],
}

impl Default for Fake<'_> {
    fn default() -> Self {
        Fake {
            pid: 100,
            ppid: 1,
            start: 1000,
            exe: "/usr/bin/app",
            cgroup: "0::/user.slice/user-1000.slice/session-1.scope\n",
            environ: b"HOME=/home/u\0",
            fds: &[],
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Creates (or replaces) the process in the tree rooted at `root`.
fn make(root: &Path, p: &Fake<'_>) {
    let dir = root.join(p.pid.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("fd")).unwrap();
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let comm = Path::new(p.exe).file_name().unwrap().to_string_lossy();
    let stat = format!(
        "{} ({comm}) S {} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0\n",
        p.pid, p.ppid, p.start
    );
    write(&dir.join("stat"), stat.as_bytes());
    write(
        &dir.join("status"),
        format!("Name:\t{comm}\nUid:\t1000\t1000\t1000\t1000\n").as_bytes(),
    );
    write(
        &dir.join("cmdline"),
        format!("{}\0--flag\0", p.exe).as_bytes(),
    );
    write(&dir.join("cgroup"), p.cgroup.as_bytes());
    write(&dir.join("environ"), p.environ);
    symlink(p.exe, dir.join("exe")).unwrap();
    for (fd, inode) in p.fds {
        symlink(
            format!("socket:[{inode}]"),
            dir.join("fd").join(fd.to_string()),
        )
        .unwrap();
    }
    symlink("/dev/null", dir.join("fd").join("0")).unwrap();
}

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    passwd: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("proc");
    std::fs::create_dir_all(&root).unwrap();
    let passwd = dir.path().join("passwd");
    write(
        &passwd,
        b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    );
    make(
        &root,
        &Fake {
            pid: 1,
            ppid: 0,
            start: 1,
            exe: "/sbin/init",
            ..Fake::default()
        },
    );
    Tree {
        _dir: dir,
        root,
        passwd,
    }
}

fn config() -> IndexConfig {
    IndexConfig {
        negative_ttl: Duration::from_secs(60),
        scan_budget_per_second: Duration::from_millis(250),
        scan_burst: Duration::from_secs(10),
    }
}

fn index(t: &Tree) -> InodeIndex {
    InodeIndex::new(ProcFs::new(t.root.clone()), &config(), Instant::now())
}

fn cache(t: &Tree) -> ProcessCache {
    ProcessCache::new(ProcFs::new(t.root.clone()), t.passwd.clone(), 64)
}

#[test]
fn index_finds_caches_and_rechecks_holders() {
    let t = tree();
    make(
        &t.root,
        &Fake {
            fds: &[(3, 555), (4, 556)],
            ..Fake::default()
        },
    );
    let mut idx = index(&t);
    let now = Instant::now();
    assert_eq!(
        idx.owner(555, 1000, now),
        Owner::Found {
            pid: 100,
            cached: false
        }
    );
    assert_eq!(idx.counters.full_scans, 1);
    // The scan recorded the other socket of the same process too.
    assert_eq!(
        idx.owner(556, 1000, now),
        Owner::Found {
            pid: 100,
            cached: true
        }
    );
    // A new socket of a recent owner is found by the targeted scan, without a full scan.
    make(
        &t.root,
        &Fake {
            fds: &[(3, 555), (4, 556), (5, 557)],
            ..Fake::default()
        },
    );
    assert_eq!(
        idx.owner(557, 1000, now),
        Owner::Found {
            pid: 100,
            cached: false
        }
    );
    assert_eq!(idx.counters.full_scans, 1);
    assert_eq!(idx.counters.targeted_scans, 1);
}

#[test]
fn index_never_returns_a_pid_that_no_longer_holds_the_socket() {
    let t = tree();
    make(
        &t.root,
        &Fake {
            fds: &[(3, 555)],
            ..Fake::default()
        },
    );
    let mut idx = index(&t);
    let now = Instant::now();
    assert!(matches!(
        idx.owner(555, 1000, now),
        Owner::Found { pid: 100, .. }
    ));
    // Pid 100 exits and is reused by another program, which has a different socket at fd 3;
    // socket 555 now lives in process 200 (it was inherited before the exit).
    make(
        &t.root,
        &Fake {
            start: 5000,
            exe: "/usr/bin/other",
            fds: &[(3, 999)],
            ..Fake::default()
        },
    );
    make(
        &t.root,
        &Fake {
            pid: 200,
            fds: &[(7, 555)],
            ..Fake::default()
        },
    );
    assert!(matches!(
        idx.owner(555, 1000, now),
        Owner::Found { pid: 200, .. }
    ));
    // Nobody holds it any more: a complete scan says so, and the answer is remembered.
    std::fs::remove_file(t.root.join("200/fd/7")).unwrap();
    assert_eq!(idx.owner(555, 1000, now), Owner::NotHeld);
    let scans = idx.counters.full_scans;
    assert_eq!(idx.owner(555, 1000, now), Owner::NotHeld);
    assert_eq!(idx.counters.full_scans, scans);
    assert_eq!(idx.counters.negative_hits, 1);
    // After the negative entry expires, it scans again.
    assert_eq!(
        idx.owner(555, 1000, now + Duration::from_secs(61)),
        Owner::NotHeld
    );
    assert_eq!(idx.counters.full_scans, scans + 1);
}

#[test]
fn index_throttles_when_the_budget_is_spent() {
    let t = tree();
    make(
        &t.root,
        &Fake {
            fds: &[(3, 555)],
            ..Fake::default()
        },
    );
    let mut idx = InodeIndex::new(
        ProcFs::new(t.root.clone()),
        &IndexConfig {
            scan_burst: Duration::ZERO,
            ..config()
        },
        Instant::now(),
    );
    assert_eq!(idx.owner(555, 1000, Instant::now()), Owner::Throttled);
    assert_eq!(idx.counters.throttled, 1);
    assert_eq!(idx.counters.full_scans, 0);
}

#[test]
fn process_cache_is_keyed_by_start_time_and_executable() {
    let t = tree();
    make(&t.root, &Fake::default());
    let mut c = cache(&t);
    let (first, cached) = c.get(100).unwrap();
    assert!(!cached);
    assert_eq!(first.exe, Path::new("/usr/bin/app"));
    assert_eq!(first.start_time, 1000);
    assert_eq!(first.cmdline, ["/usr/bin/app", "--flag"]);
    assert_eq!(first.uid, 1000);
    assert_eq!(first.user.as_deref(), Some("alice"));
    assert_eq!(first.parents, [(1, PathBuf::from("/sbin/init"))]);
    assert_eq!(first.app, AppIdentity::Executable("/usr/bin/app".into()));
    assert!(c.get(100).unwrap().1);

    // The pid is recycled by another program: never the old description.
    make(
        &t.root,
        &Fake {
            start: 2000,
            exe: "/usr/bin/other",
            ..Fake::default()
        },
    );
    let (second, cached) = c.get(100).unwrap();
    assert!(!cached);
    assert_eq!(second.exe, Path::new("/usr/bin/other"));
    assert_eq!(second.start_time, 2000);

    // Same pid and start time, new executable: it called execve.
    make(
        &t.root,
        &Fake {
            start: 2000,
            exe: "/tmp/python3",
            ..Fake::default()
        },
    );
    let (third, cached) = c.get(100).unwrap();
    assert!(!cached);
    assert_eq!(third.exe, Path::new("/tmp/python3"));

    // Gone: an error, not a stale answer.
    std::fs::remove_dir_all(t.root.join("100")).unwrap();
    assert!(c.get(100).is_err());
}

#[test]
fn process_identity_flatpak_snap_appimage_and_deleted_exe() {
    let t = tree();
    let flatpak = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/\
                   app-flatpak-org.mozilla.firefox-4242.scope\n";
    make(
        &t.root,
        &Fake {
            pid: 300,
            cgroup: flatpak,
            exe: "/app/lib/firefox/firefox",
            ..Fake::default()
        },
    );
    write(
        &t.root.join("300/root/.flatpak-info"),
        b"[Application]\nname=org.mozilla.firefox\n",
    );
    // The same scope name without a sandbox is not believed.
    make(
        &t.root,
        &Fake {
            pid: 301,
            cgroup: flatpak,
            ..Fake::default()
        },
    );
    make(
        &t.root,
        &Fake {
            pid: 302,
            cgroup: "12:pids:/x\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/\
                     snap.spotify.spotify-0a1b2c3d.scope\n",
            ..Fake::default()
        },
    );
    // snapd's AppArmor label confirms the scope's claim.
    std::fs::create_dir_all(t.root.join("302/attr")).unwrap();
    write(
        &t.root.join("302/attr/current"),
        b"snap.spotify.spotify (enforce)\n",
    );
    let image = t.root.parent().unwrap().join("Tool.AppImage");
    write(&image, b"ELF");
    let environ = format!("HOME=/home/u\0APPIMAGE={}\0", image.display());
    make(
        &t.root,
        &Fake {
            pid: 303,
            environ: environ.as_bytes(),
            exe: "/tmp/.mount_ToolXYZ/usr/bin/tool",
            ..Fake::default()
        },
    );
    make(
        &t.root,
        &Fake {
            pid: 304,
            environ: b"APPIMAGE=/nonexistent/Gone.AppImage\0",
            exe: "/usr/bin/app (deleted)",
            ppid: 303,
            ..Fake::default()
        },
    );
    let mut c = cache(&t);
    let app = |c: &mut ProcessCache, pid| c.get(pid).unwrap().0.app.clone();
    assert_eq!(
        app(&mut c, 300),
        AppIdentity::Flatpak("org.mozilla.firefox".into())
    );
    assert_eq!(
        app(&mut c, 301),
        AppIdentity::Executable("/usr/bin/app".into())
    );
    assert_eq!(app(&mut c, 302), AppIdentity::Snap("spotify".into()));
    assert_eq!(app(&mut c, 303), AppIdentity::AppImage(image.clone()));
    let deleted = c.get(304).unwrap().0;
    assert_eq!(deleted.app, AppIdentity::Executable("/usr/bin/app".into()));
    assert!(deleted.exe_deleted);
    assert_eq!(
        deleted.parents,
        [
            (303, PathBuf::from("/tmp/.mount_ToolXYZ/usr/bin/tool")),
            (1, PathBuf::from("/sbin/init"))
        ]
    );
}

#[test]
fn parents_stop_at_the_bound_and_at_loops() {
    let t = tree();
    // A chain of 40 ancestors: 1000 ← 1001 ← … ← 1040.
    for pid in 1000..=1040_u32 {
        make(
            &t.root,
            &Fake {
                pid,
                ppid: if pid == 1000 { 1 } else { pid - 1 },
                ..Fake::default()
            },
        );
    }
    // A process that is its own parent (only in a broken fake tree).
    make(
        &t.root,
        &Fake {
            pid: 50,
            ppid: 50,
            ..Fake::default()
        },
    );
    let mut c = cache(&t);
    let deep = c.get(1040).unwrap().0;
    assert_eq!(deep.parents.len(), super::processes::MAX_PARENTS);
    assert_eq!(deep.parents.first().unwrap().0, 1039);
    let looped = c.get(50).unwrap().0;
    assert_eq!(looped.parents.len(), 1);
}

#[test]
fn cgroup2_mount_is_found_here() {
    // Every supported host mounts cgroup2 somewhere (pure v2 or hybrid).
    let mount = super::cgroup2_mount().unwrap();
    assert!(mount.join("cgroup.procs").exists(), "{}", mount.display());
}

#[test]
fn timing_of_a_complete_scan_of_this_machine() {
    use std::io::Write as _;
    let mut idx = InodeIndex::new(ProcFs::new("/proc".into()), &config(), Instant::now());
    // No socket has this inode: every process is read.
    let started = Instant::now();
    assert_eq!(
        idx.owner(u64::MAX, u32::MAX, Instant::now()),
        Owner::NotHeld
    );
    let spent = started.elapsed();
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    let fds: usize = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path().join("fd")).ok())
        .map(|d| d.count())
        .sum();
    let _ = writeln!(
        std::io::stderr(),
        "complete /proc/*/fd scan: {spent:.1?} ({processes} processes, {fds} descriptors)"
    );
}

#[test]
fn a_storm_of_unowned_sockets_stays_within_the_scan_budget() {
    let config = IndexConfig {
        negative_ttl: Duration::from_secs(1),
        scan_budget_per_second: Duration::from_millis(100),
        scan_burst: Duration::from_millis(10),
    };
    let mut idx = InodeIndex::new(ProcFs::new("/proc".into()), &config, Instant::now());
    let started = Instant::now();
    // Every lookup is a different socket that no process holds: each would need a full scan.
    let mut inode = u64::MAX - 10_000_000;
    while started.elapsed() < Duration::from_millis(300) {
        assert_ne!(
            idx.owner(inode, 0, Instant::now()),
            Owner::Found {
                pid: 0,
                cached: false
            }
        );
        inode += 1;
    }
    let elapsed = started.elapsed();
    let c = idx.counters;
    let allowed = config.scan_burst + elapsed / 10 + c.longest_scan;
    assert!(
        c.scan_time <= allowed,
        "scanned {:?} in {elapsed:?}, allowed {allowed:?}: {c:?}",
        c.scan_time
    );
    assert!(c.throttled > 0, "{c:?}");
}
