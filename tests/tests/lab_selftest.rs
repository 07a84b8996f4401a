//! Self-tests of the lab: it comes up, carries IPv4 and IPv6 TCP/UDP between client and server,
//! leaves the root namespace alone, runs its processes in its own cgroup, tears down on drop and
//! on panic, sweeps leftovers of dead runs, keeps parallel labs apart, and drives a helper (here
//! the `lab-fake-helper` stand-in).
//!
//! Every test needs root and says so with `require_root!`: skipped with a SKIPPED line when run
//! unprivileged, a failure under `CI=true`.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_lab::{
    HelperOpts, Lab, Proto, app_codes, cgroup2_mount, lab_bin, lab_root, netns_list_with_prefix,
};

/// A normalized view of the root namespace: interfaces, addresses, routes.
#[expect(
    clippy::expect_used,
    reason = "test helper: failing to read the state fails the test"
)]
fn root_snapshot() -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"][..],
        &["route", "show"][..],
        &["-6", "route", "show"][..],
    ] {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("run ip in the root namespace");
        assert!(out.status.success(), "ip {args:?} failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // Drop counters that change by themselves (address lifetimes, route expiry).
            let mut words = Vec::new();
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                if matches!(w, "valid_lft" | "preferred_lft" | "expires") {
                    it.next();
                } else {
                    words.push(w);
                }
            }
            lines.insert(format!("{args:?} {}", words.join(" ")));
        }
    }
    lines
}

/// The unified-hierarchy cgroup of a process: the `0::` line of `/proc/PID/cgroup`.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_owned()
}

