//! The network history, end to end: the real `portcullisd` in a lab namespace records what
//! its real netfilter and resolver decided into its real SQLite database, and
//! `portcullisctl history` reads, exports and clears it.

use portcullis_lab::app_codes::{OK, REFUSED};
use portcullis_lab::dns::start_dnsmasq;
use portcullis_lab::{Helper, HelperOpts, Lab, require_root};
use serde_json::Value;

fn connect(lab: &Lab, app: &std::path::Path, host: &str) -> i32 {
    lab.client()
        .run_app(app, ["connect", "tcp", host, "7", "--timeout-ms", "2000"])
        .status
        .code()
        .unwrap_or(-1)
}

/// The history rows `args` select (newest first).
fn rows(helper: &Helper, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history", "query", "--limit", "1000"];
    all.extend_from_slice(args);
    let page = helper.ctl_json(all);
    page.get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn history_keeps_what_was_decided_and_can_be_searched_exported_and_cleared() {
    require_root!();
    let lab = Lab::new("history");
    let echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    let (good, bad, quiet) = (lab.app("good"), lab.app("bad"), lab.app("quiet"));
    let (good_key, bad_key, quiet_key) = (
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        quiet.to_str().unwrap(),
    );
    let server = lab.server().ipv4().to_string();
    helper.ctl_json(["rules", "add", "--app", bad_key, "-", &server, "tcp/7"]);
    helper.ctl_json([
        "settings",
        "set",
        "--app",
        quiet_key,
        "record_history",
        "false",
    ]);

    assert_eq!(connect(&lab, &good, &server), OK);
    assert_eq!(connect(&lab, &good, &server), OK);
    assert_eq!(connect(&lab, &bad, &server), REFUSED);
    assert_eq!(connect(&lab, &quiet, &server), OK);

    // What happened is what was kept: each app's connections with their verdicts and why.
    let good_rows = rows(&helper, &["--app", good_key]);
    assert_eq!(good_rows.len(), 2, "{good_rows:?}");
    for r in &good_rows {
        assert_eq!(r["verdict"], "allow", "{r}");
        assert_eq!(r["kind"], "connection", "{r}");
        assert_eq!(r["remote"], server.as_str(), "{r}");
        assert_eq!(r["remote_port"], 7, "{r}");
        assert_eq!(r["protocol"], "tcp", "{r}");
        assert_eq!(r["direction"], "outbound", "{r}");
        assert!(r["pid"].as_u64().is_some(), "{r}");
    }
    assert!(good_rows[0]["unix_ms"].as_u64() >= good_rows[1]["unix_ms"].as_u64());
    let blocked = rows(&helper, &["--verdict", "block"]);
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["app"], bad_key);
    assert!(
        blocked[0]["explanation"]
            .as_str()
            .unwrap()
            .contains(&format!("- {server} tcp/7")),
        "{}",
        blocked[0]
    );
    // "Don't record" records nothing for that app, while it is still decided.
    assert!(rows(&helper, &["--app", quiet_key]).is_empty());
    assert!(
        helper
            .ctl_json(["connections"])
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["app"] == quiet_key)
    );
    // Substring search over app keys, any case.
    let found = rows(&helper, &["--search", "BAD"]);
    assert!(
        !found.is_empty() && found.iter().all(|r| r["app"] == bad_key),
        "{found:?}"
    );

    // Top apps counts connections and blocks.
    let top = helper.ctl_json(["history", "top", "apps"]);
    let line = |key: &str| {
        top.as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} not in {top}"))
    };
    assert_eq!(
        (
            line(good_key)["rows"].clone(),
            line(good_key)["blocked"].clone()
        ),
        (2.into(), 0.into())
    );
    assert_eq!(line(bad_key)["blocked"], 1);

    // Export round-trips the selection: JSON lines parse back to the same rows; CSV has a
    // header and one line per row.
    let out = helper.ctl(["history", "export", "--app", good_key]);
    assert!(out.success(), "{out}");
    let exported: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported, good_rows);
    let out = helper.ctl(["history", "export", "--csv", "--verdict", "block"]);
    assert!(out.success(), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].starts_with("id,time_ms,kind,app"), "{}", lines[0]);
    assert!(
        lines[1].contains(bad_key) && lines[1].contains(",block,"),
        "{}",
        lines[1]
    );

    // Bad filters are named before anything is asked.
    let out = helper.ctl(["history", "query", "--verdict", "maybe"]);
    assert!(!out.success() && out.stderr.contains("maybe"), "{out}");
    let out = helper.ctl(["history", "query", "--since", "5 weeks"]);
    assert!(!out.success() && out.stderr.contains("5 weeks"), "{out}");

    // Clearing one app leaves the others.
    let cleared = helper.ctl_json(["history", "clear", "--app", good_key]);
    assert_eq!(cleared["rows"], 2, "{cleared}");
    assert!(rows(&helper, &["--app", good_key]).is_empty());
    assert_eq!(rows(&helper, &["--app", bad_key]).len(), 1);

    // History survives a restart of the helper.
    drop(echo);
    let mut helper = helper;
    helper.restart();
    assert_eq!(rows(&helper, &["--app", bad_key]).len(), 1);
}

