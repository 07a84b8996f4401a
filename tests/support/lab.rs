//! The lab itself: two namespaces joined by a veth pair ([`Lab`]), the handle on each side
//! ([`Ns`]) and everything that runs inside them, and their teardown.
//!
//! A lab owns its namespaces, its directory (logs, app copies, helper state), its cgroup2 group
//! and every process it spawned; `Drop` removes all of it, also during a panic, and never panics
//! itself. The directory lives under `$PCL_LAB_DIR` (default `<tmp>/pcl-lab`), mode 0755 so that
//! programs running as other users can reach app copies and sockets. The cgroup is
//! `<cgroup2 mount>/pcl-<pid>-<N>-<name>`: every process the lab starts runs in it, and the
//! helper attaches its eBPF programs to it (never to the root cgroup).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::bins::lab_bin;
use crate::cgroup::{self, LabCgroup};
use crate::netns;
use crate::process::{self, CmdOutput, LabProcess, ProcEntry};

/// Time limit for one-shot commands run with [`Ns::run`], [`Ns::output`] and [`Ns::run_app`].
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Ns::wait_for_port`] polls.
const PORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace between SIGTERM and SIGKILL at teardown.
const TEARDOWN_GRACE: Duration = Duration::from_secs(3);
/// Name of the veth end in the client and in the server namespace.
const CLIENT_IFACE: &str = "pcl-c";
const SERVER_IFACE: &str = "pcl-s";

/// Transport protocol of a listener, for [`Ns::wait_for_port`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP socket in LISTEN state.
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// Lab indices in use in this process: `N` in 10.77.N.0/24, unique among live labs.
static INDICES: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

fn alloc_index() -> u8 {
    let mut used = INDICES.lock().unwrap_or_else(PoisonError::into_inner);
    let n = (1..=250_u8)
        .find(|n| !used.contains(n))
        .unwrap_or_else(|| panic!("more than 250 labs alive in one process"));
    used.insert(n);
    n
}

fn release_index(n: u8) {
    INDICES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&n);
}

/// Root of all lab directories: `$PCL_LAB_DIR`, or `<tmp>/pcl-lab`. Each lab has a
/// subdirectory named like its namespaces' prefix (`pcl-<pid>-<N>-<name>`).
pub fn lab_root() -> PathBuf {
    std::env::var_os("PCL_LAB_DIR")
        .map_or_else(|| std::env::temp_dir().join("pcl-lab"), PathBuf::from)
}

/// Creates `dir` (and missing parents) and makes it mode 0755 whatever the umask.
pub(crate) fn make_dir(dir: &Path) {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .unwrap_or_else(|e| panic!("cannot create lab directory {}: {e}", dir.display()));
}

/// Lower-case letters, digits and `-`, at most 16 characters; `lab` if nothing is left.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(16)
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "lab".to_owned()
    } else {
        s.to_owned()
    }
}

/// State shared by a lab, its namespace handles and its process handles.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    cgroup: LabCgroup,
    procs: Mutex<Vec<Arc<ProcEntry>>>,
    seq: AtomicU32,
}

impl Shared {
    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One side of a lab: a named network namespace and what runs in it.
///
/// Cheap to clone; clones refer to the same namespace. Using a handle after its lab was dropped
/// panics (the namespace is gone).
#[derive(Debug, Clone)]
pub struct Ns {
    name: String,
    iface: &'static str,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    shared: Arc<Shared>,
}

impl Ns {
    /// The namespace's name (its handle is `/run/netns/<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of this side's veth interface (`pcl-c` or `pcl-s`).
    pub fn iface(&self) -> &str {
        self.iface
    }

    /// This side's IPv4 address on the veth (10.77.N.1 client, 10.77.N.2 server).
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// This side's IPv6 address on the veth (fd77:N::1 client, fd77:N::2 server).
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// The lab's directory (logs, apps, helper state).
    pub fn lab_dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The lab's cgroup2 group (the same for both sides; see [`Lab::cgroup`]).
    pub fn cgroup(&self) -> &Path {
        self.shared.cgroup.path()
    }

    /// A command that runs `program args…` inside this namespace and the lab's cgroup.
    ///
    /// The child joins the namespace with `setns` and the lab's cgroup (writing `0` to its
    /// `cgroup.procs`) between fork and exec (no `nsenter` or `ip netns exec` in between): its
    /// pid is the program's own, which the firewall needs to attribute traffic, and `/sys`
    /// (with the cgroup mount) stays as it is.
    pub fn cmd<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args);
        self.enter(&mut cmd);
        cmd
    }

    /// Makes `cmd` run inside this namespace and the lab's cgroup (idempotent). A command that
    /// an earlier `pre_exec` already moved to another cgroup (a test's own) stays there.
    fn enter(&self, cmd: &mut Command) {
        netns::enter_in_child(cmd, &self.name).unwrap_or_else(|e| {
            panic!(
                "cannot open netns {}: {e} (was the lab dropped?)",
                self.name
            )
        });
        self.shared.cgroup.join_in_child(cmd);
    }

    /// Runs `program args…` in this namespace to completion; panics with its output unless it
    /// exits with 0 (or runs longer than 60 s).
    pub fn run<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Output {
        let cmd = self.cmd(program, args);
        let what = process::describe(&cmd);
        let out = process::output_with_timeout(cmd, CMD_TIMEOUT);
        if !out.success() {
            panic!("`{what}` in netns {} failed: {out}", self.name);
        }
        Output {
            status: out.status,
            stdout: out.stdout.into_bytes(),
            stderr: out.stderr.into_bytes(),
        }
    }

    /// Runs `cmd` in this namespace (and the lab's cgroup) to completion (at most 60 s) and
    /// returns what happened; a non-zero exit is not an error here.
    pub fn output(&self, mut cmd: Command) -> CmdOutput {
        self.enter(&mut cmd);
        process::output_with_timeout(cmd, CMD_TIMEOUT)
    }

    /// Starts `cmd` in this namespace and registers it with the lab, which stops it at teardown.
    ///
    /// The command always joins this namespace and the lab's cgroup, even if it was built with
    /// `Command::new`.
    /// Stdin is null; stdout and stderr go to files in the lab's `logs/` directory (see
    /// [`LabProcess::logs`]), replacing whatever `cmd` had.
    pub fn spawn(&self, mut cmd: Command) -> LabProcess {
        self.enter(&mut cmd);
        let logs = self.shared.dir.join("logs");
        let entry = process::spawn_logged(
            cmd,
            &logs,
            self.shared.next_seq(),
            &netns::registry_path(&self.shared.dir),
        );
        self.shared
            .procs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&entry));
        LabProcess { entry }
    }

    /// Starts the lab's TCP echo server on `[::]:port` (dual-stack) and waits until it listens.
    pub fn tcp_echo(&self, port: u16) -> LabProcess {
        self.echo("tcp", port, Proto::Tcp)
    }

    /// Starts the lab's UDP echo server on `[::]:port` (dual-stack) and waits until it is bound.
    pub fn udp_echo(&self, port: u16) -> LabProcess {
        self.echo("udp", port, Proto::Udp)
    }

    fn echo(&self, mode: &str, port: u16, proto: Proto) -> LabProcess {
        let port_text = port.to_string();
        let p = self.spawn(self.cmd(lab_bin("lab-echo"), [mode, port_text.as_str()]));
        self.wait_for(port, proto, Some(&p));
        p
    }

    /// Polls (up to 5 s) until something in this namespace listens on `port` (TCP) or is bound
    /// to it (UDP), on IPv4 or IPv6; panics on timeout.
    pub fn wait_for_port(&self, port: u16, proto: Proto) {
        self.wait_for(port, proto, None);
    }

    fn wait_for(&self, port: u16, proto: Proto, process: Option<&LabProcess>) {
        let deadline = Instant::now() + PORT_TIMEOUT;
        loop {
            if self.in_ns(|| listening(port, proto)) {
                return;
            }
            if let Some(p) = process
                && let Some(status) = p.try_status()
            {
                panic!(
                    "{} exited ({status}) before listening on {proto:?} port {port} in netns {}\n{}",
                    p.label(),
                    self.name,
                    p.logs()
                );
            }
            if Instant::now() >= deadline {
                let logs = process.map(LabProcess::logs).unwrap_or_default();
                panic!(
                    "nothing listens on {proto:?} port {port} in netns {} after {PORT_TIMEOUT:?}\n\
                     {logs}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `f` on a fresh thread that has joined this namespace and returns its result, e.g.
    /// to open sockets here from the test itself (traffic is then attributed to the test binary).
    pub fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        netns::in_netns(&self.name, f)
    }

    /// Adds an address (`203.0.113.10/32`, `2001:db8::10/128`) to this namespace's loopback, so
    /// that the peer reaches it through its default route — an "Internet" host for tests.
    /// IPv6 addresses are added with `nodad`, usable at once.
    pub fn add_address(&self, cidr: &str) {
        self.add_address_on("lo", cidr);
    }

    /// Adds an address to interface `dev` of this namespace (`nodad` for IPv6).
    pub fn add_address_on(&self, dev: &str, cidr: &str) {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        netns::ip_in(&self.name, &args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs an app (see [`Lab::app`]) in this namespace with `args` (see `lab-app`'s usage) and
    /// returns its output; exit codes are in [`crate::app_codes`].
    pub fn run_app<S: AsRef<OsStr>>(
        &self,
        app: &Path,
        args: impl IntoIterator<Item = S>,
    ) -> CmdOutput {
        self.output(self.cmd(app, args))
    }
}

/// Whether the calling thread's namespace has a `proto` socket on local `port` (TCP: LISTEN).
fn listening(port: u16, proto: Proto) -> bool {
    let (files, want_state) = match proto {
        Proto::Tcp => (["tcp", "tcp6"], Some("0A")),
        Proto::Udp => (["udp", "udp6"], None),
    };
    let port_hex = format!("{port:04X}");
    files.iter().any(|f| {
        // thread-self: this thread's namespace, which may differ from the process's.
        let text =
            std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1).unwrap_or_default();
            let state = cols.nth(1).unwrap_or_default();
            local.rsplit_once(':').is_some_and(|(_, p)| p == port_hex)
                && want_state.is_none_or(|s| s == state)
        })
    })
}

/// A throwaway network: namespaces `client` and `server` joined by a veth pair.
///
/// | | client | server |
/// |---|---|---|
/// | namespace | `pcl-<pid>-<N>-<name>-c` | `pcl-<pid>-<N>-<name>-s` |
/// | veth | `pcl-c` | `pcl-s` |
/// | IPv4 | 10.77.N.1/24 | 10.77.N.2/24 |
/// | IPv6 | fd77:N::1/64 (segment value N) | fd77:N::2/64 |
/// | default routes | via the server | via the client |
///
/// `N` (1..=250) is unique among the labs alive in this process. Loopback is up on both sides
/// and DAD is off, so addresses work at once. The lab also has its own cgroup2 group,
/// `<cgroup2 mount>/pcl-<pid>-<N>-<name>` ([`Lab::cgroup`]): every process started through
/// [`Ns`] runs in it, and [`Ns::start_helper`] passes it to the helper as `--ebpf-cgroup`.
/// Creating a lab first sweeps leftovers of dead runs. Dropping it stops every process it
/// spawned (SIGTERM, then SIGKILL), kills any other process still inside its namespaces or its
/// cgroup, deletes both namespaces, removes the cgroup and its directory (kept if
/// `PCL_LAB_KEEP=1`); during a panic it also prints the tail of every process's logs.
#[derive(Debug)]
#[must_use = "dropping a Lab tears it down at once"]
pub struct Lab {
    prefix: String,
    index: u8,
    client: Ns,
    server: Ns,
    shared: Arc<Shared>,
}

impl Lab {
    /// Builds a lab; `name` (sanitized, at most 16 characters) makes its namespaces easy to spot.
    /// Panics with a clear message if anything fails (after removing what it made), also if the
    /// host has no cgroup2 mount.
    pub fn new(name: &str) -> Lab {
        let Some(cgroup_mount) = cgroup::cgroup2_mount() else {
            panic!(
                "no cgroup2 hierarchy is mounted (see /proc/self/mountinfo): the lab runs its \
                 processes in a cgroup of its own, under /sys/fs/cgroup (pure v2) or \
                 /sys/fs/cgroup/unified (hybrid); mount one, e.g. \
                 `mount -t cgroup2 none /sys/fs/cgroup/unified`"
            );
        };
        let root = lab_root();
        netns::sweep(&root, &cgroup_mount);
        let index = alloc_index();
        let prefix = format!(
            "{}{}-{index}-{}",
            netns::PREFIX,
            std::process::id(),
            sanitize(name)
        );
        let dir = root.join(&prefix);
        make_dir(&root);
        if dir.exists() {
            // Only possible after pid reuse: it belongs to a dead run.
            let _ignored = std::fs::remove_dir_all(&dir);
        }
        make_dir(&dir);
        make_dir(&dir.join("logs"));
        let cgroup = match LabCgroup::create(&cgroup_mount, &prefix) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                let _ignored = std::fs::remove_dir_all(&dir);
                release_index(index);
                panic!(
                    "cannot create the lab's cgroup {}: {e} (needs root and a writable cgroup2 \
                     mount)",
                    cgroup_mount.join(&prefix).display()
                );
            }
        };
        let shared = Arc::new(Shared {
            dir,
            cgroup,
            procs: Mutex::new(Vec::new()),
            seq: AtomicU32::new(0),
        });
        let side = |suffix: &str, iface, host: u8| Ns {
            name: format!("{prefix}-{suffix}"),
            iface,
            ipv4: Ipv4Addr::new(10, 77, index, host),
            ipv6: Ipv6Addr::new(0xfd77, u16::from(index), 0, 0, 0, 0, 0, u16::from(host)),
            shared: Arc::clone(&shared),
        };
        let lab = Lab {
            client: side("c", CLIENT_IFACE, 1),
            server: side("s", SERVER_IFACE, 2),
            prefix,
            index,
            shared,
        };
        // From here on a panic drops `lab`, which removes whatever was made.
        lab.setup();
        lab
    }

    fn setup(&self) {
        for ns in [&self.client, &self.server] {
            netns::netns_add(&ns.name).unwrap_or_else(|e| {
                panic!(
                    "`ip netns add {}` failed: {e} (needs root and iproute2)",
                    ns.name
                )
            });
            // No duplicate address detection: addresses (also link-local) work at once.
            ns.in_ns(|| {
                for conf in ["all", "default"] {
                    let path = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
                    std::fs::write(&path, "0")
                        .unwrap_or_else(|e| panic!("cannot write {path} in a lab netns: {e}"));
                }
            });
        }
        let (c, s) = (&self.client, &self.server);
        let ip =
            |ns: &Ns, args: &[&str]| netns::ip_in(&ns.name, args).unwrap_or_else(|e| panic!("{e}"));
        // Both ends are created directly inside the lab namespaces, never in the root one.
        ip(
            c,
            &[
                "link", "add", c.iface, "type", "veth", "peer", "name", s.iface, "netns", &s.name,
            ],
        );
        for (ns, peer) in [(c, s), (s, c)] {
            let v4 = format!("{}/24", ns.ipv4);
            let v6 = format!("{}/64", ns.ipv6);
            ip(ns, &["link", "set", "lo", "up"]);
            ip(ns, &["addr", "add", &v4, "dev", ns.iface]);
            ip(ns, &["-6", "addr", "add", &v6, "dev", ns.iface, "nodad"]);
            ip(ns, &["link", "set", ns.iface, "up"]);
            ip(
                ns,
                &["route", "add", "default", "via", &peer.ipv4.to_string()],
            );
            ip(
                ns,
                &[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &peer.ipv6.to_string(),
                ],
            );
        }
    }

    /// The common prefix of this lab's names: `pcl-<pid>-<N>-<name>`.
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// `N`: the third octet of the lab's IPv4 subnet and second segment of its IPv6 prefix.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The lab's directory: `logs/`, `apps/`, helper state. Removed at teardown.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The lab's cgroup2 group, `<cgroup2 mount>/pcl-<pid>-<N>-<name>`: every process started
    /// in either namespace runs in it, and the helper attaches its eBPF programs to it. Tests
    /// may attach cgroup programs to it (or to groups they make below it), never elsewhere.
    /// Removed at teardown, with whatever still runs inside.
    pub fn cgroup(&self) -> &Path {
        self.shared.cgroup.path()
    }

    /// The client side: where the helper and the apps run.
    pub fn client(&self) -> &Ns {
        &self.client
    }

    /// The server side: echo servers and "Internet" addresses.
    pub fn server(&self) -> &Ns {
        &self.server
    }

    /// A distinct executable for the app `name`: a copy of `lab-app` at `<dir>/apps/<name>`
    /// (mode 0755), made on first use. The firewall tells apps apart by executable path, so
    /// each name is a different app. Run it with [`Ns::run_app`].
    pub fn app(&self, name: &str) -> PathBuf {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            panic!("app name {name:?} must be a plain file name");
        }
        let apps = self.shared.dir.join("apps");
        make_dir(&apps);
        let path = apps.join(name);
        if !path.exists() {
            let src = lab_bin("lab-app");
            // Copy to a temporary name and rename, so no one can exec a half-written file.
            let tmp = apps.join(format!(".{name}.tmp"));
            std::fs::copy(&src, &tmp)
                .and_then(|_| {
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                })
                .and_then(|()| std::fs::rename(&tmp, &path))
                .unwrap_or_else(|e| {
                    panic!("cannot copy {} to {}: {e}", src.display(), path.display())
                });
        }
        path
    }

    fn teardown(&mut self) {
        let procs = std::mem::take(
            &mut *self
                .shared
                .procs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // SIGTERM everything at once, then give them a shared grace period.
        for p in &procs {
            p.signal(nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + TEARDOWN_GRACE;
        for p in &procs {
            if p.wait_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_none()
                && p.kill().is_none()
            {
                eprintln!(
                    "portcullis-lab: {} (pid {}) survived SIGKILL",
                    p.label(),
                    p.pid()
                );
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "portcullis-lab: tearing down lab {} during a panic; logs:",
                self.prefix
            );
            for p in &procs {
                eprintln!("{}", p.log_tail());
            }
        }
        for ns in [&self.client, &self.server] {
            kill_strays(&ns.name);
            if netns::netns_exists(&ns.name) {
                if let Err(e) = netns::netns_del(&ns.name) {
                    eprintln!("portcullis-lab: `ip netns del {}` failed: {e}", ns.name);
                }
                if netns::netns_exists(&ns.name) {
                    eprintln!(
                        "portcullis-lab: netns {} still exists after teardown",
                        ns.name
                    );
                }
            }
        }
        // Anything still in the lab's cgroup was started by the lab (e.g. an orphan that left
        // the namespaces): killed there, then the group goes.
        if let Err(e) = self.shared.cgroup.remove() {
            eprintln!("portcullis-lab: {e}");
        }
        if std::env::var_os("PCL_LAB_KEEP").is_some_and(|v| v == "1") {
            eprintln!(
                "portcullis-lab: keeping {} (PCL_LAB_KEEP=1)",
                self.shared.dir.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.shared.dir) {
            eprintln!(
                "portcullis-lab: cannot remove {}: {e}",
                self.shared.dir.display()
            );
        }
        release_index(self.index);
    }
}

/// Kills processes still inside our own namespace `name` that the lab did not spawn directly
/// (children of spawned processes, or commands a test started itself): they would keep the
/// namespace alive after its name is gone. They can only come from this run.
fn kill_strays(name: &str) {
    let Some(inode) = netns::netns_inode(name) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let strays = netns::pids_in_netns(inode);
        if strays.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("portcullis-lab: processes {strays:?} are still inside netns {name}");
            return;
        }
        for pid in strays {
            eprintln!(
                "portcullis-lab: killing stray process {pid} ({}) in netns {name}",
                netns::comm(pid)
            );
            let _ignored = netns::sigkill(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Never let a second panic abort the process: report and carry on.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.teardown()));
        if result.is_err() {
            eprintln!("portcullis-lab: teardown of {} panicked", self.prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_names_short_and_plain() {
        assert_eq!(sanitize("Echo Test"), "echo-test");
        assert_eq!(sanitize("a/b"), "a-b");
        assert_eq!(sanitize("///"), "lab");
        assert_eq!(sanitize("a-very-long-name-indeed"), "a-very-long-name");
    }

    #[test]
    fn indices_are_unique_and_reused() {
        let a = alloc_index();
        let b = alloc_index();
        assert_ne!(a, b);
        release_index(a);
        release_index(b);
    }
}