/// Whether a path is gone, waiting a moment for it to go.
fn path_gone(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while path.exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Makes `cmd`'s child join the cgroup `dir` (one the test made) before it execs.
#[expect(
    clippy::expect_used,
    reason = "test helper: a cgroup that cannot be joined fails the test"
)]
fn join_cgroup(cmd: &mut Command, dir: &Path) {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .expect("open the test cgroup's cgroup.procs");
    // SAFETY: runs in the forked child before exec and only calls write(2) (async-signal-safe)
    // on a descriptor the closure keeps open; "0" moves the writing process.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Whether a pid is gone (or only a zombie waiting for a parent that is not us).
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        let done = match &stat {
            Err(_) => true,
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        };
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lab_comes_up_carries_traffic_and_leaves_root_ns_alone() {
    portcullis_lab::require_root!();
    let before = root_snapshot();
    {
        let lab = Lab::new("up");
        let (c, s) = (lab.client(), lab.server());
        assert_eq!(c.ipv4().octets(), [10, 77, lab.index(), 1]);
        assert_eq!(s.ipv4().octets(), [10, 77, lab.index(), 2]);
        assert_eq!(c.ipv6().segments()[1], u16::from(lab.index()));
        assert!(netns_list_with_prefix(lab.name()).len() == 2);

        let tcp = s.tcp_echo(7);
        let udp = s.udp_echo(7);
        s.add_address("203.0.113.10/32");
        s.add_address("2001:db8::10/128");
        let app = lab.app("browser");
        assert!(app.starts_with(lab.dir()));

        let targets = [
            s.ipv4().to_string(),
            s.ipv6().to_string(),
            "203.0.113.10".to_owned(),
            "2001:db8::10".to_owned(),
        ];
        for host in &targets {
            let out = c.run_app(&app, ["connect", "tcp", host, "7", "--send", "hello"]);
            assert!(out.success(), "tcp to {host}: {out}");
            assert!(
                out.stdout.contains("reply=\"hello\""),
                "tcp to {host}: {out}"
            );
            for verb in ["connect", "send"] {
                let out = c.run_app(&app, [verb, "udp", host, "7", "--send", "datagram"]);
                assert!(out.success(), "{verb} udp to {host}: {out}");
                assert!(
                    out.stdout.contains("reply=\"datagram\""),
                    "udp to {host}: {out}"
                );
            }
        }
        // The echo saw the client's own addresses (IPv4 shown unmapped).
        let log = tcp.stdout();
        assert!(
            log.contains(&format!("tcp accept from={}:", c.ipv4())),
            "{log}"
        );
        assert!(
            log.contains(&format!("tcp accept from=[{}]:", c.ipv6())),
            "{log}"
        );
        assert!(
            udp.stdout().contains(&format!("udp from={}:", c.ipv4())),
            "{}",
            udp.logs()
        );

        // The lab's addresses exist only inside the lab (checked without sending anything
        // from the root namespace: binding fails there).
        let v4 = std::net::SocketAddr::new(c.ipv4().into(), 0);
        assert!(
            std::net::TcpListener::bind(v4).is_err(),
            "{v4} exists in the root namespace"
        );

        assert_eq!(
            root_snapshot(),
            before,
            "root namespace changed while the lab was up"
        );
    }
    assert_eq!(
        root_snapshot(),
        before,
        "root namespace changed by the lab's teardown"
    );
}

#[test]
fn drop_removes_namespaces_processes_and_directory() {
    portcullis_lab::require_root!();
    let lab = Lab::new("drop");
    let prefix = lab.name().to_owned();
    let dir = lab.dir().to_path_buf();
    let cgroup = lab.cgroup().to_path_buf();
    let echo = lab.server().tcp_echo(8080);
    let sleeper = lab.client().spawn(lab.client().cmd("sleep", ["1000"]));
    // A process the lab did not spawn itself: an orphaned grandchild inside the namespace.
    let out = lab
        .client()
        .run("sh", ["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"]);
    let stray: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("stray pid");
    // Both spawned processes are in the registry a later sweep would read: the bare pid the
    // child wrote before exec, and pid + start time.
    let registry = std::fs::read_to_string(dir.join("pids")).unwrap();
    for pid in [echo.pid(), sleeper.pid()] {
        assert!(registry.lines().any(|l| l == pid.to_string()), "{registry}");
        assert!(
            registry.lines().any(|l| l.starts_with(&format!("{pid} "))),
            "{registry}"
        );
    }
    let pids = [echo.pid(), sleeper.pid(), stray];
    for pid in pids {
        assert!(Path::new(&format!("/proc/{pid}")).exists());
    }
    assert_eq!(netns_list_with_prefix(&prefix).len(), 2);

    drop(lab);

    assert_eq!(netns_list_with_prefix(&prefix), Vec::<String>::new());
    for pid in pids {
        assert!(gone(pid), "process {pid} survived the lab");
    }
    assert!(!echo.is_running() && !sleeper.is_running());
    assert!(!dir.exists(), "{} survived the lab", dir.display());
    assert!(!cgroup.exists(), "{} survived the lab", cgroup.display());
}

#[test]
fn a_panic_still_tears_down() {
    portcullis_lab::require_root!();
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("panic");
        let echo = lab.server().udp_echo(5353);
        assert!(cgroup_of(echo.pid()).ends_with(&format!("/{}", lab.name())));
        *seen.lock().unwrap() = Some((
            lab.name().to_owned(),
            echo.pid(),
            lab.dir().to_path_buf(),
            lab.cgroup().to_path_buf(),
        ));
        panic!("deliberate panic inside a lab");
    }));
    assert!(result.is_err());
    let (prefix, pid, dir, cgroup) = seen.lock().unwrap().clone().expect("the lab came up");
    assert_eq!(netns_list_with_prefix(&prefix), Vec::<String>::new());
    assert!(gone(pid), "echo {pid} survived the panic");
    assert!(!dir.exists());
    assert!(!cgroup.exists(), "{} survived the panic", cgroup.display());
}

