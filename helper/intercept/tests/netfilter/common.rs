//! Helpers shared by the lab tests: rule-set snapshots, a queue consumer thread, cgroups.

use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis_intercept::{InterceptConfig, InterceptError, PacketInfo, Queue, QueueStopper};
use portcullis_lab::Ns;
use portcullis_protocol::{Direction, Verdict};

/// The save tools whose output a snapshot holds.
const SAVE_TOOLS: [&str; 4] = [
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
];

/// `iptables-save` output without what changes by itself: comment lines (`# Generated …`,
/// warnings) and counters (`[0:0]`).
pub fn normalize(save: &str) -> String {
    let mut out = String::new();
    for line in save.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = match (line.starts_with(':'), line.rfind(" [")) {
            (true, Some(i)) if line.ends_with(']') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn snapshot_with(run: impl Fn(&str) -> String) -> String {
    SAVE_TOOLS
        .iter()
        .map(|tool| format!("=== {tool}\n{}", normalize(&run(tool))))
        .collect()
}

/// Every rule set of namespace `ns`, both backends and families, normalized.
pub fn snapshot(ns: &Ns) -> String {
    snapshot_with(|tool| {
        let out = ns.output(Command::new(tool));
        assert!(out.success(), "{tool} in {}: {out}", ns.name());
        out.stdout
    })
}

/// Every rule set of the machine's own namespace (read only), normalized.
pub fn root_snapshot() -> String {
    snapshot_with(|tool| {
        let out = Command::new(tool).output().expect("run a save tool");
        assert!(out.status.success(), "{tool}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// The normalized `iptables-save`/`ip6tables-save` (nft) of `ns` for one family.
pub fn save(ns: &Ns, tool: &str) -> String {
    let out = ns.output(Command::new(tool));
    assert!(out.success(), "{out}");
    normalize(&out.stdout)
}

/// Runs `iptables`-like `tool` with `args` in `ns`; panics on failure.
pub fn ipt(ns: &Ns, tool: &str, args: &str) {
    ns.run(tool, args.split_whitespace());
}

/// A config for tests: the defaults with `fail_open` as given.
pub fn config(fail_open: bool) -> InterceptConfig {
    InterceptConfig {
        fail_open,
        ..InterceptConfig::default()
    }
}

/// What the consumer saw of one packet.
#[derive(Debug, Clone)]
pub struct Seen {
    pub packet: Result<PacketInfo, portcullis_intercept::PacketError>,
    pub direction: Option<Direction>,
    pub mark: u32,
    pub verdict: Verdict,
}

/// A queue consumer on its own thread, answering with `decide`.
pub struct Consumer {
    stopper: QueueStopper,
    handle: Option<JoinHandle<Vec<Seen>>>,
}

impl Consumer {
    /// Opens the queue inside `ns` and answers every packet on a thread with `decide`.
    pub fn start(
        ns: &Ns,
        config: &InterceptConfig,
        decide: impl Fn(&PacketInfo) -> Verdict + Send + 'static,
    ) -> Consumer {
        let mut queue = ns.in_ns(|| Queue::open(config)).expect("open the queue");
        let stopper = queue.stopper();
        let handle = std::thread::spawn(move || {
            let mut all = Vec::new();
            loop {
                let p = match queue.recv() {
                    Ok(p) => p,
                    Err(InterceptError::Stopped) => return all,
                    Err(e) => panic!("recv: {e}"),
                };
                let packet = p.packet();
                let verdict = match &packet {
                    Ok(info) => decide(info),
                    Err(_) => Verdict::Block,
                };
                let seen = Seen {
                    packet,
                    direction: p.direction(),
                    mark: p.mark(),
                    verdict,
                };
                queue.verdict(p, verdict).expect("verdict");
                all.push(seen);
            }
        });
        Consumer {
            stopper,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns everything it saw.
    pub fn stop(mut self) -> Vec<Seen> {
        self.stopper.stop();
        let handle = self.handle.take().expect("running");
        handle.join().expect("consumer thread panicked")
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Waits up to `timeout` for `f` to hold.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cgroup2 group made for one test, removed on drop.
pub struct TestCgroup {
    dir: std::path::PathBuf,
    rel: String,
}

impl TestCgroup {
    /// Creates `<cgroup2 mount>/pcl-<pid>-<name>`; `None` without a cgroup2 mount.
    pub fn create(name: &str) -> Option<TestCgroup> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(str::to_owned))
                .flatten()
        })?;
        let rel = format!("/pcl-{}-{name}", std::process::id());
        let dir = std::path::Path::new(&mount).join(rel.trim_start_matches('/'));
        std::fs::create_dir(&dir).expect("create a test cgroup");
        Some(TestCgroup { dir, rel })
    }

    /// The path for `exclude_cgroup`.
    pub fn rule_path(&self) -> String {
        self.rel.clone()
    }

    /// Makes `cmd`'s child move itself into this cgroup before exec.
    pub fn enter_in_child(&self, cmd: &mut Command) {
        use std::os::fd::AsRawFd as _;
        use std::os::unix::process::CommandExt as _;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
            .expect("open cgroup.procs");
        // SAFETY: runs in the forked child before exec and only calls write(2) (async-signal-
        // safe) on a descriptor the closure keeps open; "0" moves the writing process.
        unsafe {
            cmd.pre_exec(move || {
                let rc = libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1);
                if rc == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // The cgroup empties when its last process has been reaped; give it a moment.
        let _ = wait_until(Duration::from_secs(3), || {
            std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
        });
    }
}
