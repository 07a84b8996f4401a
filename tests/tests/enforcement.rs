//! End-to-end tests of enforcement: the real `portcullisd` with real netfilter (iptables
//! NFQUEUE) and real attribution, in lab namespaces, deciding the connections of distinct
//! test executables ("apps"). Each test makes its own lab and tears it down, also on panic.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure stops the test with its message"
)]

use std::time::{Duration, Instant};

use portcullis_lab::app_codes::{OK, REFUSED, TIMEOUT};
use portcullis_lab::{Helper, HelperOpts, Lab, LabProcess, require_root};
use serde_json::Value;

fn connect(lab: &Lab, app: &std::path::Path, host: &str, port: u16) -> portcullis_lab::CmdOutput {
    lab.client().run_app(
        app,
        [
            "connect",
            "tcp",
            host,
            &port.to_string(),
            "--timeout-ms",
            "2000",
        ],
    )
}

/// A TCP echo server on port 7 of the server namespace, listening.
fn echo_on_7(lab: &Lab) -> LabProcess {
    let echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    echo
}

/// `app` connected to `server:7`, echoing every `every_ms` for `hold_ms`; returned once the
/// connection is up.
fn open_stream(
    lab: &Lab,
    app: &std::path::Path,
    server: &str,
    hold_ms: u32,
    every_ms: u32,
) -> LabProcess {
    let (hold, every) = (hold_ms.to_string(), every_ms.to_string());
    let args = [
        "connect",
        "tcp",
        server,
        "7",
        "--ready",
        "--hold-ms",
        &hold,
        "--echo-every-ms",
        &every,
    ];
    let stream = lab.client().spawn(lab.client().cmd(app, args));
    stream.wait_for_stdout("ready", Duration::from_secs(5));
    stream
}

fn code(out: &portcullis_lab::CmdOutput) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The helper's recent connections of `app`.
fn connections_of(helper: &Helper, app: &str) -> Vec<Value> {
    let all = helper.ctl_json(["connections"]);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["app"] == app)
        .cloned()
        .collect()
}