#[test]
fn lab_processes_run_in_the_lab_cgroup() {
    portcullis_lab::require_root!();
    let lab = Lab::new("cgroup");
    let cgroup = lab.cgroup().to_path_buf();
    let mount = cgroup2_mount().expect("a cgroup2 mount");
    assert_eq!(cgroup, mount.join(lab.name()));
    assert!(cgroup.join("cgroup.procs").is_file());
    let ours = format!("/{}", lab.name());
    let in_lab = |pid: u32| cgroup_of(pid).ends_with(&ours);
    // The test process itself stays where it was.
    assert!(!in_lab(std::process::id()));

    // spawn, in both namespaces; also a command built with Command::new.
    let (c, s) = (lab.client(), lab.server());
    let sleeper = c.spawn(c.cmd("sleep", ["1000"]));
    assert!(in_lab(sleeper.pid()), "{}", cgroup_of(sleeper.pid()));
    let mut plain = Command::new("sleep");
    plain.arg("1000");
    let plain = s.spawn(plain);
    assert!(in_lab(plain.pid()), "{}", cgroup_of(plain.pid()));
    let echo = s.tcp_echo(7);
    assert!(in_lab(echo.pid()), "{}", cgroup_of(echo.pid()));
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    for pid in [sleeper.pid(), plain.pid(), echo.pid()] {
        assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    }

    // One-shot commands: run, output, run_app.
    let read_own = "cat /proc/self/cgroup";
    for ns in [c, s] {
        let out = ns.run("sh", ["-c", read_own]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.lines().any(|l| l == format!("0::{ours}")), "{text}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", read_own]);
        let out = ns.output(cmd);
        assert!(
            out.stdout.lines().any(|l| l == format!("0::{ours}")),
            "{out}"
        );
    }
    // run_app runs any executable; the lab's app copies go through the same path.
    let out = c.run_app(Path::new("/bin/cat"), ["/proc/self/cgroup"]);
    assert!(
        out.stdout.lines().any(|l| l == format!("0::{ours}")),
        "{out}"
    );
    let app = lab.app("cg-app");
    let out = c.run_app(&app, ["connect", "tcp", &s.ipv4().to_string(), "7"]);
    assert!(out.success(), "{out}");

    // A command that already joins a group of the test's own (here one below the lab's) keeps
    // it; a process left there, and one that left the namespaces, go with the lab all the same.
    let inner = cgroup.join("inner");
    std::fs::create_dir(&inner).unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", read_own]);
    join_cgroup(&mut cmd, &inner);
    let out = c.output(cmd);
    assert!(
        out.stdout.lines().any(|l| l == format!("0::{ours}/inner")),
        "{out}"
    );
    let mut cmd = c.cmd("sleep", ["1000"]);
    join_cgroup(&mut cmd, &inner);
    let held = c.spawn(cmd);
    assert_eq!(cgroup_of(held.pid()), format!("{ours}/inner"));
    // An orphan in a namespace of its own (not the root one): only the cgroup ties it to the lab.
    let out = c.run(
        "sh",
        ["-c", "unshare --net sleep 1000 >/dev/null 2>&1 & echo $!"],
    );
    let orphan: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{orphan}/ns/net")).ok()
        == std::fs::read_link(format!("/proc/{}/ns/net", sleeper.pid())).ok()
    {
        assert!(
            Instant::now() < deadline,
            "unshare never left the lab netns"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(in_lab(orphan));

    drop(lab);
    for pid in [sleeper.pid(), plain.pid(), echo.pid(), held.pid(), orphan] {
        assert!(gone(pid), "process {pid} survived the lab");
    }
    assert!(path_gone(&cgroup), "{} survived the lab", cgroup.display());
}

#[test]
fn leftovers_of_a_dead_run_are_swept() {
    portcullis_lab::require_root!();
    // pid 999999 exceeds this kernel's pid_max; make sure it is not alive anyway.
    let dead = (999_999_u32..)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let name = format!("pcl-{dead}-old{}", std::process::id());
    let netns = format!("{name}-c");
    let no_sweeps = portcullis_lab::hold_sweeps();
    let st = Command::new("ip")
        .args(["netns", "add", &netns])
        .status()
        .unwrap();
    assert!(st.success());

    // Processes the dead run had spawned inside its namespace, recorded in its registry: one
    // with pid and start time, one with the bare pid its child wrote before exec.
    let spawn_inside = || {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["--", "sleep", "1000"])
            .spawn()
            .expect("nsenter (util-linux)")
    };
    let mut orphan = spawn_inside();
    let mut bare = spawn_inside();
    // A bare pid is tied to the run only once it lives inside the namespace: wait until
    // nsenter has joined it (under load that takes a moment).
    let ns_inode = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(format!("/run/netns/{netns}")).unwrap(),
    );
    for pid in [orphan.id(), bare.id()] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .map(|l| l.to_string_lossy().into_owned())
            .ok()
            != Some(format!("net:[{ns_inode}]"))
        {
            assert!(Instant::now() < deadline, "nsenter never joined {netns}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // A decoy outside the namespace, listed with a wrong start time and as a bare pid: a
    // recycled pid must never be killed.
    let mut decoy = Command::new("sleep").arg("1000").spawn().unwrap();
    let start_of = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        after.split_whitespace().nth(19).unwrap().parse().unwrap()
    };
    let dir = lab_root().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pids"),
        format!(
            "{o}\n{o} {os}\n{b}\n{d} {ds}\n{d}\n",
            o = orphan.id(),
            os = start_of(orphan.id()),
            b = bare.id(),
            d = decoy.id(),
            ds = start_of(decoy.id()) + 1,
        ),
    )
    .unwrap();

    drop(no_sweeps);
    let lab = Lab::new("sweeper");
    assert_eq!(netns_list_with_prefix(&netns), Vec::<String>::new());
    assert!(!dir.exists(), "leftover lab dir not swept");
    for (which, child) in [
        ("registered with start time", &mut orphan),
        ("bare pid", &mut bare),
    ] {
        let deadline = Instant::now() + Duration::from_secs(3);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the dead run's process ({which}) was not killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the sweep killed a process it cannot tie"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
    // The sweep leaves live labs alone, including its own.
    assert_eq!(netns_list_with_prefix(lab.name()).len(), 2);
}

