//! eBPF attribution in a lab: the programs are attached to a cgroup made for each test (never
//! to the root cgroup or any existing one), only processes the test starts are moved into it,
//! and all traffic stays between the lab's namespaces. Short-lived apps connect or send and
//! exit; the attributor still names them afterwards, which sock_diag and `/proc` alone cannot.
//! Needs root; build the lab's programs first with `cargo build -p portcullis-lab --bins`.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed step must fail the test at once, with its message"
)]

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use portcullis_attribution::{
    AppIdentity, Attribution, AttributionConfig, AttributionError, Attributor, Direction, Flow,
    Protocol,
};
use portcullis_lab::{Lab, Ns, Proto, lab_bin};

/// Prefix of the cgroups these tests make (under the cgroup2 mount).
const CGROUP_PREFIX: &str = "pcl-test-";

/// A cgroup2 directory made for one test. Only processes the test starts join it; dropping it
/// kills whatever is still inside (all of it started by the test) and removes the directory,
/// also while a panic unwinds.
struct TestCgroup {
    path: PathBuf,
    /// `cgroup.procs`, open for the children to write `0` (themselves) into.
    procs: Arc<OwnedFd>,
}

static CGROUP_SEQ: AtomicU32 = AtomicU32::new(0);

impl TestCgroup {
    fn new() -> TestCgroup {
        let mount = portcullis_attribution::cgroup2_mount()
            .expect("no cgroup2 hierarchy is mounted: the eBPF tests need one");
        sweep(&mount);
        let n = CGROUP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = mount.join(format!("{CGROUP_PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create test cgroup {}: {e}", path.display()));
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .map(OwnedFd::from);
        let procs = match procs {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                panic!("cannot open {}/cgroup.procs: {e}", path.display());
            }
        };
        TestCgroup { path, procs }
    }

    /// Makes `cmd`'s process join this cgroup before it execs.
    fn join(&self, cmd: &mut Command) {
        let fd = Arc::clone(&self.procs);
        // SAFETY: runs in the forked child before exec and only calls write(2) (async-signal-
        // safe) on a descriptor the Arc keeps open; writing "0" moves the calling process.
        unsafe {
            cmd.pre_exec(move || {
                let rc = libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1);
                if rc == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() && std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                let _ = writeln!(
                    std::io::stderr(),
                    "cannot remove test cgroup {} (processes {pids:?})",
                    self.path.display()
                );
                return;
            }
            // Everything in here was started by this test.
            for pid in pids {
                if let Ok(pid) = i32::try_from(pid) {
                    // SAFETY: kill(2) with a pid read from our own test cgroup; no memory.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Removes empty test cgroups of earlier runs whose process is gone (never kills anything).
fn sweep(mount: &Path) {
    let Ok(entries) = std::fs::read_dir(mount) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(CGROUP_PREFIX) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

fn config(cgroup: Option<&TestCgroup>) -> AttributionConfig {
    AttributionConfig {
        ebpf_cgroup: cgroup.map(|c| c.path.clone()),
        ..AttributionConfig::default()
    }
}

fn attributor(ns: &Ns, config: AttributionConfig) -> Attributor {
    ns.in_ns(|| Attributor::new(config))
        .unwrap_or_else(|e| panic!("cannot make the attributor: {e}: {:?}", error_chain(&e)))
}

fn error_chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push(s.to_string());
        source = s.source();
    }
    out
}

/// One `ok …` line of lab-app.
#[derive(Debug, Clone)]
struct AppRun {
    pid: u32,
    local: SocketAddr,
    peer: SocketAddr,
}

fn parse_ok(line: &str, ns: &Ns) -> Option<AppRun> {
    let rest = line.strip_prefix("ok ")?;
    let field =
        |name: &str| -> Option<&str> { rest.split_whitespace().find_map(|w| w.strip_prefix(name)) };
    let peer: SocketAddr = field("peer=")?.parse().ok()?;
    let mut local: SocketAddr = field("local=")?.parse().ok()?;
    if local.ip().is_unspecified() {
        let ip: IpAddr = if peer.is_ipv4() {
            ns.ipv4().into()
        } else {
            ns.ipv6().into()
        };
        local.set_ip(ip);
    }
    Some(AppRun {
        pid: field("pid=")?.parse().ok()?,
        local,
        peer,
    })
}

/// Runs `app args…` to completion in the client namespace, inside `cgroup`.
fn run_app(lab: &Lab, cgroup: &TestCgroup, app: &Path, args: &[&str]) -> AppRun {
    let mut cmd = Command::new(app);
    cmd.args(args);
    cgroup.join(&mut cmd);
    let out = lab.client().output(cmd);
    assert!(out.success(), "{} {args:?}: {out}", app.display());
    out.stdout
        .lines()
        .find_map(|l| parse_ok(l, lab.client()))
        .unwrap_or_else(|| panic!("no ok line: {out}"))
}

fn outbound(protocol: Protocol, run: &AppRun) -> Flow {
    Flow {
        protocol,
        direction: Direction::Outbound,
        local: run.local,
        remote: run.peer,
    }
}

fn exe_of(app: &Path) -> PathBuf {
    std::fs::canonicalize(app).unwrap()
}

/// Asserts that `got` names process `pid` running `exe`.
fn expect_named(got: &Attribution, pid: u32, exe: &Path, what: &str) {
    let Attribution::Process(info) = got else {
        panic!("{what}: expected pid {pid}, got {got:?}");
    };
    assert_eq!(info.pid, pid, "{what}: {info:#?}");
    assert_eq!(info.exe, exe, "{what}: {info:#?}");
    assert_eq!(
        info.app,
        AppIdentity::Executable(exe.to_path_buf()),
        "{what}"
    );
    assert_eq!(info.uid, 0, "{what}");
    assert_eq!(info.user.as_deref(), Some("root"), "{what}");
    let name = exe.file_name().unwrap().to_string_lossy();
    let short: String = name.chars().take(15).collect();
    assert_eq!(info.comm, short, "{what}");
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

#[test]
fn tcp_connect_then_exit_is_still_attributed() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-tcp");
    let _echo = lab.server().tcp_echo(7001);
    let mut with = attributor(lab.client(), config(Some(&cgroup)));
    let mut without = attributor(lab.client(), config(None));
    let app = lab.app("short-tcp");
    let exe = exe_of(&app);
    for server in [
        lab.server().ipv4().to_string(),
        lab.server().ipv6().to_string(),
    ] {
        let run = run_app(&lab, &cgroup, &app, &["connect", "tcp", &server, "7001"]);
        assert!(gone(run.pid), "the app should have exited");
        let flow = outbound(Protocol::Tcp, &run);
        // sock_diag + /proc cannot: the socket has no holder (or no file) any more.
        let fallback = without.attribute(&flow);
        assert!(
            !matches!(fallback, Attribution::Process(_)),
            "without eBPF: {fallback:?}"
        );
        let got = with.attribute(&flow);
        expect_named(&got, run.pid, &exe, &format!("tcp to {server}"));
        let Attribution::Process(info) = &got else {
            unreachable!()
        };
        assert!(info.partial, "never seen alive: from the kernel's record");
        assert!(info.cmdline.is_empty());
        assert_eq!(
            info.parents.first().map(|p| p.0),
            Some(std::process::id()),
            "the lab runs apps from this test process"
        );
        // Asked again: the same description, from the cache.
        assert_eq!(with.attribute(&flow), got);
    }
    let stats = with.stats();
    assert_eq!(stats.ebpf_closed_hits, 4, "{stats:?}");
    assert_eq!(stats.recorded_descriptions, 2, "{stats:?}");
    assert_eq!(stats.ebpf_errors, 0);
    let status = with.ebpf_status().unwrap();
    assert_eq!(status.programs, 9);
    assert!(status.flows_recorded >= 2, "{status:?}");
    assert_eq!(status.update_failures, 0, "{status:?}");
    assert_eq!(status.exe_unread, 0, "{status:?}");
}

#[test]
fn udp_sendto_then_exit_is_still_attributed() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-udp");
    let _echo = lab.server().udp_echo(7002);
    let mut with = attributor(lab.client(), config(Some(&cgroup)));
    let mut without = attributor(lab.client(), config(None));
    let app = lab.app("short-udp");
    let exe = exe_of(&app);
    let v4 = lab.server().ipv4().to_string();
    let v6 = lab.server().ipv6().to_string();
    // Unconnected sendto() (sendmsg4/6), and connect()+send() (recorded as the socket closes).
    for (verb, server) in [
        ("send", &v4),
        ("send", &v6),
        ("connect", &v4),
        ("connect", &v6),
    ] {
        let run = run_app(&lab, &cgroup, &app, &[verb, "udp", server, "7002"]);
        assert!(gone(run.pid));
        let flow = outbound(Protocol::Udp, &run);
        assert_eq!(
            without.attribute(&flow),
            Attribution::NotFound,
            "{verb} {server}"
        );
        expect_named(
            &with.attribute(&flow),
            run.pid,
            &exe,
            &format!("udp {verb} to {server}"),
        );
    }
    // A live connected UDP socket: found by sock_diag, named by its cookie.
    let mut cmd = Command::new(&app);
    cmd.args([
        "connect",
        "udp",
        &v4,
        "7002",
        "--ready",
        "--hold-ms",
        "30000",
    ]);
    cgroup.join(&mut cmd);
    let held = lab.client().spawn(cmd);
    let run = wait_ready(&held, lab.client());
    expect_named(
        &with.attribute(&outbound(Protocol::Udp, &run)),
        run.pid,
        &exe,
        "live connected udp",
    );
    let stats = with.stats();
    assert!(stats.ebpf_closed_hits >= 4, "{stats:?}");
    assert_eq!(stats.ebpf_errors, 0);
}

/// Waits for lab-app's `ready` line.
fn wait_ready(process: &portcullis_lab::LabProcess, ns: &Ns) -> AppRun {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = process.stdout();
        if let Some(run) = out.lines().find_map(|l| {
            l.strip_prefix("ready ")
                .and_then(|r| r.split_once(' '))
                .and_then(|(_, rest)| parse_ok(&format!("ok {rest}"), ns))
        }) {
            return run;
        }
        assert!(
            process.is_running() && Instant::now() < deadline,
            "never ready\n{}",
            process.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn inbound_connections_are_attributed_to_the_listener_even_after_it_exits() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-inbound");
    let client = lab.client();
    // Both with eBPF: `looked` sees the listener alive; `unseen` is asked only after it exits.
    let mut looked = attributor(client, config(Some(&cgroup)));
    let mut unseen = attributor(client, config(Some(&cgroup)));
    let mut without = attributor(client, config(None));
    let echo_exe = exe_of(&lab_bin("lab-echo"));
    let mut cmd = Command::new(lab_bin("lab-echo"));
    cmd.args(["tcp", "7100"]);
    cgroup.join(&mut cmd);
    let listener = client.spawn(cmd);
    client.wait_for_port(7100, Proto::Tcp);

    // A SYN before any connection exists: the listener (from /proc; eBPF holds it back).
    let syn = Flow {
        protocol: Protocol::Tcp,
        direction: Direction::Inbound,
        local: SocketAddr::new(client.ipv4().into(), 7100),
        remote: SocketAddr::new(lab.server().ipv4().into(), 45678),
    };
    for attr in [&mut looked, &mut without] {
        let got = attr.attribute(&syn);
        let Attribution::Process(info) = &got else {
            panic!("syn: {got:?}");
        };
        assert_eq!(
            (info.pid, info.exe.as_path()),
            (listener.pid(), echo_exe.as_path())
        );
    }

    // Accepted connections from the server side, over IPv4 and IPv6.
    let app = lab.app("visitor");
    let mut flows = Vec::new();
    for ip in [client.ipv4().to_string(), client.ipv6().to_string()] {
        let out = lab
            .server()
            .run_app(&app, ["connect", "tcp", &ip, "7100", "--send", "hi"]);
        assert!(out.success(), "{out}");
        let run = out
            .stdout
            .lines()
            .find_map(|l| parse_ok(l, lab.server()))
            .unwrap();
        flows.push(Flow {
            protocol: Protocol::Tcp,
            direction: Direction::Inbound,
            local: run.peer,
            remote: run.local,
        });
    }
    for flow in &flows {
        let got = looked.attribute(flow);
        let Attribution::Process(info) = &got else {
            panic!("accepted {flow:?}: {got:?}");
        };
        assert_eq!(info.pid, listener.pid());
        assert!(!info.partial);
    }

    listener.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(listener.pid()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for flow in &flows {
        assert!(
            !matches!(without.attribute(flow), Attribution::Process(_)),
            "without eBPF nothing names an exited listener"
        );
        // Described while it ran: the full description.
        let got = looked.attribute(flow);
        let Attribution::Process(info) = &got else {
            panic!("after exit, seen: {got:?}");
        };
        assert_eq!((info.pid, info.partial), (listener.pid(), false));
        assert!(!info.cmdline.is_empty());
        // Never seen alive: the kernel's record.
        let got = unseen.attribute(flow);
        let Attribution::Process(info) = &got else {
            panic!("after exit, unseen: {got:?}");
        };
        assert_eq!(info.pid, listener.pid());
        assert_eq!(info.exe, echo_exe);
        assert!(info.partial);
    }
    // The listener is gone: a new SYN to its port is nobody's.
    assert_eq!(looked.attribute(&syn), Attribution::NotFound);
}

/// Runs `count` short-lived `app args…` processes, `parallel` loops at a time, in the client
/// namespace inside `cgroup`; returns their `ok` lines.
fn storm(
    lab: &Lab,
    cgroup: &TestCgroup,
    app: &Path,
    args: &str,
    count: usize,
    parallel: usize,
) -> Vec<AppRun> {
    let per_loop = count / parallel;
    let script = format!(
        "for j in $(seq {parallel}); do (for i in $(seq {per_loop}); do '{}' {args}; done) & \
         done; wait",
        app.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    cgroup.join(&mut cmd);
    let out = lab.client().output(cmd);
    assert!(out.success(), "{out}");
    out.stdout
        .lines()
        .filter_map(|l| parse_ok(l, lab.client()))
        .collect()
}

#[test]
fn a_storm_of_short_lived_connections_is_attributed() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-storm");
    let _echo = lab.server().tcp_echo(7003);
    let mut with = attributor(lab.client(), config(Some(&cgroup)));
    let mut without = attributor(lab.client(), config(None));
    let app = lab.app("stormy");
    let exe = exe_of(&app);
    let server = lab.server().ipv4().to_string();
    let started = Instant::now();
    let runs = storm(
        &lab,
        &cgroup,
        &app,
        &format!("connect tcp {server} 7003"),
        500,
        4,
    );
    let storm_time = started.elapsed();
    assert_eq!(runs.len(), 500, "every app connected");
    let mut named = 0;
    let mut fallback_named = 0;
    let mut spent = Vec::new();
    for run in &runs {
        let flow = outbound(Protocol::Tcp, run);
        let t = Instant::now();
        let got = with.attribute(&flow);
        spent.push(t.elapsed());
        if matches!(&got, Attribution::Process(p) if p.pid == run.pid && p.exe == exe) {
            named += 1;
        }
        if matches!(without.attribute(&flow), Attribution::Process(p) if p.pid == run.pid) {
            fallback_named += 1;
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "storm: 500 fork-connect-exit apps in {storm_time:.1?}; eBPF named {named}, sock_diag + \
         /proc named {fallback_named}; median eBPF lookup of an exited app {:.1?}",
        median(&mut spent)
    );
    assert!(
        named * 1000 >= runs.len() * 999,
        "{named} of {}",
        runs.len()
    );
    let status = with.ebpf_status().unwrap();
    assert_eq!(status.update_failures, 0, "{status:?}");
}

#[test]
fn the_maps_stay_bounded() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-lru");
    let _echo = lab.server().udp_echo(7004);
    let small = AttributionConfig {
        ebpf_max_flows: 64,
        ebpf_max_processes: 32,
        ..config(Some(&cgroup))
    };
    let mut attr = attributor(lab.client(), small);
    let app = lab.app("many-udp");
    let exe = exe_of(&app);
    let server = lab.server().ipv4().to_string();
    let runs = storm(
        &lab,
        &cgroup,
        &app,
        &format!("send udp {server} 7004 --no-reply"),
        300,
        2,
    );
    assert_eq!(runs.len(), 300);
    let status = attr.ebpf_status().unwrap();
    assert!(status.flows_recorded >= 300, "{status:?}");
    assert!(status.processes_recorded >= 300, "{status:?}");
    assert!(status.flow_entries <= 64, "{status:?}");
    assert!(status.socket_entries <= 64, "{status:?}");
    assert!(status.process_entries <= 32, "{status:?}");
    assert_eq!((status.max_flows, status.max_processes), (64, 32));
    // The newest flows are still there; the oldest made room.
    let last = runs.last().unwrap();
    expect_named(
        &attr.attribute(&outbound(Protocol::Udp, last)),
        last.pid,
        &exe,
        "newest",
    );
    let named = runs
        .iter()
        .filter(|r| {
            matches!(
                attr.attribute(&outbound(Protocol::Udp, r)),
                Attribution::Process(_)
            )
        })
        .count();
    let _ = writeln!(
        std::io::stderr(),
        "lru: 300 flows into a 64-entry map: {} entries kept, {named} of 300 still named",
        status.flow_entries
    );
    assert!(named < 300, "evicted flows cannot be named");
}

/// `BPF_PROG_QUERY`: how many programs are attached directly to the cgroup `dir` for
/// `attach_type`.
fn attached_programs(dir: &File, attach_type: u32) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    const BPF_PROG_QUERY: libc::c_long = 16;
    let mut attr = Query {
        target_fd: u32::try_from(dir.as_raw_fd()).unwrap(),
        attach_type,
        ..Query::default()
    };
    // SAFETY: bpf(2) with a valid, zero-padded query attribute that outlives the call; with
    // prog_ids NULL the kernel only writes the count into it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &raw mut attr,
            std::mem::size_of::<Query>(),
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_QUERY: {}", std::io::Error::last_os_error());
    attr.prog_cnt
}

#[test]
fn dropping_the_attributor_detaches_the_programs() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-detach");
    let dir = File::open(&cgroup.path).unwrap();
    // sock_create, sock_ops, connect4/6, post_bind4/6, sendmsg4/6, sock_release.
    let types = [2_u32, 3, 10, 11, 12, 13, 14, 15, 34];
    assert!(types.iter().all(|&t| attached_programs(&dir, t) == 0));
    let attr = attributor(lab.client(), config(Some(&cgroup)));
    for &t in &types {
        assert_eq!(attached_programs(&dir, t), 1, "attach type {t}");
    }
    let second = attributor(lab.client(), config(Some(&cgroup)));
    assert_eq!(attached_programs(&dir, 2), 2, "two attributors, two links");
    drop(attr);
    assert_eq!(attached_programs(&dir, 2), 1);
    drop(second);
    for &t in &types {
        assert_eq!(attached_programs(&dir, t), 0, "attach type {t} after drop");
    }
    // A process in the cgroup now runs without any program.
    let app = lab.app("after");
    let run = run_app(
        &lab,
        &cgroup,
        &app,
        &[
            "connect",
            "udp",
            &lab.server().ipv4().to_string(),
            "9",
            "--no-reply",
        ],
    );
    assert!(run.pid > 0);
}

#[test]
fn attach_failures_are_ebpf_errors() {
    portcullis_lab::require_root!();
    let lab = Lab::new("ebpf-errors");
    for bad in ["/nonexistent/pcl-cgroup", "/proc/self"] {
        let cfg = AttributionConfig {
            ebpf_cgroup: Some(PathBuf::from(bad)),
            ..AttributionConfig::default()
        };
        let got = lab.client().in_ns(|| Attributor::new(cfg));
        match got {
            Err(e @ AttributionError::Ebpf { .. }) => {
                assert!(e.to_string().contains(bad), "{e}");
            }
            other => panic!("{bad}: expected an eBPF error, got {other:?}"),
        }
    }
}

#[test]
fn timing_ebpf_hits_and_the_fallback() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-timing");
    let _echo = lab.server().tcp_echo(7005);
    let _uecho = lab.server().udp_echo(7006);
    let server = lab.server().ipv4().to_string();
    let mut with = attributor(lab.client(), config(Some(&cgroup)));
    let mut without = attributor(lab.client(), config(None));
    let hold = |app: &str, args: &[&str]| {
        let mut cmd = Command::new(lab.app(app));
        cmd.args(args);
        cmd.args(["--ready", "--hold-ms", "60000"]);
        cgroup.join(&mut cmd);
        let p = lab.client().spawn(cmd);
        let run = wait_ready(&p, lab.client());
        (p, run)
    };
    let (_tcp, tcp) = hold("timed-tcp", &["connect", "tcp", &server, "7005"]);
    let (_udp, udp) = hold("timed-udp", &["send", "udp", &server, "7006"]);
    let measure = |attr: &mut Attributor, flow: Flow, pid: u32| {
        assert!(matches!(attr.attribute(&flow), Attribution::Process(p) if p.pid == pid));
        let mut samples: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                let got = attr.attribute(&flow);
                let spent = t.elapsed();
                assert!(matches!(&got, Attribution::Process(p) if p.pid == pid));
                spent
            })
            .collect();
        median(&mut samples)
    };
    let tcp_flow = outbound(Protocol::Tcp, &tcp);
    let udp_flow = outbound(Protocol::Udp, &udp);
    let ebpf_tcp = measure(&mut with, tcp_flow, tcp.pid);
    let ebpf_udp = measure(&mut with, udp_flow, udp.pid);
    let diag_tcp = measure(&mut without, tcp_flow, tcp.pid);
    let diag_udp = measure(&mut without, udp_flow, udp.pid);
    let stats = with.stats();
    assert!(stats.ebpf_hits >= 4002, "{stats:?}");
    let _ = writeln!(
        std::io::stderr(),
        "attribution timing, warm, live process ({} build; medians of 2000):\n  \
         TCP: eBPF hit {ebpf_tcp:>8.1?}   sock_diag + /proc {diag_tcp:>8.1?}\n  \
         UDP: eBPF hit {ebpf_udp:>8.1?}   sock_diag + /proc {diag_udp:>8.1?} (unconnected)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
}

