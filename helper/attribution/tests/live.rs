//! Attribution of real sockets in a lab: distinct app executables connect to the server
//! namespace and hold their sockets open while the test asks who owns them; listeners in the
//! client namespace are attributed for inbound flows; closed sockets and exited processes are
//! never attributed to anyone. Needs root (namespaces); build the lab's programs first with
//! `cargo build -p portcullis-lab --bins`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failed step must fail the test at once, with its message"
)]

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_attribution::{
    AppIdentity, Attribution, AttributionConfig, Attributor, Direction, Flow, ProcessInfo, Protocol,
};
use portcullis_lab::{Lab, LabProcess, Ns, lab_bin};

/// Long enough for any test; the lab stops the apps at teardown.
const HOLD_MS: &str = "30000";

/// An app holding a socket open.
struct Held {
    process: LabProcess,
    /// The socket's address as packets carry it (an unconnected UDP socket reports the
    /// wildcard; packets carry the client's veth address).
    local: SocketAddr,
    remote: SocketAddr,
    exe: PathBuf,
}

impl Held {
    fn flow(&self, protocol: Protocol) -> Flow {
        Flow {
            protocol,
            direction: Direction::Outbound,
            local: self.local,
            remote: self.remote,
        }
    }
}

/// Starts `app` in the client namespace with `args` (`connect tcp HOST PORT`, …) and waits for
/// its `ready` line.
fn hold(lab: &Lab, app: &str, args: &[&str]) -> Held {
    let exe = lab.app(app);
    let client = lab.client();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--ready", "--hold-ms", HOLD_MS]);
    let process = client.spawn(client.cmd(&exe, &full));
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let out = process.stdout();
        if let Some(line) = out.lines().find(|l| l.starts_with("ready ")) {
            break line.to_owned();
        }
        assert!(
            process.is_running() && Instant::now() < deadline,
            "{app} never became ready\n{}",
            process.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .parse()
            .unwrap()
    };
    let remote = field("peer=");
    let mut local = field("local=");
    if local.ip().is_unspecified() {
        let ip: IpAddr = if remote.is_ipv4() {
            client.ipv4().into()
        } else {
            client.ipv6().into()
        };
        local.set_ip(ip);
    }
    Held {
        process,
        local,
        remote,
        exe: std::fs::canonicalize(exe).unwrap(),
    }
}

fn attributor(ns: &Ns) -> Attributor {
    ns.in_ns(|| Attributor::new(AttributionConfig::default()).unwrap())
}

/// Asserts that `got` names exactly `pid` running `exe`, and returns the description.
fn expect_process(got: &Attribution, pid: u32, exe: &Path, what: &str) -> ProcessInfo {
    let Attribution::Process(info) = got else {
        panic!("{what}: expected pid {pid}, got {got:?}");
    };
    assert_eq!(info.pid, pid, "{what}: {info:#?}");
    assert_eq!(info.exe, exe, "{what}");
    assert!(!info.exe_deleted, "{what}");
    assert_eq!(
        info.app,
        AppIdentity::Executable(exe.to_path_buf()),
        "{what}"
    );
    assert_eq!(info.app.key(), exe.to_string_lossy(), "{what}");
    (**info).clone()
}

#[test]
fn tcp_outbound_is_attributed_to_each_app_v4_and_v6() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-tcp");
    let _echo = lab.server().tcp_echo(7001);
    let v4 = lab.server().ipv4().to_string();
    let v6 = lab.server().ipv6().to_string();
    let held = [
        hold(&lab, "browser", &["connect", "tcp", &v4, "7001"]),
        hold(&lab, "mailer", &["connect", "tcp", &v4, "7001"]),
        hold(&lab, "browser", &["connect", "tcp", &v6, "7001"]),
        hold(&lab, "mailer", &["connect", "tcp", &v6, "7001"]),
    ];
    let mut attr = attributor(lab.client());
    for h in &held {
        let got = attr.attribute(&h.flow(Protocol::Tcp));
        let info = expect_process(&got, h.process.pid(), &h.exe, h.process.label());
        assert_eq!(info.uid, 0);
        assert_eq!(info.user.as_deref(), Some("root"));
        // The lab spawns apps directly from this test process.
        assert_eq!(info.parents.first().map(|p| p.0), Some(std::process::id()));
        assert_eq!(info.parents.last().map(|p| p.0), Some(1));
        assert!(
            info.cmdline.iter().any(|a| a == "tcp"),
            "{:?}",
            info.cmdline
        );
        assert!(info.cgroup.starts_with('/'), "{:?}", info.cgroup);
    }
    // Asked again: the same description, now from the caches.
    for h in &held {
        let got = attr.attribute(&h.flow(Protocol::Tcp));
        expect_process(&got, h.process.pid(), &h.exe, "again");
    }
    let stats = attr.stats();
    assert_eq!(stats.lookups, 8);
    assert_eq!(stats.processes_found, 8);
    assert!(stats.socket_cache_hits >= 4, "{stats:?}");
    assert!(stats.process_cache_hits >= 4, "{stats:?}");
    assert_eq!(stats.netlink_errors, 0);
}