#[test]
fn leftover_cgroup_of_a_dead_run_is_swept() {
    portcullis_lab::require_root!();
    let mount = cgroup2_mount().expect("a cgroup2 mount");
    let dead = (999_999_u32..)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let name = format!("pcl-{dead}-1-oldcg{}", std::process::id());
    let dir = mount.join(&name);
    let no_sweeps = portcullis_lab::hold_sweeps();
    std::fs::create_dir(&dir).unwrap();
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    // Processes the dead run left in its cgroup (and in a group below it).
    let mut left = Vec::new();
    for group in [&dir, &sub] {
        let mut cmd = Command::new("sleep");
        cmd.arg("1000");
        join_cgroup(&mut cmd, group);
        left.push(cmd.spawn().unwrap());
    }
    // A decoy outside: untouched.
    let mut decoy = Command::new("sleep").arg("1000").spawn().unwrap();
    // A live run's group (ours) is left alone.
    let live = mount.join(format!("pcl-{}-999-livecg", std::process::id()));
    std::fs::create_dir(&live).unwrap();

    drop(no_sweeps);
    let lab = Lab::new("cgsweeper");
    for child in &mut left {
        let deadline = Instant::now() + Duration::from_secs(3);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "a process in the dead run's cgroup was not killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
    assert!(!dir.exists(), "leftover cgroup {} not swept", dir.display());
    assert!(live.exists(), "the sweep removed a live run's cgroup");
    std::fs::remove_dir(&live).unwrap();
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the sweep killed a process outside the dead run's cgroup"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
    assert!(lab.cgroup().exists());
}

#[test]
fn two_labs_side_by_side_do_not_collide() {
    portcullis_lab::require_root!();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Lab::new("twin"));
        let b = s.spawn(|| Lab::new("twin"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.index(), b.index());
    assert_ne!(a.name(), b.name());
    let echo_a = a.server().tcp_echo(7);
    let echo_b = b.server().tcp_echo(7);
    let app_a = a.app("same-name");
    let app_b = b.app("same-name");
    assert_ne!(app_a, app_b);
    for (lab, app) in [(&a, &app_a), (&b, &app_b)] {
        let host = lab.server().ipv6().to_string();
        let out = lab
            .client()
            .run_app(app, ["connect", "tcp", &host, "7", "--send", "x"]);
        assert!(out.success(), "{out}");
    }
    // Lab A cannot reach lab B's server.
    let other = b.server().ipv4().to_string();
    let out = a.client().run_app(
        &app_a,
        ["connect", "tcp", &other, "7", "--timeout-ms", "500"],
    );
    assert!(
        matches!(
            out.code(),
            Some(app_codes::TIMEOUT | app_codes::UNREACHABLE)
        ),
        "lab A reached lab B: {out}"
    );
    assert!(
        echo_b
            .stdout()
            .lines()
            .all(|l| !l.contains(&a.client().ipv4().to_string()))
    );
    assert!(
        echo_a
            .stdout()
            .contains(&format!("from=[{}]", a.client().ipv6()))
    );
}

#[test]
fn lab_app_exit_codes_tell_outcomes_apart() {
    portcullis_lab::require_root!();
    let lab = Lab::new("codes");
    let app = lab.app("prober");
    let c = lab.client();
    let server = lab.server().ipv4().to_string();
    // Nothing listens on the server: TCP gets a reset, connected UDP an ICMP port unreachable.
    let out = c.run_app(&app, ["connect", "tcp", &server, "9"]);
    assert_eq!(out.code(), Some(app_codes::REFUSED), "{out}");
    let out = c.run_app(
        &app,
        ["connect", "udp", &server, "9", "--timeout-ms", "1000"],
    );
    assert_eq!(out.code(), Some(app_codes::REFUSED), "{out}");
    let out = c.run_app(&app, ["send", "udp", &server, "9", "--timeout-ms", "200"]);
    assert_eq!(out.code(), Some(app_codes::NO_REPLY), "{out}");
    let out = c.run_app(&app, ["frobnicate"]);
    assert_eq!(out.code(), Some(app_codes::USAGE), "{out}");
    let out = c.run_app(&app, ["resolve", "localhost"]);
    assert_eq!(out.code(), Some(app_codes::OK), "{out}");
    // The app runs as itself (no wrapper process): its reported pid is the child's pid.
    let cmd = c.cmd(&app, ["connect", "tcp", &server, "9"]);
    let proc = c.spawn(cmd);
    proc.wait_timeout(Duration::from_secs(5))
        .expect("app finished");
    assert!(
        proc.stdout().contains(&format!("pid={}", proc.pid())),
        "{}",
        proc.logs()
    );
}

#[test]
fn in_ns_runs_code_inside_the_namespace_only() {
    portcullis_lab::require_root!();
    let lab = Lab::new("inns");
    let addr = std::net::SocketAddr::new(lab.client().ipv4().into(), 0);
    let bound = lab
        .client()
        .in_ns(|| std::net::UdpSocket::bind(addr).map(|_| ()));
    assert!(
        bound.is_ok(),
        "binding the client's address inside the lab: {bound:?}"
    );
    assert!(
        std::net::UdpSocket::bind(addr).is_err(),
        "the root namespace has no lab address"
    );
    // wait_for_port sees listeners opened by the test itself inside the namespace.
    let listener = lab
        .server()
        .in_ns(|| std::net::TcpListener::bind("[::]:4040").unwrap());
    lab.server().wait_for_port(4040, Proto::Tcp);
    drop(listener);
}

#[test]
fn lab_bin_finds_this_crates_binaries() {
    let found = lab_bin("lab-echo").canonicalize().unwrap();
    let cargo = Path::new(env!("CARGO_BIN_EXE_lab-echo"))
        .canonicalize()
        .unwrap();
    assert_eq!(found, cargo);
    let missing = std::panic::catch_unwind(|| lab_bin("no-such-binary"));
    let msg = *missing.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("cargo build --workspace --bins"), "{msg}");
}

