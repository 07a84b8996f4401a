//! End-to-end tests of the helper's resolver: the real `portcullisd` with `[dns]` on, in a lab
//! namespace, resolving through a real dnsmasq in the server namespace (a local zone, so the
//! lab needs no Internet), and two test executables as two apps asking it over UDP. What must
//! hold: the asking app is found, its own domain rules (then the global ones) decide the name,
//! and another app is not affected.

use portcullis_lab::app_codes::{OK, REFUSED, RESOLVE};
use portcullis_lab::dns::start_dnsmasq;
use portcullis_lab::{HelperOpts, Lab, require_root};

/// The helper's resolver address in the client namespace.
const RESOLVER: &str = "127.0.0.153";

fn query(lab: &Lab, app: &std::path::Path, name: &str) -> portcullis_lab::CmdOutput {
    lab.client().run_app(app, ["query", RESOLVER, name])
}

#[test]
fn each_app_resolves_under_its_own_domain_rules() {
    require_root!();
    let lab = Lab::new("dns-apps");
    let server = lab.server().ipv4();
    let _dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &[
            "shop.test,192.0.2.10",
            "ads.shop.test,192.0.2.11",
            "news.test,192.0.2.12",
            "fresh.test,192.0.2.13",
        ],
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
    let (browser, tracker) = (lab.app("browser"), lab.app("tracker"));

    // Before any rule both resolve.
    for app in [&browser, &tracker] {
        let out = query(&lab, app, "shop.test");
        assert_eq!(out.code(), Some(OK), "{out}");
        assert!(out.stdout.contains("192.0.2.10"), "{out}");
    }

    // An app rule: the tracker may not resolve the shop's tree; the browser still may.
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        tracker.to_str().unwrap(),
        "-",
        ".shop.test",
    ]);
    for name in ["shop.test", "ads.shop.test"] {
        let out = query(&lab, &tracker, name);
        assert_eq!(out.code(), Some(RESOLVE), "blocked for the tracker: {out}");
        assert!(out.stdout.contains("rcode=3"), "NXDOMAIN: {out}");
    }
    let out = query(&lab, &browser, "ads.shop.test");
    assert_eq!(out.code(), Some(OK), "another app is not affected: {out}");

    // A global rule blocks a name for every app, and an app's own allow rule wins over it.
    helper.ctl_json(["rules", "add", "-", "*.shop.test"]);
    let out = query(&lab, &browser, "ads.shop.test");
    assert_eq!(out.code(), Some(RESOLVE), "the global rule: {out}");
    let out = query(&lab, &browser, "shop.test");
    assert_eq!(out.code(), Some(OK), "`*.` is strict: {out}");
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        browser.to_str().unwrap(),
        "+",
        "ads.shop.test",
    ]);
    let out = query(&lab, &browser, "ads.shop.test");
    assert_eq!(out.code(), Some(OK), "the app's allow wins: {out}");

    // Names no rule names resolve; address rules do not decide names.
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        tracker.to_str().unwrap(),
        "-",
        "192.0.2.12",
    ]);
    let out = query(&lab, &tracker, "news.test");
    assert_eq!(out.code(), Some(OK), "{out}");

    // The helper's own upstream queries never wait on its firewall: with everything blocked
    // but this machine's loopback, a name not asked before still resolves.
    helper.ctl_json(["rules", "add", "+", "127.0.0.0/8"]);
    helper.ctl_json(["settings", "set", "default_action", "block"]);
    let out = query(&lab, &browser, "fresh.test");
    assert_eq!(out.code(), Some(OK), "{out}");
    assert!(out.stdout.contains("192.0.2.13"), "{out}");
}