#[test]
fn udp_outbound_connected_and_unconnected_v4_and_v6() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-udp");
    let _echo = lab.server().udp_echo(7002);
    let v4 = lab.server().ipv4().to_string();
    let v6 = lab.server().ipv6().to_string();
    let held = [
        hold(&lab, "dns-a", &["send", "udp", &v4, "7002"]),
        hold(&lab, "dns-b", &["connect", "udp", &v4, "7002"]),
        hold(&lab, "dns-a", &["send", "udp", &v6, "7002"]),
        hold(&lab, "dns-b", &["connect", "udp", &v6, "7002"]),
    ];
    let mut attr = attributor(lab.client());
    for h in &held {
        let got = attr.attribute(&h.flow(Protocol::Udp));
        expect_process(&got, h.process.pid(), &h.exe, h.process.label());
    }
    // The wrong protocol finds nothing.
    for h in &held {
        assert_eq!(
            attr.attribute(&h.flow(Protocol::Tcp)),
            Attribution::NotFound
        );
    }
}

#[test]
fn inbound_flows_are_attributed_to_the_listener() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-inbound");
    let client = lab.client();
    let tcp = client.tcp_echo(7100);
    let udp = client.udp_echo(7101);
    let echo_exe = std::fs::canonicalize(lab_bin("lab-echo")).unwrap();
    let mut attr = attributor(client);
    let cases = [
        (Protocol::Tcp, &tcp, 7100, true),
        (Protocol::Tcp, &tcp, 7100, false),
        (Protocol::Udp, &udp, 7101, true),
        (Protocol::Udp, &udp, 7101, false),
    ];
    for (protocol, listener, port, ipv4) in cases {
        let (local, remote): (IpAddr, IpAddr) = if ipv4 {
            (client.ipv4().into(), lab.server().ipv4().into())
        } else {
            (client.ipv6().into(), lab.server().ipv6().into())
        };
        let flow = Flow {
            protocol,
            direction: Direction::Inbound,
            local: SocketAddr::new(local, port),
            remote: SocketAddr::new(remote, 45678),
        };
        let got = attr.attribute(&flow);
        let what = format!(
            "{protocol} inbound to port {port} over IPv{}",
            if ipv4 { 4 } else { 6 }
        );
        expect_process(&got, listener.pid(), &echo_exe, &what);
    }
    // Our own listener, opened on a thread inside the namespace: attributed to this test.
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let listener = client.in_ns(|| std::net::TcpListener::bind("[::]:7102").unwrap());
    let flow = Flow {
        protocol: Protocol::Tcp,
        direction: Direction::Inbound,
        local: SocketAddr::new(client.ipv4().into(), 7102),
        remote: SocketAddr::new(lab.server().ipv4().into(), 50000),
    };
    let got = attr.attribute(&flow);
    expect_process(&got, std::process::id(), &me, "own listener");
    drop(listener);
    assert_eq!(attr.attribute(&flow), Attribution::NotFound);
}

#[test]
fn flows_without_a_socket_are_not_found() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-none");
    let mut attr = attributor(lab.client());
    let local4 = SocketAddr::new(lab.client().ipv4().into(), 40000);
    let remote4 = SocketAddr::new(lab.server().ipv4().into(), 9);
    let local6 = SocketAddr::new(lab.client().ipv6().into(), 40000);
    let remote6 = SocketAddr::new(lab.server().ipv6().into(), 9);
    for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Icmp] {
        for direction in [Direction::Outbound, Direction::Inbound] {
            for (local, remote) in [(local4, remote4), (local6, remote6), (local4, remote6)] {
                let flow = Flow {
                    protocol,
                    direction,
                    local,
                    remote,
                };
                assert_eq!(attr.attribute(&flow), Attribution::NotFound, "{flow:?}");
            }
        }
    }
    let stats = attr.stats();
    assert_eq!(stats.sockets_found, 0);
    assert_eq!(stats.full_scans, 0, "no socket, so no scan: {stats:?}");
    assert_eq!(stats.netlink_errors, 0);
}

