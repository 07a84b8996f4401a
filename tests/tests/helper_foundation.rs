//! End-to-end tests of the foundation: the real `portcullisd` in a lab namespace, driven by
//! the real `portcullisctl`, as a user would. Each test makes its own lab and tears it down,
//! also on panic. They need root; under CI=true they fail rather than skip without it.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failure stops the test with its message"
)]

use std::os::unix::fs::FileTypeExt;

use portcullis_lab::{HelperOpts, Lab, require_root};
use serde_json::Value;

/// The group the lab helpers admit besides root. It need not exist in /etc/group.
const GROUP: u32 = 4242;
/// A uid that is neither root nor anyone real.
const STRANGER: u32 = 4243;

fn helper_with_group(lab: &Lab) -> portcullis_lab::Helper {
    lab.client().start_helper(HelperOpts {
        config_toml: Some(format!("[ipc]\ngroup = \"{GROUP}\"\n")),
        ..HelperOpts::default()
    })
}

fn rule_texts(rules: &Value) -> Vec<String> {
    rules
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of rules, got {rules}"))
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect()
}

fn setting<'a>(view: &'a Value, key: &str) -> &'a Value {
    view["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key} in {view}"))
}

#[test]
fn status_answers_as_json() {
    require_root!();
    let lab = Lab::new("status");
    let helper = lab.client().start_helper(HelperOpts::default());
    let status = helper.ctl_json(["status"]);
    assert_eq!(
        status["protocol_version"],
        portcullis_protocol::PROTOCOL_VERSION
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["pid"], helper.pid().unwrap());
    assert_eq!(status["enforcement"]["state"], "enforcing");
    // eBPF attribution is attached to the lab's own cgroup, never the host's root cgroup.
    let how = status["attribution"].as_str().unwrap_or_default();
    assert!(
        how.starts_with("eBPF on cgroup ") && how.contains(lab.cgroup().to_str().unwrap()),
        "{how}"
    );
    assert_eq!(
        status["apps"], 2,
        "the kernel and system DNS profiles exist from the start"
    );
    assert_eq!(status["clients"], 1);
}

#[test]
fn settings_and_rules_set_through_the_cli_survive_a_restart() {
    require_root!();
    let lab = Lab::new("persist");
    let mut helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("browser");
    let app = app.to_str().unwrap();

    helper.ctl_json(["settings", "set", "default_action", "ask"]);
    helper.ctl_json([
        "settings",
        "set",
        "--app",
        app,
        "block_scopes",
        "Internet,P2P",
    ]);
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        app,
        "-",
        "*.tracker.example",
        "tcp/443",
    ]);
    helper.ctl_json(["rules", "add", "+", "LAN"]);
    helper.ctl_json(["rules", "add", "--position", "1", "-", "10.0.0.0/8"]);
    let temporary = helper.ctl_json(["rules", "add", "--until-restart", "-", "udp/53"]);
    assert_eq!(temporary["lifetime"]["kind"], "until_restart");

    helper.restart();

    let global = helper.ctl_json(["settings", "get"]);
    assert_eq!(setting(&global, "default_action")["value"]["value"], "ask");
    assert_eq!(setting(&global, "default_action")["source"], "global");
    let shown = helper.ctl_json(["apps", "show", app]);
    assert_eq!(shown["app"]["name"], "browser");
    let scopes = setting(&shown["settings"], "block_scopes");
    assert_eq!(scopes["source"], "app");
    assert_eq!(
        scopes["value"]["value"],
        serde_json::json!(["internet", "p2p"])
    );
    assert_eq!(rule_texts(&shown["rules"]), ["- *.tracker.example tcp/443"]);
    assert_eq!(
        rule_texts(&helper.ctl_json(["rules", "list"])),
        ["- 10.0.0.0/8", "+ LAN"],
        "the until-restart rule is gone, the others kept their order"
    );
}