/// Connects per second of one process in the cgroup, `n` TCP connects to a closed port of the
/// server (each refused at once: socket, connect, RST, close — every hook runs, no server
/// noise), with python3 (`None` if it is missing).
fn connect_rate(lab: &Lab, cgroup: &TestCgroup, n: u32) -> Option<f64> {
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let script = format!(
        "import socket, time\n\
         t = time.perf_counter()\n\
         for _ in range({n}):\n    \
             s = socket.socket()\n    \
             try:\n        s.connect(('{}', 9))\n    \
             except OSError:\n        pass\n    \
             s.close()\n\
         print(f'{{{n} / (time.perf_counter() - t):.0f}}')\n",
        lab.server().ipv4()
    );
    let mut cmd = Command::new(python);
    cmd.args(["-c", &script]);
    cgroup.join(&mut cmd);
    let out = lab.client().output(cmd);
    assert!(out.success(), "{out}");
    out.stdout.trim().parse().ok()
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture (needs python3)"]
fn bench_connect_rate_with_and_without_the_programs() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-rate");
    let n = 20_000;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut attach = Vec::new();
    for _ in 0..3 {
        let Some(rate) = connect_rate(&lab, &cgroup, n) else {
            let _ = writeln!(std::io::stderr(), "SKIPPED: no python3");
            return;
        };
        without.push(rate);
        let t = Instant::now();
        let attr = attributor(lab.client(), config(Some(&cgroup)));
        attach.push(t.elapsed());
        with.push(connect_rate(&lab, &cgroup, n).unwrap());
        let status = attr.ebpf_status().unwrap();
        assert!(status.flows_recorded >= u64::from(n), "{status:?}");
        drop(attr);
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let (a, b) = (mid(&mut without), mid(&mut with));
    let _ = writeln!(
        std::io::stderr(),
        "connect rate of one process ({n} refused TCP connects, median of 3 runs): \
         without programs {a:.0}/s, with {b:.0}/s ({:+.1}%); load + attach {:.1?}",
        (b / a - 1.0) * 100.0,
        median(&mut attach)
    );
}

#[test]
fn an_exited_process_whose_path_was_not_recorded_is_named_by_comm_only() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-deep");
    let _echo = lab.server().udp_echo(7007);
    let mut attr = attributor(lab.client(), config(Some(&cgroup)));
    // Deeper than the 48 components the kernel side walks.
    let mut dir = lab.dir().join("deep");
    for _ in 0..50 {
        dir.push("d");
    }
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("deep-app");
    std::fs::copy(lab.app("deep-app"), &app).unwrap();
    let server = lab.server().ipv4().to_string();
    let run = run_app(
        &lab,
        &cgroup,
        &app,
        &["send", "udp", &server, "7007", "--no-reply"],
    );
    assert!(gone(run.pid));
    match attr.attribute(&outbound(Protocol::Udp, &run)) {
        Attribution::Exited { pid, uid, comm } => {
            assert_eq!((pid, uid, comm.as_str()), (run.pid, 0, "deep-app"));
        }
        other => panic!("expected an unnamed exited owner, got {other:?}"),
    }
    let status = attr.ebpf_status().unwrap();
    assert!(status.exe_unread >= 1, "{status:?}");
}