/// `iptables-save` and `ip6tables-save` of the client namespace, without the lines that
/// change from run to run (comments with times, packet counters).
fn rule_set(lab: &Lab) -> String {
    let mut out = String::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let o = lab.client().run(tool, Vec::<&str>::new());
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = match line.split_once(" [") {
                Some((chain, _counters)) if line.starts_with(':') => chain.to_string(),
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn two_apps_one_allowed_one_blocked_by_its_own_rule() {
    require_root!();
    let lab = Lab::new("two-apps");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let (a, b) = (lab.app("browser"), lab.app("updater"));
    let server = lab.server().ipv4().to_string();
    helper.ctl_json(["rules", "add", "--app", b.to_str().unwrap(), "-", &server]);

    let ok = connect(&lab, &a, &server, 7);
    assert_eq!(code(&ok), OK, "{ok}");
    let started = Instant::now();
    let refused = connect(&lab, &b, &server, 7);
    assert_eq!(code(&refused), REFUSED, "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a block must fail fast"
    );

    let a_conns = connections_of(&helper, a.to_str().unwrap());
    assert!(
        !a_conns.is_empty(),
        "the allowed connection was not recorded"
    );
    assert_eq!(a_conns[0]["explanation"]["verdict"], "allow");
    assert_eq!(a_conns[0]["remote"], server.as_str());
    let b_conns = connections_of(&helper, b.to_str().unwrap());
    assert_eq!(b_conns[0]["explanation"]["verdict"], "block");
    assert_eq!(
        b_conns[0]["explanation"]["decided_by"]["text"],
        format!("- {server}")
    );
    assert_eq!(b_conns[0]["scope"], "lan");

    // Both apps got a profile on their first connection.
    let apps = helper.ctl_json(["apps", "list"]).to_string();
    assert!(
        apps.contains(a.to_str().unwrap()) && apps.contains(b.to_str().unwrap()),
        "{apps}"
    );
}

#[test]
fn port_scope_and_default_rules_decide_tcp_udp_and_ipv6() {
    require_root!();
    let lab = Lab::new("kinds");
    let _e7 = lab.server().tcp_echo(7);
    let _e8 = lab.server().tcp_echo(8);
    let _u9 = lab.server().udp_echo(9);
    lab.server().wait_for_port(8, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("tool");
    let key = app.to_str().unwrap();
    let (v4, v6) = (
        lab.server().ipv4().to_string(),
        lab.server().ipv6().to_string(),
    );

    // A port rule: tcp/8 blocked, tcp/7 not.
    helper.ctl_json(["rules", "add", "--app", key, "-", "tcp/8"]);
    assert_eq!(code(&connect(&lab, &app, &v4, 7)), OK);
    assert_eq!(code(&connect(&lab, &app, &v6, 7)), OK, "IPv6 allowed too");
    assert_eq!(code(&connect(&lab, &app, &v4, 8)), REFUSED);
    assert_eq!(
        code(&connect(&lab, &app, &v6, 8)),
        REFUSED,
        "the rule holds for IPv6"
    );

    // UDP: a connected socket to a blocked port learns it at once.
    helper.ctl_json(["rules", "add", "--app", key, "-", "udp/9"]);
    let udp = lab
        .client()
        .run_app(&app, ["connect", "udp", &v4, "9", "--timeout-ms", "2000"]);
    assert_eq!(code(&udp), REFUSED, "{udp}");

    // A scope setting: the whole LAN.
    helper.ctl_json(["settings", "set", "--app", key, "block_scopes", "LAN"]);
    let out = connect(&lab, &app, &v4, 7);
    assert_eq!(code(&out), REFUSED, "{out}");
    let last = connections_of(&helper, key).pop().unwrap();
    assert_eq!(last["explanation"]["decided_by"]["key"], "block_scopes");

    // The global default decides apps without rules of their own.
    let other = lab.app("other");
    helper.ctl_json(["settings", "set", "default_action", "block"]);
    assert_eq!(code(&connect(&lab, &other, &v4, 7)), REFUSED);
    let last = connections_of(&helper, other.to_str().unwrap())
        .pop()
        .unwrap();
    assert_eq!(last["explanation"]["decided_by"]["key"], "default_action");
}

#[test]
fn inbound_is_blocked_by_default_and_an_app_can_be_excepted() {
    require_root!();
    let lab = Lab::new("inbound");
    // A listener in the client namespace, as its own "app".
    let listener = lab.dir().join("apps-listener");
    std::fs::create_dir_all(&listener).unwrap();
    let listener = listener.join("service");
    std::fs::copy(portcullis_lab::lab_bin("lab-echo"), &listener).unwrap();
    let _svc = lab
        .client()
        .spawn(lab.client().cmd(&listener, ["tcp", "2222"]));
    lab.client().wait_for_port(2222, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    let peer = lab.app("peer");
    let client_ip = lab.client().ipv4().to_string();
    let from_outside = || {
        lab.server().run_app(
            &peer,
            ["connect", "tcp", &client_ip, "2222", "--timeout-ms", "2000"],
        )
    };

    let out = from_outside();
    assert_eq!(
        code(&out),
        REFUSED,
        "inbound must be refused by default: {out}"
    );
    let key = listener.to_str().unwrap();
    let conns = connections_of(&helper, key);
    let last = conns
        .last()
        .unwrap_or_else(|| panic!("inbound not attributed to the listener"));
    assert_eq!(last["direction"], "inbound");
    assert_eq!(last["explanation"]["decided_by"]["key"], "block_inbound");

    helper.ctl_json(["settings", "set", "--app", key, "block_inbound", "false"]);
    let out = from_outside();
    assert_eq!(code(&out), OK, "the app's exception lets inbound in: {out}");
}

#[test]
fn the_first_start_keeps_the_ssh_server_reachable_once() {
    require_root!();
    let lab = Lab::new("first-start");
    // The stand-in for /usr/sbin/sshd: a listener named in [first_start] allow_inbound.
    let dir = lab.dir().join("apps-sshd");
    std::fs::create_dir_all(&dir).unwrap();
    let sshd = dir.join("sshd");
    std::fs::copy(portcullis_lab::lab_bin("lab-echo"), &sshd).unwrap();
    let other = dir.join("other");
    std::fs::copy(portcullis_lab::lab_bin("lab-echo"), &other).unwrap();
    let _sshd = lab.client().spawn(lab.client().cmd(&sshd, ["tcp", "2222"]));
    let _other = lab
        .client()
        .spawn(lab.client().cmd(&other, ["tcp", "2223"]));
    lab.client().wait_for_port(2222, portcullis_lab::Proto::Tcp);
    lab.client().wait_for_port(2223, portcullis_lab::Proto::Tcp);
    let config = format!(
        "[first_start]\nallow_inbound = [\"{}\", \"{}/not-installed\"]\n",
        sshd.display(),
        dir.display()
    );
    let mut helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let peer = lab.app("admin");
    let client_ip = lab.client().ipv4().to_string();
    let from_outside = |port: &str| {
        lab.server().run_app(
            &peer,
            ["connect", "tcp", &client_ip, port, "--timeout-ms", "2000"],
        )
    };
    let out = from_outside("2222");
    assert_eq!(code(&out), OK, "the SSH server stays reachable: {out}");
    let out = from_outside("2223");
    assert_eq!(code(&out), REFUSED, "other listeners are not: {out}");
    let key = sshd.to_str().unwrap();
    let app = helper.ctl_json(["apps", "show", key]);
    assert!(app.to_string().contains("block_inbound"), "{app}");
    let apps = helper.ctl_json(["apps", "list"]);
    assert!(
        !apps.to_string().contains("not-installed"),
        "a missing executable got a profile: {apps}"
    );

    // The user takes it back; a restart (the database exists) does not undo that.
    helper.ctl_json(["settings", "set", "--app", key, "block_inbound", "true"]);
    helper.restart();
    let out = from_outside("2222");
    assert_eq!(
        code(&out),
        REFUSED,
        "the user's choice holds after a restart: {out}"
    );
}

#[test]
fn a_new_rule_cuts_a_connection_that_is_already_open() {
    require_root!();
    let lab = Lab::new("live");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("streamer");
    let server = lab.server().ipv4().to_string();
    let stream = open_stream(&lab, &app, &server, 8000, 50);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        stream.is_running(),
        "the stream ended early: {}",
        stream.logs()
    );

    helper.ctl_json(["rules", "add", "--app", app.to_str().unwrap(), "-", &server]);
    let status = stream
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "the open connection was not cut by the new rule: {}",
                stream.logs()
            )
        });
    assert_eq!(status.code(), Some(REFUSED), "{}", stream.logs());
    // Decided again as what it is: the app's outbound connection, refused by the new rule
    // (not taken for an inbound one because its next packet had no SYN).
    let last = connections_of(&helper, app.to_str().unwrap())
        .pop()
        .unwrap();
    assert_eq!(last["direction"], "outbound", "{last}");
    assert_eq!(
        last["explanation"]["decided_by"]["text"],
        format!("- {server}"),
        "{last}"
    );
}