#[test]
fn a_corrupt_history_is_moved_aside_and_the_helper_still_enforces() {
    require_root!();
    let lab = Lab::new("history-bad");
    let _echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    let mut helper = lab.client().start_helper(HelperOpts::default());
    let app = lab.app("blocked");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();
    helper.ctl_json(["rules", "add", "--app", key, "-", &server]);
    assert_eq!(connect(&lab, &app, &server), REFUSED);
    assert_eq!(rows(&helper, &["--app", key]).len(), 1);
    helper.stop();

    // Garbage where the database was: not a SQLite file at all.
    let db = helper.state_dir().join("history.db");
    std::fs::write(&db, vec![0x5a_u8; 64 * 1024]).unwrap();
    for side in ["history.db-wal", "history.db-shm"] {
        let _ = std::fs::remove_file(helper.state_dir().join(side));
    }
    helper.restart();

    // Still enforcing, with a fresh history; the bad file is kept beside it for the user.
    assert_eq!(connect(&lab, &app, &server), REFUSED);
    let fresh = rows(&helper, &["--app", key]);
    assert_eq!(fresh.len(), 1, "only the connection made since: {fresh:?}");
    let aside: Vec<String> = std::fs::read_dir(helper.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.db.") && n.contains("corrupt"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // The rules were untouched by it.
    let rules = helper.ctl_json(["rules", "list", "--app", key]);
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    assert!(
        helper.logs().contains("corrupt"),
        "the log says what happened: {}",
        helper.logs()
    );
}

#[test]
fn dns_queries_are_kept_with_the_app_that_asked_and_what_became_of_them() {
    require_root!();
    const RESOLVER: &str = "127.0.0.153";
    let lab = Lab::new("history-dns");
    let server = lab.server().ipv4();
    let _dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &["shop.test,192.0.2.10", "ads.test,192.0.2.11"],
        &[],
    );
    let config = format!(
        "[dns]\nenabled = true\n[dns.resolver]\nlisten = [\"{RESOLVER}:53\"]\n\
         upstreams = [\"plain://{server}\"]\n\
         local_zones = [{{ zone = \"test\", servers = [\"plain://{server}\"] }}]\n"
    );
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let browser = lab.app("browser");
    let key = browser.to_str().unwrap();
    helper.ctl_json(["rules", "add", "--app", key, "-", "ads.test"]);
    let q = |name: &str| lab.client().run_app(&browser, ["query", RESOLVER, name]);
    assert_eq!(q("shop.test").code(), Some(OK));
    assert_ne!(q("ads.test").code(), Some(OK));

    let dns = rows(&helper, &["--kind", "dns", "--app", key]);
    let of = |name: &str| {
        dns.iter()
            .find(|r| r["domain"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {dns:?}"))
    };
    assert_eq!(of("shop.test")["verdict"], "allow");
    let ads = of("ads.test");
    assert_eq!(ads["verdict"], "block", "{ads}");
    assert!(
        ads["explanation"].as_str().unwrap().contains("ads.test"),
        "{ads}"
    );
    assert_eq!(ads["remote"], RESOLVER, "{ads}");
    // Search finds names by a piece of them.
    let found = rows(&helper, &["--search", "shop"]);
    assert!(
        found.iter().any(|r| r["domain"] == "shop.test"),
        "{found:?}"
    );

    // The same name asked again and again: a row and a count, not a row per query.
    for _ in 0..20 {
        assert_eq!(q("shop.test").code(), Some(OK));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let shop: Vec<Value> = rows(
            &helper,
            &["--kind", "dns", "--app", key, "--domain", "shop.test"],
        );
        let queries: u64 = shop.iter().filter_map(|r| r["packets_out"].as_u64()).sum();
        if queries == 21 {
            assert!(shop.len() < 21, "not coalesced: {shop:?}");
            break;
        }
        assert!(
            queries < 21 && std::time::Instant::now() < deadline,
            "{queries} queries counted in {shop:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_bytes_of_a_udp_flow_are_kept_when_it_ends() {
    require_root!();
    let lab = Lab::new("history-udp");
    let _echo = lab.server().udp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Udp);
    let helper = lab.client().start_helper(HelperOpts {
        env: vec![(
            "PORTCULLIS_LOG".to_owned(),
            "info,portcullis_intercept=debug".to_owned(),
        )],
        ..HelperOpts::default()
    });
    // Conntrack forgets a UDP flow 2 s after its last datagram here (30 s by default), so the
    // flow ends within the test.
    for key in [
        "nf_conntrack_udp_timeout",
        "nf_conntrack_udp_timeout_stream",
    ] {
        lab.client()
            .run("sysctl", ["-q", "-w", &format!("net.netfilter.{key}=2")]);
    }
    let app = lab.app("voip");
    let key = app.to_str().unwrap();
    let server = lab.server().ipv4().to_string();
    let payload = "x".repeat(1000);
    for _ in 0..3 {
        let out = lab.client().run_app(
            &app,
            [
                "connect",
                "udp",
                &server,
                "7",
                "--send",
                &payload,
                "--timeout-ms",
                "2000",
            ],
        );
        assert_eq!(out.code(), Some(portcullis_lab::app_codes::OK), "{out}");
    }
    // Three flows (a new socket each), each 1000 bytes out and the echo's 1000 back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let flows: Vec<Value> = rows(&helper, &["--kind", "connection", "--app", key])
            .into_iter()
            .filter(|r| r["protocol"] == "udp")
            .collect();
        let done: Vec<&Value> = flows.iter().filter(|r| r["bytes_out"] != 0).collect();
        if done.len() == 3 {
            for r in done {
                assert_eq!(r["bytes_out"], 1000, "{r}");
                assert_eq!(r["bytes_in"], 1000, "{r}");
                assert_eq!(r["packets_out"], 1, "{r}");
                assert_eq!(r["packets_in"], 1, "{r}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the UDP flows' bytes were not recorded: {flows:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // The kernel filtered the counters' dumps to UDP (TCP connections cost nothing there).
    assert!(
        !helper.logs().contains("cannot filter dumps"),
        "{}",
        helper.logs()
    );
    // The helper turned conntrack accounting on in its namespace, and turns it off at stop.
    let acct = |lab: &Lab| {
        String::from_utf8_lossy(
            &lab.client()
                .run("sysctl", ["-n", "net.netfilter.nf_conntrack_acct"])
                .stdout,
        )
        .trim()
        .to_owned()
    };
    assert_eq!(acct(&lab), "1");
    let mut helper = helper;
    helper.stop();
    assert_eq!(acct(&lab), "0", "accounting left on after stop");
}

#[test]
fn the_bytes_kept_for_a_transfer_are_what_iperf3_sent() {
    require_root!();
    let lab = Lab::new("history-bytes");
    let server = lab.server().ipv4().to_string();
    let iperf = lab
        .server()
        .spawn(lab.server().cmd("iperf3", ["-s", "-1", "-p", "5201"]));
    lab.server().wait_for_port(5201, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    let out = lab
        .client()
        .run("iperf3", ["-c", &server, "-p", "5201", "-n", "2G", "-J"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // What iperf3 says it sent. TCP's acknowledged count lies between that and what the
    // server read (a socket buffer or two apart, reset at the end): a long transfer keeps
    // the difference well under 1%.
    let sent = report["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    assert!(sent >= 2 << 30, "{sent}");
    drop(iperf);

    // The data connection's row carries what it sent; the control connection's little more.
    let exe = std::fs::canonicalize("/usr/bin/iperf3").unwrap();
    let app = exe.to_str().unwrap();
    let mut recorded = 0;
    let mut kept = Vec::new();
    for _ in 0..50 {
        let rows = rows(&helper, &["--app", app]);
        kept.clone_from(&rows);
        recorded = rows
            .iter()
            .map(|r| r["bytes_out"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if rows.len() >= 2 && rows.iter().all(|r| r["end_ms"].as_u64().is_some()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let error = (recorded as f64 - sent as f64).abs() / sent as f64;
    assert!(
        error <= 0.01,
        "history says {recorded} bytes out, iperf3 says it sent {sent} ({:.3}% apart): {kept:#?}",
        error * 100.0
    );
    // And the app's bandwidth counts them too.
    let top = helper.ctl_json(["history", "top", "apps", "--bytes"]);
    let line = top
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == app)
        .cloned()
        .unwrap_or_else(|| panic!("{app} not in {top}"));
    assert!(
        line["bytes_out"].as_u64().unwrap() as f64 >= sent as f64 * 0.99,
        "{line}"
    );
    // And the app's bandwidth over time, by the minute.
    let points = helper.ctl_json(["history", "bandwidth", "--app", app, "--since", "10m"]);
    let out: u64 = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bytes_out"].as_u64().unwrap())
        .sum();
    assert!(out as f64 >= sent as f64 * 0.99, "{points}");
    let bad = helper.ctl(["history", "bandwidth", "--since", "30d", "--by", "minute"]);
    assert!(!bad.success() && bad.stderr.contains("48 hours"), "{bad}");
}

#[test]
fn live_rates_show_an_apps_traffic_while_it_flows() {
    for udp in [false, true] {
        live_rates_of_iperf3(udp);
    }
}

#[expect(
    clippy::unwrap_used,
    reason = "test code: a failure stops the test with its message"
)]
fn live_rates_of_iperf3(udp: bool) {
    require_root!();
    let lab = Lab::new(if udp { "rates-udp" } else { "rates" });
    let server = lab.server().ipv4().to_string();
    let _iperf = lab
        .server()
        .spawn(lab.server().cmd("iperf3", ["-s", "-1", "-p", "5201"]));
    lab.server().wait_for_port(5201, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    // Four seconds at a modest, steady rate (UDP: one flow, measured from conntrack).
    let mut args = vec!["-c", server.as_str(), "-p", "5201", "-t", "4", "-b", "40M"];
    if udp {
        args.push("-u");
    }
    let client = lab.client().spawn(lab.client().cmd("iperf3", args));
    let exe = std::fs::canonicalize("/usr/bin/iperf3").unwrap();
    let app = exe.to_str().unwrap();
    let mut best = 0;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let rates = helper.ctl_json(["bandwidth"]);
        if let Some(r) = rates.as_array().unwrap().iter().find(|r| r["app"] == app) {
            best = best.max(r["bytes_out_per_sec"].as_u64().unwrap());
        }
        if best > 0 {
            break;
        }
    }
    // 40 Mbit/s is 5 MB/s; one sample may straddle the start.
    assert!(best >= 1_000_000, "best rate seen (udp: {udp}): {best} B/s");
    assert!(best <= 20_000_000, "more than iperf3 sends: {best} B/s");
    let _ = client.wait_timeout(std::time::Duration::from_secs(10));
}
