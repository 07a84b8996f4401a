//! The links' own DNS, end to end: the real `portcullisd` with its resolver follows what the
//! system says each link's DNS is (here a stand-in for systemd-resolved's `busctl` answer:
//! no systemd runs on the test machines), and names of a link's domain go to that link's
//! resolver (a real dnsmasq) while the link is up, and back to the public upstream after.

use std::time::{Duration, Instant};

use portcullis_lab::app_codes::{OK, RESOLVE};
use portcullis_lab::dns::start_dnsmasq;
use portcullis_lab::{HelperOpts, Lab, require_root};

const RESOLVER: &str = "127.0.0.153";
/// The "VPN's" resolver: an address on the server namespace's loopback, routed from the client.
const LINK_DNS: &str = "5.5.5.53";

#[test]
fn a_links_domains_go_to_its_resolver_while_it_is_up() {
    require_root!();
    let lab = Lab::new("link-dns");
    let server = lab.server().ipv4();
    lab.server().run(
        "ip",
        ["addr", "add", &format!("{LINK_DNS}/32"), "dev", "lo"],
    );
    lab.client().run(
        "ip",
        [
            "route",
            "add",
            &format!("{LINK_DNS}/32"),
            "via",
            &server.to_string(),
        ],
    );
    // The public upstream knows nothing of corp.test; the link's resolver does.
    let _public = start_dnsmasq(lab.server(), server.into(), 53, "test", &[], &[]);
    let _link = start_dnsmasq(
        lab.server(),
        LINK_DNS.parse().unwrap(),
        53,
        "corp.test",
        &["intranet.corp.test,10.1.2.3"],
        &[],
    );

    // What `busctl` says: while the "VPN" (link 7) is up, its server and routing domain;
    // while it is down, no link DNS at all; while resolved is "restarting", nothing (fails).
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("vpn-up");
    let broken = dir.path().join("resolved-down");
    let busctl = dir.path().join("busctl");
    let script = r#"#!/bin/sh
[ -e BROKEN ] && exit 1
if [ -e STATE ]; then
  dns='[[7,2,[5,5,5,53]]]'; domains='[[7,"corp.test",true]]'
else
  dns='[]'; domains='[]'
fi
case "$6" in
  DNS) echo "{\"type\":\"a(iiay)\",\"data\":$dns}" ;;
  Domains) echo "{\"type\":\"a(isb)\",\"data\":$domains}" ;;
  *) exit 1 ;;
esac
"#
    .replace("BROKEN", &broken.display().to_string())
    .replace("STATE", &state.display().to_string());
    std::fs::write(&busctl, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&busctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "[dns]\nenabled = true\n[dns.resolver]\nlisten = [\"{RESOLVER}:53\"]\n\
         upstreams = [\"plain://{server}\"]\n\
         [dns.links]\nbusctl = \"{}\"\nnmcli = \"/nonexistent\"\nrefresh_secs = 1\n",
        busctl.display()
    );
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let app = lab.app("mail");
    let query = || {
        lab.client()
            .run_app(&app, ["query", RESOLVER, "intranet.corp.test"])
    };
    let wait_for = |code: i32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = query();
            if out.code() == Some(code) {
                return out;
            }
            assert!(Instant::now() < deadline, "still {out} after 10 s");
            std::thread::sleep(Duration::from_millis(300));
        }
    };

    // No link brings corp.test: the public upstream answers, and it does not know the name.
    let out = query();
    assert_eq!(out.code(), Some(RESOLVE), "{out}");

    // The VPN comes up: its domain goes to its resolver.
    std::fs::write(&state, "").unwrap();
    let out = wait_for(OK);
    assert!(out.stdout.contains("10.1.2.3"), "{out}");
    let status = helper.ctl_json(["dns", "status"]);
    assert!(
        status["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["zone"] == "corp.test"),
        "{status}"
    );

    // resolved cannot be asked for a while: that is no news, the VPN's zone stays.
    std::fs::write(&broken, "").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let out = query();
    assert!(out.stdout.contains("10.1.2.3"), "{out}");
    std::fs::remove_file(&broken).unwrap();

    // And down again: back to the public upstream.
    std::fs::remove_file(&state).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let out = wait_for(RESOLVE);
    assert!(!out.stdout.contains("10.1.2.3"), "{out}");
}