#[test]
fn an_exited_process_is_never_returned_even_when_its_pid_is_reused() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-exit");
    let _echo = lab.server().tcp_echo(7003);
    let _uecho = lab.server().udp_echo(7004);
    let v4 = lab.server().ipv4().to_string();
    let mut attr = attributor(lab.client());

    let old = hold(&lab, "old-app", &["connect", "tcp", &v4, "7003"]);
    let old_udp = hold(&lab, "old-app", &["send", "udp", &v4, "7004"]);
    let old_pid = old.process.pid();
    expect_process(
        &attr.attribute(&old.flow(Protocol::Tcp)),
        old_pid,
        &old.exe,
        "old",
    );
    expect_process(
        &attr.attribute(&old_udp.flow(Protocol::Udp)),
        old_udp.process.pid(),
        &old_udp.exe,
        "old udp",
    );
    old.process.kill();
    old_udp.process.kill();
    for (flow, what) in [
        (old.flow(Protocol::Tcp), "tcp"),
        (old_udp.flow(Protocol::Udp), "udp"),
    ] {
        let got = attr.attribute(&flow);
        assert!(
            !matches!(got, Attribution::Process(_)),
            "{what} after exit: {got:?}"
        );
    }

    // Make the next pid the old one (ns_last_pid), start another app, and check the cache
    // describes the new program, not the one it remembers for that pid. Other processes of
    // the machine may take the pid first: try a few times.
    let mut reused = None;
    for attempt in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (old_pid - 1).to_string()).unwrap();
        let new = hold(&lab, "new-app", &["connect", "tcp", &v4, "7003"]);
        if new.process.pid() == old_pid {
            reused = Some(new);
            break;
        }
        new.process.kill();
        let _ = attempt;
    }
    match reused {
        Some(new) => {
            let got = attr.attribute(&new.flow(Protocol::Tcp));
            let info = expect_process(&got, old_pid, &new.exe, "new app on the reused pid");
            assert!(info.exe.ends_with("new-app"));
            assert!(attr.attribute(&old.flow(Protocol::Tcp)) == Attribution::NotFound);
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: pid {old_pid} was not reused in 20 attempts; the reuse case ran only in \
                 the unit tests"
            );
        }
    }
}

/// Median of `samples`.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

#[test]
fn timing_warm_and_cold_lookups() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-timing");
    let _echo = lab.server().tcp_echo(7005);
    let _uecho = lab.server().udp_echo(7006);
    let v4 = lab.server().ipv4().to_string();
    let tcp = hold(&lab, "timed-tcp", &["connect", "tcp", &v4, "7005"]);
    let udp = hold(&lab, "timed-udp", &["send", "udp", &v4, "7006"]);

    // Cold: a fresh attributor, nothing cached; the first lookup scans /proc.
    let mut cold = Vec::new();
    let mut cold_scan = Vec::new();
    for _ in 0..5 {
        let mut attr = attributor(lab.client());
        let t = Instant::now();
        let got = attr.attribute(&tcp.flow(Protocol::Tcp));
        cold.push(t.elapsed());
        cold_scan.push(attr.stats().scan_time);
        expect_process(&got, tcp.process.pid(), &tcp.exe, "cold");
    }

    let mut attr = attributor(lab.client());
    let mut warm = |flow: Flow, pid: u32, exe: &Path| {
        let _ = attr.attribute(&flow);
        let mut samples: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                let got = attr.attribute(&flow);
                let spent = t.elapsed();
                assert!(matches!(&got, Attribution::Process(p) if p.pid == pid && p.exe == exe));
                spent
            })
            .collect();
        median(&mut samples)
    };
    let warm_tcp = warm(tcp.flow(Protocol::Tcp), tcp.process.pid(), &tcp.exe);
    let warm_udp = warm(udp.flow(Protocol::Udp), udp.process.pid(), &udp.exe);

    let mut attr = attributor(lab.client());
    let missing = Flow {
        protocol: Protocol::Tcp,
        direction: Direction::Inbound,
        local: SocketAddr::new(lab.client().ipv4().into(), 1),
        remote: SocketAddr::new(lab.server().ipv4().into(), 2),
    };
    let mut misses: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(attr.attribute(&missing), Attribution::NotFound);
            t.elapsed()
        })
        .collect();

    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    let _ = writeln!(
        std::io::stderr(),
        "attribution timing ({processes} processes, {} build):\n  \
         warm TCP lookup   median {:>9.1?} (2000 lookups)\n  \
         warm UDP lookup   median {:>9.1?} (2000 lookups)\n  \
         no socket (2 sock_diag requests) median {:>9.1?}\n  \
         cold lookup       median {:>9.1?} (5 fresh attributors; scanning {:?})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        warm_tcp,
        warm_udp,
        median(&mut misses),
        median(&mut cold),
        median(&mut cold_scan),
    );
}

#[test]
fn a_spent_scan_budget_gives_the_socket_without_the_process() {
    portcullis_lab::require_root!();
    let lab = Lab::new("attr-budget");
    let _echo = lab.server().tcp_echo(7007);
    let v4 = lab.server().ipv4().to_string();
    let h = hold(&lab, "budgeted", &["connect", "tcp", &v4, "7007"]);
    let config = AttributionConfig {
        scan_burst: Duration::ZERO,
        scan_budget_per_second: Duration::ZERO,
        ..AttributionConfig::default()
    };
    let mut attr = lab.client().in_ns(|| Attributor::new(config).unwrap());
    let got = attr.attribute(&h.flow(Protocol::Tcp));
    let Attribution::SocketOnly { uid, inode } = got else {
        panic!("expected SocketOnly, got {got:?}");
    };
    assert_eq!(uid, 0);
    // The inode is the one the app's descriptor links to.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", h.process.pid())).unwrap();
    let links: Vec<String> = fds
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    assert!(
        links.contains(&format!("socket:[{inode}]")),
        "{inode} not in {links:?}"
    );
    let stats = attr.stats();
    assert_eq!(stats.scans_throttled, 1);
    assert_eq!((stats.targeted_scans, stats.full_scans), (0, 0));
}