fn fake_opts() -> HelperOpts {
    HelperOpts {
        daemon_bin: Some(lab_bin("lab-fake-helper")),
        ctl_bin: Some(lab_bin("lab-fake-helper")),
        config_toml: Some("profile = \"test\"\n".to_owned()),
        ..HelperOpts::default()
    }
}

#[test]
fn helper_start_ctl_stop_restart_keep_state() {
    portcullis_lab::require_root!();
    let lab = Lab::new("helper");
    let mut helper = lab.client().start_helper(fake_opts());
    assert!(helper.socket().starts_with(lab.dir()));
    assert!(helper.is_running());

    let v = helper.ctl_json(["status", "--verbose"]);
    assert_eq!(v["args"], serde_json::json!(["status", "--verbose"]), "{v}");
    assert_eq!(v["starts"], 1);
    let out = helper.ctl(["rules", "list"]);
    assert!(
        out.success() && out.stdout.contains("ok rules list"),
        "{out}"
    );
    // The daemon got the generated config and runs inside the client namespace.
    let starts = std::fs::read_to_string(helper.state_dir().join("starts.log")).unwrap();
    assert!(starts.contains("config.toml"), "{starts}");
    // It got the lab's cgroup for its eBPF programs, and runs inside it.
    assert!(
        starts.contains(&format!(
            "ebpf_cgroup=Some({:?})",
            lab.cgroup().display().to_string()
        )),
        "{starts}"
    );
    assert!(starts.contains("no_ebpf=false"), "{starts}");
    assert!(cgroup_of(helper.pid().unwrap()).ends_with(&format!("/{}", lab.name())));
    let pid = helper.pid().unwrap();
    let ns_of = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    let probe = lab.client().spawn(lab.client().cmd("sleep", ["1000"]));
    assert_eq!(ns_of(pid), ns_of(probe.pid()));
    assert_ne!(ns_of(pid), ns_of(std::process::id()));

    helper.stop();
    assert!(!helper.is_running());
    assert!(
        !helper.ctl(["status"]).success(),
        "ctl must fail while the helper is down"
    );

    helper.restart();
    assert_eq!(
        helper.ctl_json(["status"])["starts"],
        2,
        "state dir kept across restart"
    );

    // SIGKILL leaves a stale socket behind; the restart must cope with it.
    helper.kill();
    assert!(helper.socket().exists());
    helper.restart();
    assert_eq!(helper.ctl_json(["status"])["starts"], 3);
    assert!(helper.logs().contains("starts=3"));
    helper.stop();
}