#[test]
fn an_invalid_rule_is_refused_with_the_bad_token_named_and_nothing_stored() {
    require_root!();
    let lab = Lab::new("badrule");
    let mut helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("browser");
    let app = app.to_str().unwrap();
    helper.ctl_json(["rules", "add", "-", "10.1.0.0/16"]);

    for (rule, token) in [
        (vec!["-", "10.0.0.0/33"], "10.0.0.0/33"),
        (vec!["-", "ads.*.example"], "ads.*.example"),
        (vec!["-", "example.com", "tcp/0"], "tcp/0"),
        (vec!["?", "example.com"], "?"),
    ] {
        let mut args = vec!["rules", "add", "--app", app];
        args.extend(&rule);
        let out = helper.ctl(&args);
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(
            out.stderr.contains(&format!("`{token}`")),
            "token not named: {out}"
        );
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one clear line: {out}"
        );

        // --json gives the same error to scripts.
        let mut json_args = vec!["--json"];
        json_args.extend(&args);
        let out = helper.ctl(&json_args);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "invalid_input", "{out}");
    }

    // Nothing stored: not the rule, not even a profile for the app.
    let apps = helper.ctl_json(["apps", "list"]);
    assert!(
        !apps.to_string().contains(app),
        "a refused rule made a profile: {apps}"
    );
    assert_eq!(
        rule_texts(&helper.ctl_json(["rules", "list"])),
        ["- 10.1.0.0/16"]
    );
    helper.restart();
    assert_eq!(
        rule_texts(&helper.ctl_json(["rules", "list"])),
        ["- 10.1.0.0/16"]
    );
}

#[test]
fn a_peer_outside_the_group_is_refused_and_a_member_is_let_in() {
    require_root!();
    let lab = Lab::new("peers");
    let helper = helper_with_group(&lab);
    let mode = std::fs::metadata(helper.socket()).unwrap();
    assert!(mode.file_type().is_socket());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&mode), GROUP);
    let ctl = portcullis_lab::lab_bin("portcullisctl");
    // The test binaries may live under a directory other uids cannot enter; copy the CLI to
    // the lab's directory, which is world-readable.
    let ctl_copy = lab.dir().join("portcullisctl");
    std::fs::copy(&ctl, &ctl_copy).unwrap();

    let setpriv_ctl = |gid: u32| {
        let mut cmd = lab.client().cmd(
            "setpriv",
            [
                format!("--reuid={STRANGER}"),
                format!("--regid={gid}"),
                "--clear-groups".to_string(),
                ctl_copy.to_str().unwrap().to_string(),
                "--socket".to_string(),
                helper.socket().to_str().unwrap().to_string(),
                "status".to_string(),
            ],
        );
        cmd.env_clear();
        cmd
    };
    let as_user = |gid: u32| {
        // A parallel test may fork while the copy is still open for writing; until that
        // child execs, exec of the copy fails with ETXTBSY. Retry briefly.
        let mut out = lab.client().output(setpriv_ctl(gid));
        for _ in 0..50 {
            if !(out.code() == Some(126) && out.stderr.contains("Text file busy")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            out = lab.client().output(setpriv_ctl(gid));
        }
        out
    };

    let stranger = as_user(STRANGER);
    assert_eq!(stranger.code(), Some(4), "{stranger}");
    assert!(stranger.stderr.contains("permission denied"), "{stranger}");
    assert!(
        stranger.stderr.contains("portcullis"),
        "the message names the group to join: {stranger}"
    );

    let member = as_user(GROUP);
    assert!(member.success(), "{member}");
    assert!(member.stdout.contains("Portcullis helper"), "{member}");

    // The helper is unaffected by the refusal.
    assert_eq!(
        helper.ctl_json(["status"])["protocol_version"],
        portcullis_protocol::PROTOCOL_VERSION
    );
}

#[test]
fn sigkill_leaves_a_stale_socket_that_recover_removes_once() {
    require_root!();
    let lab = Lab::new("recover");
    let mut helper = lab.client().start_helper(HelperOpts::default());
    helper.ctl_json(["rules", "add", "-", "AS64500"]);
    helper.kill();
    assert!(helper.socket().exists(), "SIGKILL leaves the socket behind");

    let daemon = portcullis_lab::lab_bin("portcullisd");
    let socket = helper.socket().to_str().unwrap().to_string();
    let recover = |ns: &portcullis_lab::Ns| {
        ns.output(ns.cmd(
            &daemon,
            [
                "recover",
                "--socket",
                &socket,
                "--state-dir",
                "/nonexistent",
            ],
        ))
    };
    let first = recover(lab.client());
    assert!(first.success(), "{first}");
    assert!(first.stdout.contains("removed stale socket"), "{first}");
    assert!(!helper.socket().exists());
    let second = recover(lab.client());
    assert!(second.success(), "{second}");
    assert_eq!(second.stdout.trim(), "", "recover is idempotent: {second}");

    helper.restart();
    assert_eq!(
        rule_texts(&helper.ctl_json(["rules", "list"])),
        ["- AS64500"]
    );
}