#[test]
fn a_connection_to_an_address_the_app_looked_up_carries_the_name_and_its_rules() {
    require_root!();
    let lab = Lab::new("dns-conn");
    let server = lab.server().ipv4();
    let _echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    let _dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &[&format!("shop.test,{server}")],
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
    let (shopper, other) = (lab.app("shopper"), lab.app("other"));
    let shopper_key = shopper.to_str().unwrap();
    let addr = server.to_string();
    // A connection rule on the name (it has a port, so it does not block the lookup itself).
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        shopper_key,
        "-",
        "shop.test",
        "tcp/7",
    ]);
    let connect = |app: &std::path::Path| {
        lab.client()
            .run_app(app, ["connect", "tcp", &addr, "7", "--timeout-ms", "2000"])
    };

    // Before looking the name up, the address is just an address: allowed.
    assert_eq!(connect(&shopper).code(), Some(OK));
    let out = query(&lab, &shopper, "shop.test");
    assert_eq!(out.code(), Some(OK), "{out}");
    // Now the app's connections to that address carry the name, and the rule applies.
    let out = connect(&shopper);
    assert_eq!(out.code(), Some(REFUSED), "{out}");
    let conns = helper.ctl_json(["connections"]);
    let last = conns
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["app"] == shopper_key)
        .unwrap();
    assert_eq!(last["domain"], "shop.test", "{last}");
    assert_eq!(
        last["explanation"]["decided_by"]["text"],
        "- shop.test tcp/7"
    );

    // Another app's lookup of the same name lends nothing: its own connection has no name.
    let out = query(&lab, &other, "shop.test");
    assert_eq!(out.code(), Some(OK), "{out}");
    assert_eq!(connect(&other).code(), Some(OK));
}

#[test]
fn queries_sent_to_another_resolver_are_answered_by_the_helper_for_the_asking_app() {
    require_root!();
    let lab = Lab::new("dns-astray");
    let server = lab.server().ipv4();
    let dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &["shop.test,192.0.2.10"],
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
    let (browser, tracker) = (lab.app("browser"), lab.app("tracker"));
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        tracker.to_str().unwrap(),
        "-",
        ".shop.test",
    ]);
    let direct = server.to_string();

    // Both ask the server's own resolver directly; the firewall hands both queries to the
    // helper, which knows who asked.
    let out = lab
        .client()
        .run_app(&tracker, ["query", &direct, "shop.test"]);
    assert_eq!(out.code(), Some(RESOLVE), "redirected and blocked: {out}");
    assert!(out.stdout.contains("rcode=3"), "{out}");
    let out = lab
        .client()
        .run_app(&browser, ["query", &direct, "shop.test"]);
    assert_eq!(out.code(), Some(OK), "{out}");
    assert!(out.stdout.contains("192.0.2.10"), "{out}");
    // Only the helper's own (marked) query reached dnsmasq, once: the tracker's never left.
    let asked = dnsmasq.stderr().matches("query[A] shop.test").count();
    assert_eq!(asked, 1, "{}", dnsmasq.stderr());
}

