//! Filter lists, end to end: the real `portcullisd` loads lists from its data directory, its
//! resolver refuses listed names for the apps that use those lists (`filter_lists`), says
//! which list and line, lets the lists' own exceptions and the user's allow rules win, and
//! history keeps why.

use portcullis_lab::app_codes::{OK, RESOLVE};
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

    // An app that only uses the ad lists is not stopped by the tracker list.
    helper.ctl_json([
        "settings",
        "set",
        "--app",
        game.to_str().unwrap(),
        "filter_lists",
        "ads",
    ]);
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