/// The local address of the TCP socket with inode `inode` in `/proc/thread-self/net/tcp`
/// (IPv4; the calling thread's namespace).
fn tcp_local_of_inode(inode: u64) -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/proc/thread-self/net/tcp").ok()?;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        let (ip, port) = f.get(1)?.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::from(ip.swap_bytes())),
            port,
        ))
    })
}

#[test]
fn a_process_that_execs_after_connecting_is_named_as_the_program_that_connected() {
    portcullis_lab::require_root!();
    let cgroup = TestCgroup::new();
    let lab = Lab::new("ebpf-exec");
    let _echo = lab.server().tcp_echo(7003);
    lab.server().wait_for_port(7003, Proto::Tcp);
    let mut with = attributor(lab.client(), config(Some(&cgroup)));
    let server = lab.server().ipv4();
    // bash connects (fd 3 stays open across exec), then becomes sleep.
    let script = format!("exec 3<>/dev/tcp/{server}/7003 && echo connected && exec sleep 5");
    let mut cmd = Command::new("/bin/bash");
    cmd.args(["-c", &script]);
    cgroup.join(&mut cmd);
    let p = lab.client().spawn(cmd);
    p.wait_for_stdout("connected", Duration::from_secs(5));
    let pid = p.pid();
    // Until /proc shows the new program.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|e| !e.to_string_lossy().contains("sleep"))
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "bash never became sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
    let inode: u64 = link
        .to_string_lossy()
        .trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let local = lab
        .client()
        .in_ns(|| tcp_local_of_inode(inode))
        .expect("the socket's local address");
    let flow = Flow {
        protocol: Protocol::Tcp,
        direction: Direction::Outbound,
        local,
        remote: SocketAddr::new(server.into(), 7003),
    };
    let got = lab.client().in_ns(|| with.attribute(&flow));
    let Attribution::Process(info) = &got else {
        panic!("not attributed: {got:?}");
    };
    assert_eq!(info.pid, pid);
    assert_eq!(
        info.exe.file_name().and_then(|n| n.to_str()),
        Some("bash"),
        "the program that connected, not the one it became: {info:#?}"
    );
}