#[test]
fn the_cli_shows_the_resolver_answers_a_name_for_an_app_and_empties_the_cache() {
    require_root!();
    let lab = Lab::new("dns-cli");
    let server = lab.server().ipv4();
    let _dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &["shop.test,192.0.2.10"],
        &[],
    );
    let config = format!(
        "[dns]\nenabled = true\n[dns.resolver]\nlisten = [\"{RESOLVER}:53\"]\n\
         upstreams = [\"plain://{server}\"]\n\
         local_zones = [{{ zone = \"test\", servers = [\"plain://{server}\"] }}]\n\
         [dns.resolver.cache]\nmin_ttl = 60\n"
    );
    // (dnsmasq answers with TTL 0: min_ttl keeps answers a minute, so the cache has some.)
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let app = "/usr/bin/tracker-app";
    helper.ctl_json(["rules", "add", "--app", app, "-", ".shop.test"]);

    let answer = helper.ctl_json(["dns", "query", "shop.test"]);
    assert_eq!(answer["outcome"], "answered", "{answer}");
    assert_eq!(answer["addresses"][0], "192.0.2.10", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("local zone test"),
        "{answer}"
    );

    let blocked = helper.ctl_json(["dns", "query", "www.shop.test", "--app", app]);
    assert_eq!(blocked["outcome"], "blocked", "{blocked}");
    assert_eq!(blocked["rcode"], "NXDOMAIN", "{blocked}");
    assert_eq!(
        blocked["explanation"]["decided_by"]["text"], "- .shop.test",
        "{blocked}"
    );

    let status = helper.ctl_json(["dns", "status"]);
    assert_eq!(status["enabled"], true, "{status}");
    assert_eq!(status["redirect"], true, "{status}");
    assert_eq!(status["listen"][0], format!("{RESOLVER}:53"), "{status}");
    let local = status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["zone"] == "test")
        .unwrap();
    assert!(local["answered"].as_u64().unwrap() >= 1, "{status}");
    let cached = status["cache_entries"].as_u64().unwrap();
    assert!(cached >= 1, "{status}");

    let flushed = helper.ctl_json(["dns", "flush"]);
    assert_eq!(flushed["entries"].as_u64(), Some(cached), "{flushed}");
    let status = helper.ctl_json(["dns", "status"]);
    assert_eq!(status["cache_entries"], 0, "{status}");

    // Apps' own DoH services are refused by name (block_doh, on by default), unless the
    // app may keep its own resolver.
    let doh = helper.ctl_json(["dns", "query", "dns.google", "--app", app]);
    assert_eq!(doh["outcome"], "blocked", "{doh}");
    assert_eq!(
        doh["explanation"]["decided_by"]["key"], "block_doh",
        "{doh}"
    );
    helper.ctl_json(["settings", "set", "--app", app, "block_doh", "false"]);
    let doh = helper.ctl_json(["dns", "query", "dns.google", "--app", app]);
    assert_ne!(doh["outcome"], "blocked", "{doh}");

    // A bad name is refused with the name given back.
    let bad = helper.ctl(["dns", "query", "a..b"]);
    assert!(!bad.success(), "{bad}");
    assert!(bad.stderr.contains("a..b"), "{bad}");
}

#[test]
fn tcp_queries_and_the_libc_resolver_land_on_the_helper_and_ipv6_dns_is_refused() {
    require_root!();
    let lab = Lab::new("dns-paths");
    let server = lab.server().ipv4();
    let dnsmasq = start_dnsmasq(
        lab.server(),
        server.into(),
        53,
        "test",
        &["shop.test,192.0.2.10"],
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
    let (browser, tracker) = (lab.app("browser"), lab.app("tracker"));
    helper.ctl_json([
        "rules",
        "add",
        "--app",
        tracker.to_str().unwrap(),
        "-",
        ".shop.test",
    ]);
    let direct = server.to_string();

    // Raw TCP queries to another resolver: redirected, attributed, decided per app.
    let out = lab
        .client()
        .run_app(&tracker, ["query", &direct, "shop.test", "--tcp"]);
    assert_eq!(out.code(), Some(RESOLVE), "{out}");
    assert!(out.stdout.contains("rcode=3"), "{out}");
    let out = lab
        .client()
        .run_app(&browser, ["query", &direct, "shop.test", "--tcp"]);
    assert_eq!(out.code(), Some(OK), "{out}");

    // The libc resolver (getent, whatever /etc/resolv.conf names): also the helper's, and
    // getent is an app of its own, with its own rules.
    let getent = |name: &str| {
        let mut cmd = std::process::Command::new("getent");
        cmd.args(["hosts", name]);
        lab.client().output(cmd)
    };
    let out = getent("shop.test");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("192.0.2.10"), "{out}");
    helper.ctl_json(["rules", "add", "--app", "/usr/bin/getent", "-", "shop.test"]);
    let out = getent("shop.test");
    assert!(!out.success(), "blocked for getent: {out}");
    // Only the helper ever asked dnsmasq.
    for line in dnsmasq.stderr().lines().filter(|l| l.contains("query[")) {
        assert!(
            line.contains(&format!("from {}", lab.client().ipv4())),
            "{line}"
        );
    }

    // IPv6 DNS to another resolver is refused at once (the helper has no IPv6 address to
    // redirect it to), so stub resolvers move on to IPv4; nothing leaves.
    let v6 = lab.server().ipv6().to_string();
    let started = std::time::Instant::now();
    let out = lab.client().run_app(&browser, ["query", &v6, "shop.test"]);
    assert_ne!(out.code(), Some(OK), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "refused at once: {out}"
    );
}
