//! Filter lists, end to end: the real `portcullisd` loads lists from its data directory, its
//! resolver refuses listed names for the apps that use those lists (`filter_lists`), says
//! which list and line, lets the lists' own exceptions and the user's allow rules win, and
//! history keeps why. A local IP list (`[[intel.lists]]`) blocks connections to the addresses
//! it holds, the same way.

use portcullis_lab::app_codes::{DENIED, OK, REFUSED, RESOLVE};
use portcullis_lab::dns::start_dnsmasq;
use portcullis_lab::{HelperOpts, Lab, require_root};

const RESOLVER: &str = "127.0.0.153";

#[test]
fn listed_names_are_refused_for_the_apps_that_use_the_list() {
    require_root!();
    let lab = Lab::new("lists");
    let server = lab.server().ipv4();
    let _dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &[
            "shop.test,192.0.2.10",
            "pixel.tracker.test,192.0.2.11",
            "ok.tracker.test,192.0.2.12",
            "banners.test,192.0.2.13",
        ],
        &[],
    );
    // The lists, as the shipped files are named; a tracker list with an exception, an ad list.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("lists")).unwrap();
    std::fs::write(
        data.path().join("lists/easyprivacy.txt"),
        "[Adblock Plus 2.0]\n! Title: test trackers\n||tracker.test^\n@@||ok.tracker.test^\n",
    )
    .unwrap();
    std::fs::write(
        data.path().join("lists/easylist.txt"),
        "||banners.test^$third-party\n",
    )
    .unwrap();
    let config = format!(
        "[intel]\ndata_dir = \"{}\"\n[dns]\nenabled = true\n[dns.resolver]\n\
         listen = [\"{RESOLVER}:53\"]\nupstreams = [\"plain://{server}\"]\n\
         local_zones = [{{ zone = \"test\", servers = [\"plain://{server}\"] }}]\n",
        data.path().display()
    );
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let (browser, game) = (lab.app("browser"), lab.app("game"));
    let key = browser.to_str().unwrap();
    let query =
        |app: &std::path::Path, name: &str| lab.client().run_app(app, ["query", RESOLVER, name]);

    // Every list is on by default: listed names and their subdomains are refused.
    let out = query(&browser, "pixel.tracker.test");
    assert_eq!(out.code(), Some(RESOLVE), "{out}");
    assert_eq!(query(&browser, "banners.test").code(), Some(RESOLVE));
    // The list's own exception, and names no list has, resolve.
    assert_eq!(query(&browser, "ok.tracker.test").code(), Some(OK));
    assert_eq!(query(&browser, "shop.test").code(), Some(OK));

    // Why: the list, its entry and line, in `dns query` and in history.
    let answer = helper.ctl_json(["dns", "query", "pixel.tracker.test", "--app", key]);
    let text = answer.to_string();
    assert!(
        text.contains("EasyPrivacy") && text.contains("line 3"),
        "{answer}"
    );
    let rows = helper.ctl_json([
        "history",
        "query",
        "--kind",
        "dns",
        "--app",
        key,
        "--verdict",
        "block",
    ]);
    let rows = rows["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["domain"] == "pixel.tracker.test"
            && r["explanation"].as_str().unwrap().contains("EasyPrivacy")),
        "{rows:?}"
    );

    // `explain` of a connection that carries the name says the same.
    let why = helper.ctl_json([
        "explain",
        "--app",
        key,
        "--domain",
        "pixel.tracker.test",
        "tcp",
        "192.0.2.11",
        "443",
    ]);
    assert_eq!(why["decided_by"]["kind"], "list", "{why}");

    // `lists status`: what each list holds, and what is missing.
    let status = helper.ctl_json(["lists", "status"]);
    let list = |id: &str| {
        status["lists"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {status}"))
    };
    let privacy = list("easyprivacy");
    assert_eq!(privacy["domains"], 1, "{privacy}");
    assert_eq!(privacy["skipped"], 2, "the header and the title: {privacy}");
    assert_eq!(privacy["category"], "trackers", "{privacy}");
    assert!(privacy["error"].is_null(), "{privacy}");
    let urlhaus = list("urlhaus");
    assert!(
        urlhaus["error"]
            .as_str()
            .is_some_and(|e| e.contains("urlhaus")),
        "a list whose file is missing says so: {urlhaus}"
    );
    assert_eq!(status["data_version"], 0, "{status}");
    assert_eq!(
        status["enabled"],
        serde_json::json!(["ads", "trackers", "malware", "phishing"])
    );
    let text = helper.ctl(["lists", "status"]);
    assert!(
        text.stdout.contains("easyprivacy") && text.stdout.contains("not in force"),
        "{text}"
    );

    // An app that only uses the ad lists is not stopped by the tracker list: `lists disable`
    // for that app takes the trackers (and the others) off, one by one.
    for category in ["trackers", "malware", "phishing"] {
        helper.ctl_json([
            "lists",
            "disable",
            category,
            "--app",
            game.to_str().unwrap(),
        ]);
    }
    let game_settings = helper.ctl_json(["settings", "get", "--app", game.to_str().unwrap()]);
    assert!(
        game_settings.to_string().contains("\"ads\""),
        "{game_settings}"
    );
    let bad = helper.ctl(["lists", "enable", "weather"]);
    assert!(!bad.success() && bad.stderr.contains("weather"), "{bad}");
    assert_eq!(query(&game, "pixel.tracker.test").code(), Some(OK));
    assert_eq!(query(&game, "banners.test").code(), Some(RESOLVE));
    // The user's allow rule wins over every list.
    helper.ctl_json(["rules", "add", "--app", key, "+", ".tracker.test"]);
    assert_eq!(query(&browser, "pixel.tracker.test").code(), Some(OK));
    // Lists off globally: nothing is refused by them.
    helper.ctl_json(["settings", "set", "filter_lists", "none"]);
    assert_eq!(query(&browser, "banners.test").code(), Some(OK));
    // A bad category is named.
    let bad = helper.ctl(["settings", "set", "filter_lists", "ads,weather"]);
    assert!(!bad.success() && bad.stderr.contains("weather"), "{bad}");
}