#[test]
fn helper_ebpf_cgroup_is_not_added_when_the_test_chooses() {
    portcullis_lab::require_root!();
    let lab = Lab::new("helperebpf");
    let inner = lab.cgroup().join("helper-bpf");
    std::fs::create_dir(&inner).unwrap();
    let inner_text = inner.display().to_string();
    for (args, want) in [
        (
            vec!["--no-ebpf".to_owned()],
            "ebpf_cgroup=None no_ebpf=true".to_owned(),
        ),
        (
            vec!["--ebpf-cgroup".to_owned(), inner_text.clone()],
            format!("ebpf_cgroup=Some({inner_text:?}) no_ebpf=false"),
        ),
    ] {
        let mut opts = fake_opts();
        opts.args = args;
        let mut helper = lab.client().start_helper(opts);
        let starts = std::fs::read_to_string(helper.state_dir().join("starts.log")).unwrap();
        assert!(starts.contains(&want), "{starts}");
        helper.stop();
    }
}

#[test]
fn helper_failures_panic_with_the_daemon_log() {
    portcullis_lab::require_root!();
    let lab = Lab::new("helperfail");
    // stop() insists on exit status 0.
    let mut opts = fake_opts();
    opts.args = vec!["--fake-exit-code".to_owned(), "3".to_owned()];
    let mut helper = lab.client().start_helper(opts);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| helper.stop()))
        .expect_err("stop must reject exit status 3");
    let msg = err.downcast::<String>().unwrap();
    assert!(
        msg.contains("expected 0") && msg.contains("fake helper ready"),
        "{msg}"
    );

    // A daemon that exits at once is reported with its output, not after a timeout.
    let mut opts = fake_opts();
    opts.args = vec!["--bogus".to_owned()];
    let t0 = Instant::now();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lab.client().start_helper(opts);
    }))
    .expect_err("start must fail");
    let msg = err.downcast::<String>().unwrap();
    assert!(
        msg.contains("exited") && msg.contains("unknown argument --bogus"),
        "{msg}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
}