#[test]
fn recover_refuses_to_touch_a_live_helper() {
    require_root!();
    let lab = Lab::new("recover-live");
    let helper = lab.client().start_helper(HelperOpts::default());
    let daemon = portcullis_lab::lab_bin("portcullisd");
    let out = lab.client().output(lab.client().cmd(
        &daemon,
        ["recover", "--socket", helper.socket().to_str().unwrap()],
    ));
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("still listening"), "{out}");
    assert_eq!(
        helper.ctl_json(["status"])["protocol_version"],
        portcullis_protocol::PROTOCOL_VERSION
    );
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    require_root!();
    let lab = Lab::new("sigterm");
    let mut helper = lab.client().start_helper(HelperOpts::default());
    helper.stop(); // asserts exit status 0
    assert!(
        !helper.socket().exists(),
        "socket left behind after a clean stop"
    );
    let out = helper.ctl(["status"]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("not running"), "{out}");
}

#[test]
fn a_corrupt_settings_database_stops_the_start_and_is_left_untouched() {
    require_root!();
    let lab = Lab::new("corrupt");
    let mut helper = lab.client().start_helper(HelperOpts::default());
    helper.ctl_json(["rules", "add", "-", "DE"]);
    helper.stop();
    let db = helper.state_dir().join("settings.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Overwrite the header: SQLite no longer recognises the file.
    bytes[..16].copy_from_slice(b"garbage garbage ");
    std::fs::write(&db, &bytes).unwrap();

    let daemon = portcullis_lab::lab_bin("portcullisd");
    let out = lab.client().output(lab.client().cmd(
        &daemon,
        [
            "run",
            "--state-dir",
            helper.state_dir().to_str().unwrap(),
            "--socket",
            helper.socket().to_str().unwrap(),
        ],
    ));
    assert!(
        !out.success(),
        "the helper started on a corrupt database: {out}"
    );
    assert!(
        out.stderr.contains(db.to_str().unwrap()),
        "the file is not named: {out}"
    );
    assert!(
        out.stderr.contains("not a database"),
        "the problem is not named: {out}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the database was modified"
    );
    assert!(
        !out.stderr.contains("portcullisd ready"),
        "the helper served before it validated the database: {out}"
    );
}

#[test]
fn a_config_with_an_unknown_key_is_refused_with_file_and_key_named() {
    require_root!();
    let lab = Lab::new("badconfig");
    let config = lab.dir().join("bad.toml");
    std::fs::write(&config, "[ipc]\nsokcet = \"/tmp/x.sock\"\n").unwrap();
    let daemon = portcullis_lab::lab_bin("portcullisd");
    let out = lab.client().output(lab.client().cmd(
        &daemon,
        [
            "run",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            lab.dir().join("s").to_str().unwrap(),
        ],
    ));
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("bad.toml") && out.stderr.contains("sokcet"),
        "{out}"
    );
}