#[test]
fn sigkill_fail_open_then_recover_restores_the_rule_set_exactly() {
    require_root!();
    let lab = Lab::new("crash");
    // Someone else's rules exist first (a wg-quick-style fwmark rule) and must survive.
    lab.client().run(
        "iptables",
        [
            "-A", "OUTPUT", "-m", "mark", "--mark", "0xca6c", "-j", "ACCEPT",
        ],
    );
    lab.client().run(
        "ip6tables",
        [
            "-A", "OUTPUT", "-m", "mark", "--mark", "0xca6c", "-j", "ACCEPT",
        ],
    );
    let before = rule_set(&lab);
    let _echo = echo_on_7(&lab);
    let mut helper = lab.client().start_helper(HelperOpts::default());
    assert_ne!(rule_set(&lab), before, "the helper installed nothing");
    let app = lab.app("app");
    let server = lab.server().ipv4().to_string();
    assert_eq!(code(&connect(&lab, &app, &server, 7)), OK);

    helper.kill();
    // Fail-open (the default): with the helper dead, traffic still flows.
    let out = connect(&lab, &app, &server, 7);
    assert_eq!(code(&out), OK, "fail-open must let traffic pass: {out}");

    let daemon = portcullis_lab::lab_bin("portcullisd");
    let state = helper.state_dir().to_str().unwrap().to_string();
    let socket = helper.socket().to_str().unwrap().to_string();
    let recover = || {
        lab.client().output(lab.client().cmd(
            &daemon,
            ["recover", "--state-dir", &state, "--socket", &socket],
        ))
    };
    let acct = || {
        String::from_utf8_lossy(
            &lab.client()
                .run("sysctl", ["-n", "net.netfilter.nf_conntrack_acct"])
                .stdout,
        )
        .trim()
        .to_owned()
    };
    assert_eq!(
        acct(),
        "1",
        "the helper counts bytes with conntrack accounting"
    );
    let first = recover();
    assert!(first.success(), "{first}");
    assert!(first.stdout.contains("removed firewall"), "{first}");
    assert!(
        first.stdout.contains("conntrack accounting back off"),
        "{first}"
    );
    assert_eq!(acct(), "0", "recover turns accounting back off");
    assert_eq!(
        rule_set(&lab),
        before,
        "recover must restore the rule set byte for byte"
    );
    let second = recover();
    assert!(second.success(), "{second}");
    assert_eq!(second.stdout.trim(), "", "recover is idempotent: {second}");

    // A restart installs exactly one copy again, and a clean stop removes it.
    helper.restart();
    let installed = rule_set(&lab);
    assert_eq!(
        installed.matches("-j PORTCULLIS-OUT").count(),
        2,
        "{installed}"
    );
    helper.stop();
    assert_eq!(
        rule_set(&lab),
        before,
        "a clean stop must restore the rule set"
    );
}