#[test]
fn a_local_ip_list_blocks_connections_to_its_addresses() {
    require_root!();
    let lab = Lab::new("iplist");
    // Two more addresses in the server namespace, on its loopback, routed through the lab's
    // link: one in the list, one not (the server's own address is not listed either).
    let (listed, clean) = ("192.0.2.7", "198.51.100.9");
    let server = lab.server().ipv4().to_string();
    for addr in [listed, clean] {
        lab.server()
            .run("ip", ["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
    }
    for net in ["192.0.2.0/24", "198.51.100.9/32"] {
        lab.client()
            .run("ip", ["route", "add", net, "via", &server]);
    }
    let _echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);

    // No shipped lists at all: only the local one is in force.
    let data = tempfile::tempdir().unwrap();
    let list = data.path().join("bad-networks.txt");
    std::fs::write(
        &list,
        "; lab bad networks\n192.0.2.0/24 ; c2\n2001:db8:bad::/48\n",
    )
    .unwrap();
    let config = format!(
        "[intel]\ndata_dir = \"{}\"\n\n[[intel.lists]]\nid = \"lab-bad\"\n\
         name = \"Lab bad networks\"\npath = \"{}\"\ncategory = \"malware\"\nformat = \"ips\"\n",
        data.path().display(),
        list.display()
    );
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let (app, other) = (lab.app("fetcher"), lab.app("other"));
    let key = app.to_str().unwrap();
    let connect = |who: &std::path::Path, addr: &str| {
        lab.client()
            .run_app(who, ["connect", "tcp", addr, "7", "--timeout-ms", "2000"])
            .status
            .code()
    };

    // The listed address is refused; the others pass.
    assert_eq!(connect(&app, listed), Some(REFUSED));
    assert_eq!(connect(&app, clean), Some(OK));
    assert_eq!(connect(&app, &server), Some(OK));

    // Why: the list, the entry as written and its line, on the connection and in `explain`.
    let conns = helper.ctl_json(["connections"]);
    let blocked = conns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["app"] == key && c["remote"] == listed)
        .cloned()
        .unwrap_or_else(|| panic!("no connection to {listed} in {conns}"));
    let by = &blocked["explanation"]["decided_by"];
    assert_eq!(by["kind"], "list", "{blocked}");
    assert_eq!(by["list"], "lab-bad", "{blocked}");
    assert_eq!(by["name"], "Lab bad networks", "{blocked}");
    assert_eq!(by["category"], "malware", "{blocked}");
    assert_eq!(by["entry"], "192.0.2.0/24", "{blocked}");
    assert_eq!(by["line"], 2, "{blocked}");
    let why = helper.ctl_json(["explain", "--app", key, "tcp", listed, "7"]);
    assert_eq!(why["verdict"], "block", "{why}");
    assert_eq!(why["decided_by"], *by, "{why}");
    let why = helper.ctl_json(["explain", "--app", key, "tcp", clean, "7"]);
    assert_eq!(why["verdict"], "allow", "{why}");
    // An IPv4-mapped IPv6 address is the IPv4 address.
    let why = helper.ctl_json(["explain", "--app", key, "tcp", "::ffff:192.0.2.99", "7"]);
    assert_eq!(why["decided_by"]["entry"], "192.0.2.0/24", "{why}");
    let why = helper.ctl_json(["explain", "--app", key, "tcp", "2001:db8:bad::1", "443"]);
    assert_eq!(why["decided_by"]["line"], 3, "{why}");

    // An app that does not use the malware lists is not stopped by them.
    helper.ctl_json([
        "settings",
        "set",
        "--app",
        other.to_str().unwrap(),
        "filter_lists",
        "ads,trackers",
    ]);
    assert_eq!(connect(&other, listed), Some(OK));

    // The user's allow rule wins over the list.
    helper.ctl_json(["rules", "add", "--app", key, "+", listed]);
    assert_eq!(connect(&app, listed), Some(OK));
    let why = helper.ctl_json(["explain", "--app", key, "tcp", listed, "7"]);
    assert_eq!(why["decided_by"]["kind"], "rule", "{why}");
    // Another address of the listed network is still blocked for it (refused in the queue,
    // or at `connect()` when the kernel repeats the decision).
    let code = connect(&app, "192.0.2.8");
    assert!(matches!(code, Some(REFUSED | DENIED)), "{code:?}");

    // The user edits the list file: the helper reads it again by itself, without a restart,
    // and the network it no longer holds passes (verdicts the kernel cached are retired).
    let third = lab.app("third");
    let third_key = third.to_str().unwrap();
    assert_eq!(connect(&third, listed), Some(REFUSED));
    std::fs::write(&list, "; lab bad networks\n2001:db8:bad::/48\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let why = helper.ctl_json(["explain", "--app", third_key, "tcp", listed, "7"]);
        if why["verdict"] == "allow" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edited list was not read again: {why}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(connect(&third, listed), Some(OK));
    let status = helper.ctl_json(["lists", "status"]);
    let lab_bad = status["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "lab-bad")
        .cloned()
        .unwrap();
    assert_eq!(lab_bad["networks"], 1, "{lab_bad}");
}
