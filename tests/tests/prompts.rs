//! End-to-end tests of prompts: with `default_action=ask`, a new connection waits while a
//! client that answers prompts (`portcullisctl prompts watch`) is connected, and the answer
//! given through `portcullisctl prompts answer` decides it (and, unless "once", becomes a
//! rule). The real helper, real netfilter, in lab namespaces.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure stops the test with its message"
)]

use std::time::{Duration, Instant};

use portcullis_lab::app_codes::{OK, REFUSED};
use portcullis_lab::{Helper, HelperOpts, Lab, LabProcess, require_root};
use serde_json::Value;

struct Setup {
    lab: Lab,
    helper: Helper,
    server: String,
    _echo: LabProcess,
}

fn setup(name: &str) -> Setup {
    let lab = Lab::new(name);
    let echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    helper.ctl_json(["settings", "set", "default_action", "ask"]);
    let server = lab.server().ipv4().to_string();
    Setup {
        lab,
        helper,
        server,
        _echo: echo,
    }
}

/// Starts `portcullisctl prompts watch` and waits until the helper counts it.
fn watch(s: &Setup) -> LabProcess {
    let before = s.helper.ctl_json(["status"])["clients"].as_u64().unwrap();
    let ctl = portcullis_lab::lab_bin("portcullisctl");
    let socket = s.helper.socket().to_str().unwrap().to_string();
    let watcher = s.lab.client().spawn(
        s.lab
            .client()
            .cmd(&ctl, ["--socket", &socket, "--json", "prompts", "watch"]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.helper.ctl_json(["status"])["clients"].as_u64().unwrap() <= before {
        assert!(
            Instant::now() < deadline,
            "watcher never connected: {}",
            watcher.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The status reply can arrive before the watcher's request registered it.
    std::thread::sleep(Duration::from_millis(200));
    watcher
}

/// Starts an app's connect in the background (it waits on the prompt).
fn connect_bg(s: &Setup, app: &std::path::Path, extra: &[&str]) -> LabProcess {
    let mut args = vec![
        "connect",
        "tcp",
        s.server.as_str(),
        "7",
        "--timeout-ms",
        "15000",
    ];
    args.extend(extra);
    s.lab.client().spawn(s.lab.client().cmd(app, args))
}

/// Waits for an open prompt of `app` and returns it.
fn prompt_for(s: &Setup, app: &std::path::Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = s.helper.ctl_json(["prompts", "list"]);
        if let Some(p) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["app"] == app.to_str().unwrap())
        {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no prompt for {app:?}: {list}\n{}",
            s.helper.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(p: &LabProcess) -> i32 {
    let status = p
        .wait_timeout(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the app never finished: {}", p.logs()));
    status.code().unwrap_or(-1)
}

fn answer(s: &Setup, id: &Value, args: &[&str]) -> Value {
    let id = id.as_u64().unwrap().to_string();
    let mut all = vec!["prompts", "answer", id.as_str()];
    all.extend(args);
    s.helper.ctl_json(&all)
}

#[test]
fn with_nobody_watching_ask_falls_back_at_once() {
    require_root!();
    let s = setup("ask-nobody");
    let app = s.lab.app("lonely");
    let started = Instant::now();
    let out = s.lab.client().run_app(
        &app,
        ["connect", "tcp", &s.server, "7", "--timeout-ms", "5000"],
    );
    assert_eq!(out.status.code(), Some(REFUSED), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no wait when nobody can answer"
    );
    assert_eq!(
        s.helper.ctl_json(["prompts", "list"]),
        serde_json::json!([])
    );
}

#[test]
fn an_answer_for_once_decides_only_that_connection() {
    require_root!();
    let s = setup("ask-once");
    let _w = watch(&s);
    let app = s.lab.app("asker");
    let first = connect_bg(&s, &app, &[]);
    let p = prompt_for(&s, &app);
    assert_eq!(p["remote"], s.server.as_str());
    assert_eq!(p["remote_port"], 7);
    assert!(
        first.is_running(),
        "the connection must wait for the answer"
    );
    let a = answer(&s, &p["id"], &["allow", "--once"]);
    assert_eq!(a["rule"], Value::Null);
    assert_eq!(finish(&first), OK, "{}", first.logs());
    let conns = s.helper.ctl_json(["connections"]);
    let logged = conns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["app"] == app.to_str().unwrap())
        .unwrap();
    assert_eq!(
        logged["explanation"]["verdict"], "allow",
        "the log shows the answer, not the question: {logged}"
    );

    // No rule: the next connection asks again; block it this time.
    let second = connect_bg(&s, &app, &[]);
    let p = prompt_for(&s, &app);
    answer(&s, &p["id"], &["block", "--once"]);
    assert_eq!(finish(&second), REFUSED, "{}", second.logs());
    assert_eq!(
        s.helper
            .ctl_json(["rules", "list", "--app", app.to_str().unwrap()]),
        serde_json::json!([])
    );
}

#[test]
fn an_answer_always_becomes_a_rule_and_later_connections_do_not_ask() {
    require_root!();
    let s = setup("ask-always");
    let _w = watch(&s);
    let app = s.lab.app("asker");
    // Two attempts to the same destination wait on one prompt.
    let a1 = connect_bg(&s, &app, &[]);
    let a2 = connect_bg(&s, &app, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let p = loop {
        let p = prompt_for(&s, &app);
        if p["waiting"] == 2 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the two attempts were not merged: {p}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        s.helper
            .ctl_json(["prompts", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let a = answer(&s, &p["id"], &["allow", "--for", "ip-port", "--always"]);
    assert_eq!(a["rule"]["text"], format!("+ {} tcp/7", s.server));
    assert_eq!(a["rule"]["lifetime"]["kind"], "forever");
    assert_eq!(finish(&a1), OK, "{}", a1.logs());
    assert_eq!(finish(&a2), OK, "{}", a2.logs());
    let out = s
        .lab
        .client()
        .run_app(&app, ["connect", "tcp", &s.server, "7"]);
    assert_eq!(
        out.status.code(),
        Some(OK),
        "the rule decides without asking: {out}"
    );
    assert_eq!(
        s.helper.ctl_json(["prompts", "list"]),
        serde_json::json!([])
    );
}

#[test]
fn no_answer_in_time_means_the_fallback_and_no_rule() {
    require_root!();
    let s = setup("ask-timeout");
    s.helper
        .ctl_json(["settings", "set", "prompt_timeout_secs", "1"]);
    let _w = watch(&s);
    let app = s.lab.app("asker");
    let started = Instant::now();
    let c = connect_bg(&s, &app, &[]);
    prompt_for(&s, &app);
    assert_eq!(
        finish(&c),
        REFUSED,
        "prompt_fallback=block by default: {}",
        c.logs()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(
        s.helper
            .ctl_json(["rules", "list", "--app", app.to_str().unwrap()]),
        serde_json::json!([])
    );
    let conns = s.helper.ctl_json(["connections"]);
    let mine: Vec<&Value> = conns
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["app"] == app.to_str().unwrap())
        .collect();
    let [c] = mine.as_slice() else {
        panic!("one connection of the app: {conns:#}");
    };
    // Logged with how it ended: asked, then the fallback.
    assert_eq!(c["explanation"]["verdict"], "block", "{c}");
    let summary = c["explanation"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("ask") && summary.contains("prompt_fallback decided"),
        "{summary}"
    );
}

#[test]
fn answers_with_durations_end_when_their_time_comes() {
    require_root!();
    let s = setup("ask-durations");
    let _w = watch(&s);
    let key_of = |p: &std::path::Path| p.to_str().unwrap().to_string();

    // Minutes: a rule with an end time.
    let app = s.lab.app("minutes");
    let c = connect_bg(&s, &app, &[]);
    let p = prompt_for(&s, &app);
    let a = answer(&s, &p["id"], &["allow", "--for", "ip", "--minutes", "5"]);
    assert_eq!(a["rule"]["lifetime"]["kind"], "until");
    assert_eq!(a["rule"]["text"], format!("+ {}", s.server));
    assert_eq!(finish(&c), OK);

    // Until restart: gone after a restart.
    let app2 = s.lab.app("restart");
    let c = connect_bg(&s, &app2, &[]);
    let p = prompt_for(&s, &app2);
    let a = answer(&s, &p["id"], &["block", "--for", "port", "--until-restart"]);
    assert_eq!(a["rule"]["text"], "- tcp/7");
    assert_eq!(finish(&c), REFUSED);

    // Until the app quits: a process that holds its connection open.
    let app3 = s.lab.app("quitter");
    let c = connect_bg(&s, &app3, &["--hold-ms", "1500"]);
    let p = prompt_for(&s, &app3);
    let a = answer(&s, &p["id"], &["allow", "--until-quit"]);
    assert_eq!(a["rule"]["lifetime"]["kind"], "until_exit");
    assert_eq!(a["rule"]["lifetime"]["pid"], p["pid"]);
    assert_eq!(finish(&c), OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .helper
        .ctl_json(["rules", "list", "--app", &key_of(&app3)])
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the until-quit rule outlived its process"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut helper = s.helper;
    helper.restart();
    assert_eq!(
        helper.ctl_json(["rules", "list", "--app", &key_of(&app2)]),
        serde_json::json!([])
    );
    assert_eq!(
        helper
            .ctl_json(["rules", "list", "--app", &key_of(&app)])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_temporary_allow_rule_ending_cuts_the_live_stream() {
    require_root!();
    let s = setup("expiry-cut");
    s.helper
        .ctl_json(["settings", "set", "default_action", "block"]);
    let app = s.lab.app("streamer");
    s.helper.ctl_json([
        "rules",
        "add",
        "--app",
        app.to_str().unwrap(),
        "--seconds",
        "2",
        "+",
        &s.server,
    ]);
    let stream = connect_bg(
        &s,
        &app,
        &["--ready", "--hold-ms", "10000", "--echo-every-ms", "50"],
    );
    stream.wait_for_stdout("ready", Duration::from_secs(5));
    let started = Instant::now();
    assert_eq!(
        finish(&stream),
        REFUSED,
        "the stream must be cut when the rule ends: {}",
        stream.logs()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut too late: {:?}",
        started.elapsed()
    );
    assert!(
        stream.stdout().contains("echo tcp after="),
        "{}",
        stream.logs()
    );
}
