//! End-to-end tests of the fast path: decisions the helper made are cached in the kernel and
//! repeated at `connect()` for the same process' later connections (real `portcullisd`, real
//! eBPF on the lab's cgroup, real netfilter, in lab namespaces). What must hold: the cached
//! answer equals the helper's, it is still logged, and any policy change retires it at once,
//! including for connections the kernel let through that are open when the change comes.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure stops the test with its message"
)]

use std::time::{Duration, Instant};

use portcullis_lab::app_codes::{DENIED, OK, REFUSED};
use portcullis_lab::{Helper, HelperOpts, Lab, LabProcess, require_root};
use serde_json::Value;

fn echo_on_7(lab: &Lab) -> LabProcess {
    let echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    echo
}

/// The exit code of each attempt of a `--repeat` run, in order, from its output.
fn attempt_codes(stdout: &str) -> Vec<i32> {
    stdout
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("attempt ").map_or(line, |rest| {
                rest.split_once(' ').map_or(rest, |(_, tail)| tail)
            });
            if line.starts_with("ok ") {
                Some(OK)
            } else if line.starts_with("error ") {
                let code = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("code="))?;
                Some(code.parse().unwrap())
            } else {
                None
            }
        })
        .collect()
}

/// The helper's logged connections of `app`, waiting (up to 5 s) until `enough` says so.
fn connections_until(helper: &Helper, app: &str, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = helper.ctl_json(["connections"]);
        let mine: Vec<Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["app"] == app)
            .cloned()
            .collect();
        if enough(&mine) || Instant::now() > deadline {
            return mine;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn in_kernel(conns: &[Value]) -> usize {
    conns
        .iter()
        .filter(|c| c["decided_in_kernel"] == true)
        .count()
}

#[test]
fn later_connections_of_a_process_are_decided_in_the_kernel_and_logged() {
    require_root!();
    let lab = Lab::new("fast-allow");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("poller");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();

    let out = lab.client().run_app(
        &app,
        [
            "connect", "tcp", &server, "7", "--send", "hi", "--repeat", "20",
        ],
    );
    let codes = attempt_codes(&out.stdout);
    assert_eq!(codes, vec![OK; 20], "{out}");

    let conns = connections_until(&helper, key, |c| c.len() >= 20);
    assert_eq!(conns.len(), 20, "every connection is logged: {conns:#?}");
    // The first waited in the queue; the kernel repeated its verdict for the others.
    assert!(
        in_kernel(&conns) >= 18,
        "at most the first connections go through the queue: {conns:#?}"
    );
    for c in conns.iter().filter(|c| c["decided_in_kernel"] == true) {
        assert_eq!(c["explanation"]["verdict"], "allow", "{c}");
        assert_eq!(c["remote"], server.as_str(), "{c}");
        assert_eq!(c["remote_port"], 7, "{c}");
        assert!(c["local_port"].as_u64().is_some_and(|p| p > 0), "{c}");
        assert!(c["pid"].as_u64().is_some(), "{c}");
    }
    let status = helper.ctl_json(["status"]);
    assert!(
        status.to_string().contains("fast path"),
        "status names the fast path: {status}"
    );

    // A new process of the same app is attributed afresh: its first connection is queued.
    let again = lab.client().run_app(&app, ["connect", "tcp", &server, "7"]);
    assert_eq!(again.status.code(), Some(OK), "{again}");
}

#[test]
fn a_cached_block_refuses_connect_locally_until_the_rule_goes() {
    require_root!();
    let lab = Lab::new("fast-block");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("tracker");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();
    let added = helper.ctl_json(["rules", "add", "--app", key, "-", &server]);
    let rule_id = added["id"].as_i64().unwrap().to_string();

    let run = lab.client().spawn(lab.client().cmd(
        &app,
        [
            "connect",
            "tcp",
            &server,
            "7",
            "--timeout-ms",
            "1000",
            "--repeat",
            "40",
            "--pause-ms",
            "100",
        ],
    ));
    run.wait_for_stdout("attempt 4 ", Duration::from_secs(5));
    helper.ctl_json(["rules", "remove", &rule_id]);
    let status = run.wait_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(status.code(), Some(OK), "allowed again: {}", run.logs());

    let codes = attempt_codes(&run.stdout());
    assert_eq!(codes.len(), 40, "{}", run.logs());
    // The queue rejects the first attempt; the kernel refuses the next ones before any
    // packet leaves; after the rule is gone, the cached block no longer counts.
    assert_eq!(codes[0], REFUSED, "{codes:?}");
    assert!(
        codes[1..4].iter().all(|&c| c == DENIED),
        "repeated blocks fail locally with EPERM: {codes:?}"
    );
    let first_ok = codes.iter().position(|&c| c == OK).unwrap();
    assert!(
        codes[first_ok..].iter().all(|&c| c == OK),
        "once the rule is gone every attempt passes: {codes:?}"
    );

    let conns = connections_until(&helper, key, |c| in_kernel(c) >= 3);
    let blocked_in_kernel: Vec<&Value> = conns
        .iter()
        .filter(|c| c["decided_in_kernel"] == true && c["explanation"]["verdict"] == "block")
        .collect();
    assert!(
        blocked_in_kernel.len() >= 3,
        "blocks in the kernel are logged: {conns:#?}"
    );
}

#[test]
fn a_new_rule_retires_a_cached_allow_and_cuts_its_open_connection() {
    require_root!();
    let lab = Lab::new("fast-cut");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("syncer");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();

    // Two quick connections (the second allowed in the kernel), then one held open and
    // echoing: that one also passed the kernel's cache, never the queue.
    let stream = lab.client().spawn(lab.client().cmd(
        &app,
        [
            "connect",
            "tcp",
            &server,
            "7",
            "--repeat",
            "3",
            "--ready",
            "--hold-ms",
            "8000",
            "--echo-every-ms",
            "50",
        ],
    ));
    stream.wait_for_stdout("ready", Duration::from_secs(5));
    let conns = connections_until(&helper, key, |c| in_kernel(c) >= 2);
    assert!(in_kernel(&conns) >= 2, "{conns:#?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(stream.is_running(), "{}", stream.logs());

    helper.ctl_json(["rules", "add", "--app", key, "-", &server]);
    let status = stream
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the open connection was not cut: {}", stream.logs()));
    assert_eq!(status.code(), Some(REFUSED), "{}", stream.logs());
    let codes = attempt_codes(&stream.stdout());
    assert_eq!(&codes[..2], &[OK, OK], "{}", stream.logs());
}

#[test]
fn our_allow_bits_on_an_apps_socket_never_let_it_past_the_queue() {
    require_root!();
    let lab = Lab::new("fast-mark");
    let _echo = echo_on_7(&lab);
    let helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("marker");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();
    helper.ctl_json(["rules", "add", "--app", key, "-", &server]);

    // Software with CAP_NET_ADMIN can put any mark on its sockets, ours included (and a
    // socket the fast path once marked might still carry it): the connect hook takes our
    // bits off, so the connection is decided like any other and the rule refuses it.
    for mark in ["0x10000000", "0x1000abcd"] {
        let out = lab.client().run_app(
            &app,
            [
                "connect",
                "tcp",
                &server,
                "7",
                "--mark",
                mark,
                "--timeout-ms",
                "2000",
            ],
        );
        assert_eq!(out.code(), Some(REFUSED), "mark {mark}: {out}");
    }
    // A mark without our bits is left alone (and decided the same way).
    let out = lab.client().run_app(
        &app,
        [
            "connect",
            "tcp",
            &server,
            "7",
            "--mark",
            "0xca6c",
            "--timeout-ms",
            "2000",
        ],
    );
    assert_eq!(out.code(), Some(REFUSED), "{out}");
    let conns = connections_until(&helper, key, |c| c.len() >= 3);
    assert!(
        conns.iter().all(|c| c["explanation"]["verdict"] == "block"),
        "{conns:#?}"
    );
}