#[test]
fn fail_closed_stops_traffic_while_the_helper_is_down() {
    require_root!();
    let lab = Lab::new("closed");
    let _echo = echo_on_7(&lab);
    let mut helper = lab.client().start_helper(HelperOpts::default());
    helper.ctl_json(["settings", "set", "fail_open", "false"]);
    let app = lab.app("app");
    let server = lab.server().ipv4().to_string();
    assert_eq!(
        code(&connect(&lab, &app, &server, 7)),
        OK,
        "enforcing still allows"
    );
    // The queue rules are switched to no --queue-bypass once the setting is applied.
    let deadline = Instant::now() + Duration::from_secs(5);
    while {
        let rules = rule_set(&lab);
        rules.contains("--queue-bypass") || rules.matches("-j NFQUEUE").count() != 4
    } {
        assert!(
            Instant::now() < deadline,
            "fail_open=false never reached the rules"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The queue's own flag follows (the verdict thread applies it).
    while !helper.logs().contains("queue fail-open flag set") {
        assert!(
            Instant::now() < deadline,
            "the queue's fail-open flag was not set: {}",
            helper.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    helper.kill();
    let out = lab.client().run_app(
        &app,
        ["connect", "tcp", &server, "7", "--timeout-ms", "700"],
    );
    assert_eq!(
        code(&out),
        TIMEOUT,
        "fail-closed must stop new connections: {out}"
    );
    helper.restart();
    assert_eq!(
        code(&connect(&lab, &app, &server, 7)),
        OK,
        "a restarted helper lets it through"
    );
}

#[test]
fn a_storm_of_short_lived_processes_is_attributed() {
    require_root!();
    let lab = Lab::new("storm");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("burst");
    let server = lab.server().ipv4().to_string();
    const PROCESSES: usize = 1000;
    let failures: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..PROCESSES / 4)
                        .filter(|_| code(&connect(&lab, &app, &server, 7)) != OK)
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(failures, 0, "connections failed in the storm");
    let all = helper.ctl_json(["connections"]);
    let all = all.as_array().unwrap();
    let ours = all
        .iter()
        .filter(|c| c["app"] == app.to_str().unwrap())
        .count();
    let kernel = all.iter().filter(|c| c["app"] == "system:kernel").count();
    assert_eq!(
        ours, PROCESSES,
        "every short-lived process must be attributed ({kernel} went to system:kernel)"
    );
}

#[test]
fn connections_follow_prints_each_new_connection_as_json() {
    require_root!();
    let lab = Lab::new("follow");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let ctl = portcullis_lab::lab_bin("portcullisctl");
    let socket = helper.socket().to_str().unwrap().to_string();
    let follower = lab.client().spawn(lab.client().cmd(
        &ctl,
        ["--socket", &socket, "--json", "connections", "--follow"],
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while helper.ctl_json(["status"])["clients"] != 2 {
        assert!(
            Instant::now() < deadline,
            "follower never connected: {}",
            follower.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let app = lab.app("followed");
    let server = lab.server().ipv4().to_string();
    assert_eq!(code(&connect(&lab, &app, &server, 7)), OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let out = follower.stdout();
        if let Some(line) = out.lines().find(|l| l.contains(app.to_str().unwrap())) {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "connection not followed: {}",
            follower.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let c: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(c["remote"], server.as_str());
    assert_eq!(c["explanation"]["verdict"], "allow");
}

#[test]
fn an_unrelated_change_leaves_open_connections_alone() {
    require_root!();
    let lab = Lab::new("unrelated");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("downloader");
    let server = lab.server().ipv4().to_string();
    let stream = open_stream(&lab, &app, &server, 2500, 20);
    // Changes that do not concern this connection: they must not cut it.
    let key = app.to_str().unwrap();
    helper.ctl_json(["rules", "add", "--app", key, "-", "192.0.2.99"]);
    helper.ctl_json(["rules", "add", "-", "tcp/25"]);
    helper.ctl_json(["settings", "set", "block_inbound", "true"]);
    let status = stream
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("stream hung: {}", stream.logs()));
    assert_eq!(
        status.code(),
        Some(OK),
        "an unrelated change cut the stream: {}",
        stream.logs()
    );
}

#[test]
fn icmp_is_decided_by_the_helper_under_the_kernel_profile() {
    require_root!();
    let lab = Lab::new("icmp");
    let helper = lab.client().start_helper(HelperOpts::default());
    let (v4, v6) = (
        lab.server().ipv4().to_string(),
        lab.server().ipv6().to_string(),
    );
    let ping = |addr: &str| {
        let mut cmd = std::process::Command::new("ping");
        cmd.args(["-c", "1", "-W", "2", addr]);
        lab.client().output(cmd)
    };
    let out = ping(&v4);
    assert!(out.success(), "allowed by default: {out}");
    let out = ping(&v6);
    assert!(out.success(), "IPv6 too: {out}");

    // ping sockets are not attributed: ICMP is the kernel profile's, and its rules decide it.
    helper.ctl_json(["rules", "add", "--app", "system:kernel", "-", "icmp"]);
    for addr in [&v4, &v6] {
        let started = Instant::now();
        let out = ping(addr);
        assert!(!out.success(), "blocked: {out}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a block answers at once (ICMP unreachable), no timeout: {out}"
        );
    }
    let conns = connections_of(&helper, "system:kernel");
    let icmp: Vec<&Value> = conns.iter().filter(|c| c["protocol"] == "icmp").collect();
    assert!(
        icmp.iter().any(|c| c["explanation"]["verdict"] == "allow"),
        "{conns:#?}"
    );
    let blocked: Vec<&&Value> = icmp
        .iter()
        .filter(|c| c["explanation"]["verdict"] == "block")
        .collect();
    assert_eq!(blocked.len(), 2, "one blocked echo per family: {conns:#?}");
    for c in blocked {
        assert_eq!(c["explanation"]["decided_by"]["text"], "- icmp", "{c}");
    }
}

#[test]
fn a_block_cuts_an_open_connection_however_many_came_after_it() {
    require_root!();
    let lab = Lab::new("many");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let (old, busy) = (lab.app("longlived"), lab.app("busy"));
    let server = lab.server().ipv4().to_string();
    let stream = open_stream(&lab, &old, &server, 15_000, 50);

    // More connections than the in-memory connection log keeps (1,024): the long-lived one
    // is no longer among the recent ones.
    let out = lab
        .client()
        .run_app(&busy, ["connect", "tcp", &server, "7", "--repeat", "1500"]);
    assert_eq!(code(&out), OK, "{}", out.stderr);
    let recent = helper.ctl_json(["connections"]);
    assert!(
        !recent.to_string().contains(old.to_str().unwrap()),
        "the stream's connection must have left the log for this test to mean anything"
    );
    assert!(stream.is_running(), "{}", stream.logs());

    helper.ctl_json(["rules", "add", "--app", old.to_str().unwrap(), "-", &server]);
    let status = stream
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the old connection was not cut: {}", stream.logs()));
    assert_eq!(status.code(), Some(REFUSED), "{}", stream.logs());
}

#[test]
fn the_helpers_own_marked_sockets_never_wait_in_the_queue() {
    use std::os::fd::AsFd as _;
    require_root!();
    let lab = Lab::new("own");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    helper.ctl_json(["settings", "set", "default_action", "block"]);
    let server = std::net::SocketAddr::new(lab.server().ipv4().into(), 7);
    let connect = |exclude: bool| {
        lab.client().in_ns(|| {
            use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, socket};
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            if exclude {
                let config = portcullis_intercept::InterceptConfig::default();
                portcullis_intercept::exclude_socket(fd.as_fd(), &config).unwrap();
            }
            let std::net::SocketAddr::V4(v4) = server else {
                unreachable!()
            };
            nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4))
        })
    };
    // An ordinary socket of this (root) process is decided like any app's: blocked.
    assert!(connect(false).is_err(), "default_action=block refuses it");
    // The same process's socket marked as the helper marks its own passes untouched.
    connect(true).unwrap();
}

#[test]
fn pings_from_ping_sockets_are_the_ping_programs_own() {
    require_root!();
    let lab = Lab::new("ping-app");
    // Let every group use ICMP datagram ("ping") sockets in this namespace, as desktops do.
    let out = lab.client().run(
        "sysctl",
        ["-q", "-w", "net.ipv4.ping_group_range=0 2147483647"],
    );
    assert!(out.status.success(), "{out:?}");
    let helper = lab.client().start_helper(HelperOpts::default());
    let v4 = lab.server().ipv4().to_string();
    let ping = || {
        let mut cmd = std::process::Command::new("ping");
        cmd.args(["-c", "1", "-W", "2", &v4]);
        lab.client().output(cmd)
    };
    let out = ping();
    assert!(out.success(), "allowed by default: {out}");
    let conns = connections_of(&helper, "/usr/bin/ping");
    assert!(
        conns.iter().any(|c| c["protocol"] == "icmp"),
        "the echo request is the ping program's: {:#}",
        helper.ctl_json(["connections"])
    );

    // So the program's own rules decide it, and other apps' ICMP is not touched.
    helper.ctl_json(["rules", "add", "--app", "/usr/bin/ping", "-", "icmp"]);
    let out = ping();
    assert!(!out.success(), "blocked for ping: {out}");
    let last = connections_of(&helper, "/usr/bin/ping").pop().unwrap();
    assert_eq!(last["explanation"]["verdict"], "block", "{last}");
    assert_eq!(
        last["explanation"]["decided_by"]["text"], "- icmp",
        "{last}"
    );
}

#[test]
fn a_pause_lets_everything_pass_and_resuming_decides_again() {
    require_root!();
    let lab = Lab::new("pause");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("blocked");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();
    helper.ctl_json(["rules", "add", "--app", key, "-", &server]);
    assert_eq!(code(&connect(&lab, &app, &server, 7)), REFUSED);
    // A process whose block the kernel has cached (its second connect fails at connect()).
    let cached = lab.client().spawn(lab.client().cmd(
        &app,
        [
            "connect",
            "tcp",
            &server,
            "7",
            "--repeat",
            "30",
            "--pause-ms",
            "100",
            "--timeout-ms",
            "1000",
        ],
    ));
    cached.wait_for_stdout("attempt 3 ", Duration::from_secs(5));

    let status = helper.ctl_json(["pause", "5"]);
    assert_eq!(status["enforcement"]["state"], "paused", "{status}");
    // Everything passes: new processes, and the one whose block was cached in the kernel.
    assert_eq!(code(&connect(&lab, &app, &server, 7)), OK);
    // (The kernel's reports of the cached process' earlier blocks may still come in: the
    // new process' connection is the last one the queue decided.)
    let last = connections_of(&helper, key)
        .into_iter()
        .rev()
        .find(|c| c["decided_in_kernel"] == false)
        .unwrap();
    assert_eq!(
        last["explanation"]["decided_by"]["kind"], "paused",
        "{last}"
    );
    let status = cached.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        status.code(),
        Some(OK),
        "the cached block ended with the pause: {}",
        cached.logs()
    );

    // A connection opened during the pause is decided again when protection resumes.
    let stream = open_stream(&lab, &app, &server, 8000, 50);
    let status = helper.ctl_json(["resume"]);
    assert_eq!(status["enforcement"]["state"], "enforcing", "{status}");
    let ended = stream
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the paused-time connection was not cut: {}", stream.logs()));
    assert_eq!(ended.code(), Some(REFUSED), "{}", stream.logs());
    assert_eq!(code(&connect(&lab, &app, &server, 7)), REFUSED);

    // Bad durations are refused, naming the range.
    let bad = helper.ctl(["pause", "0"]);
    assert!(!bad.success() && bad.stderr.contains("1 to 1440"), "{bad}");
}