#[test]
fn subscribers_see_rule_and_setting_changes() {
    require_root!();
    let lab = Lab::new("events");
    let helper = lab.client().start_helper(HelperOpts::default());
    let ctl = portcullis_lab::lab_bin("portcullisctl");
    let follower = lab.client().spawn(lab.client().cmd(
        &ctl,
        [
            "--socket",
            helper.socket().to_str().unwrap(),
            "--json",
            "events",
        ],
    ));
    // The follower subscribes asynchronously; wait until the helper counts it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while helper.ctl_json(["status"])["clients"] != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "events client never connected\n{}",
            follower.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    helper.ctl_json(["rules", "add", "-", "Internet"]);
    helper.ctl_json(["settings", "set", "block_inbound", "false"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = follower.stdout();
        if out.contains("\"rules_changed\"") && out.contains("\"setting_changed\"") {
            assert!(out.contains("block_inbound"), "{out}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events not seen: {}",
            follower.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_hundred_cli_clients_at_once_are_all_answered() {
    require_root!();
    let lab = Lab::new("many");
    let helper = lab.client().start_helper(HelperOpts::default());
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let helper = &helper;
                s.spawn(move || {
                    let out =
                        helper.ctl(["--json", "rules", "add", "-", &format!("10.{i}.0.0/16")]);
                    out.success()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results.iter().all(|ok| *ok),
        "some clients failed\n{}",
        helper.logs()
    );
    assert_eq!(rule_texts(&helper.ctl_json(["rules", "list"])).len(), 100);
}

#[test]
fn explain_answers_what_would_happen_to_each_app_and_why() {
    require_root!();
    let lab = Lab::new("explain");
    let helper = lab.client().start_helper(HelperOpts::default());
    let (browser, updater) = (lab.app("browser"), lab.app("updater"));
    let (browser, updater) = (browser.to_str().unwrap(), updater.to_str().unwrap());
    helper.ctl_json(["rules", "add", "--app", browser, "-", "10.77.0.0/16", "tcp"]);
    helper.ctl_json([
        "settings",
        "set",
        "--app",
        updater,
        "block_scopes",
        "Internet",
    ]);

    let e = helper.ctl_json(["explain", "--app", browser, "tcp", "10.77.1.2", "7"]);
    assert_eq!(e["verdict"], "block");
    assert_eq!(e["decided_by"]["kind"], "rule");
    assert_eq!(e["decided_by"]["text"], "- 10.77.0.0/16 tcp");
    let e = helper.ctl_json(["explain", "--app", updater, "tcp", "10.77.1.2", "7"]);
    assert_eq!(e["verdict"], "allow", "LAN is not Internet: {e}");
    let e = helper.ctl_json([
        "explain",
        "--app",
        updater,
        "--domain",
        "example.com",
        "tcp",
        "203.0.113.10",
        "443",
    ]);
    assert_eq!(e["verdict"], "block");
    assert_eq!(e["decided_by"]["key"], "block_scopes");
    let e = helper.ctl_json([
        "explain",
        "--app",
        browser,
        "--inbound",
        "tcp",
        "10.77.1.2",
        "22",
    ]);
    assert_eq!(e["decided_by"]["key"], "block_inbound");

    let text = helper.ctl(["explain", "--app", browser, "tcp", "10.77.1.2", "7"]);
    assert!(text.success(), "{text}");
    assert!(text.stdout.starts_with("block: "), "{text}");
    let bad = helper.ctl(["explain", "tcp", "10.77.1.300", "7"]);
    assert_eq!(bad.code(), Some(2), "{bad}");
    assert!(bad.stderr.contains("10.77.1.300"), "{bad}");
}

#[test]
fn rules_are_moved_and_removed_by_id_through_the_cli() {
    require_root!();
    let lab = Lab::new("ruleorder");
    let helper = lab.client().start_helper(HelperOpts::default());
    let ids: Vec<i64> = ["- a.example.com", "- b.example.com", "- c.example.com"]
        .iter()
        .map(|r| {
            let mut args = vec!["rules", "add"];
            args.extend(r.split(' '));
            helper.ctl_json(&args)["id"].as_i64().unwrap()
        })
        .collect();
    let moved = helper.ctl_json(["rules", "move", &ids[2].to_string(), "1"]);
    assert_eq!(
        rule_texts(&moved),
        ["- c.example.com", "- a.example.com", "- b.example.com"]
    );
    let removed = helper.ctl_json(["rules", "remove", &ids[0].to_string()]);
    assert_eq!(removed["text"], "- a.example.com");
    let list = helper.ctl_json(["rules", "list"]);
    assert_eq!(rule_texts(&list), ["- c.example.com", "- b.example.com"]);
    let positions: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2]);

    let again = helper.ctl(["rules", "remove", &ids[0].to_string()]);
    assert_eq!(again.code(), Some(1), "{again}");
    assert!(
        again
            .stderr
            .contains(&format!("no rule with id {}", ids[0])),
        "{again}"
    );
    let zero = helper.ctl(["rules", "move", &ids[1].to_string(), "0"]);
    assert_eq!(zero.code(), Some(1), "{zero}");
}

#[test]
fn a_second_helper_on_the_same_state_is_refused_and_the_first_keeps_serving() {
    require_root!();
    let lab = Lab::new("twice");
    let helper = lab.client().start_helper(HelperOpts::default());
    let daemon = portcullis_lab::lab_bin("portcullisd");
    let other_socket = lab.dir().join("other.sock");
    let out = lab.client().output(lab.client().cmd(
        &daemon,
        [
            "run",
            "--state-dir",
            helper.state_dir().to_str().unwrap(),
            "--socket",
            other_socket.to_str().unwrap(),
        ],
    ));
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("another portcullisd is running"),
        "{out}"
    );
    assert!(!other_socket.exists());
    // recover, too, leaves a running helper alone.
    let out = lab.client().output(lab.client().cmd(
        &daemon,
        [
            "recover",
            "--state-dir",
            helper.state_dir().to_str().unwrap(),
            "--socket",
            helper.socket().to_str().unwrap(),
        ],
    ));
    assert!(!out.success(), "{out}");
    assert!(helper.socket().exists());
    assert_eq!(
        helper.ctl_json(["status"])["protocol_version"],
        portcullis_protocol::PROTOCOL_VERSION
    );
}
