//! Country, continent and ASN on live connections: the real `portcullisd` with the shipped
//! geo data (`scripts/fetch-intel-data`, run by `make test`), and rules that name them. The
//! server namespace also holds a public address (1.1.1.1, on its loopback): traffic to it
//! never leaves the lab's namespaces.

use std::net::IpAddr;
use std::path::PathBuf;

use portcullis_intel::geo::{GeoDb, GeoFiles};
use portcullis_lab::app_codes::{OK, REFUSED};
use portcullis_lab::{HelperOpts, Lab, require_root};

const PUBLIC: &str = "1.1.1.1";

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/intel/dist");
    assert!(
        dir.join("geo/dbip-country.mmdb").is_file(),
        "the shipped geo data is missing in {} (run `make intel-data`)",
        dir.display()
    );
    dir
}

#[test]
fn connections_carry_country_and_asn_and_rules_on_them_decide() {
    require_root!();
    let dir = data_dir();
    // What the data says about the address, to compare with what the helper says.
    let db = GeoDb::load(&GeoFiles::in_dir(&dir)).unwrap();
    let ip: IpAddr = PUBLIC.parse().unwrap();
    let country = db.country(ip).expect("1.1.1.1 has a country");
    let continent = country.continent().expect("and a continent");
    let asn = db.asn(ip).expect("and an ASN").number;
    drop(db);

    let lab = Lab::new("geo");
    lab.server()
        .run("ip", ["addr", "add", &format!("{PUBLIC}/32"), "dev", "lo"]);
    let server = lab.server().ipv4().to_string();
    lab.client().run(
        "ip",
        ["route", "add", &format!("{PUBLIC}/32"), "via", &server],
    );
    let _echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(format!("[intel]\ndata_dir = \"{}\"\n", dir.display())),
        ..HelperOpts::default()
    });
    let app = lab.app("roamer");
    let key = app.to_str().unwrap();
    let connect = || {
        lab.client()
            .run_app(
                &app,
                ["connect", "tcp", PUBLIC, "7", "--timeout-ms", "2000"],
            )
            .status
            .code()
    };

    // `intel lookup` says what the data says, and nothing for a private address.
    let info = helper.ctl_json(["intel", "lookup", PUBLIC]);
    assert_eq!(info["geo_loaded"], true, "{info}");
    assert_eq!(info["country"], country.as_str(), "{info}");
    assert_eq!(info["continent"], continent.code(), "{info}");
    assert_eq!(info["asn"], asn, "{info}");
    let private = helper.ctl_json(["intel", "lookup", "10.1.2.3"]);
    assert!(
        private["country"].is_null() && private["asn"].is_null(),
        "{private}"
    );
    let text = helper.ctl(["intel", "lookup", PUBLIC]);
    assert!(text.stdout.contains(&format!("AS{asn}")), "{}", text.stdout);

    assert_eq!(connect(), Some(OK));
    let conns = helper.ctl_json(["connections"]);
    let last = conns
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["app"] == key)
        .cloned()
        .unwrap();
    assert_eq!(last["country"], country.as_str(), "{last}");
    assert_eq!(last["asn"], asn, "{last}");
    // An Internet address the app did not look up through Portcullis' DNS.
    assert_eq!(last["scope"], "p2p", "{last}");
    // The lab's own private addresses have neither.
    assert_eq!(
        lab.client()
            .run_app(
                &app,
                ["connect", "tcp", &server, "7", "--timeout-ms", "2000"]
            )
            .status
            .code(),
        Some(OK)
    );
    let conns = helper.ctl_json(["connections"]);
    let private = conns.as_array().unwrap().last().unwrap();
    assert!(
        private["country"].is_null() && private["asn"].is_null(),
        "{private}"
    );

    // Each kind of rule decides the connection by what geo-IP says about its address.
    for rule in [
        format!("AS{asn}"),
        country.as_str().to_owned(),
        format!("continent:{}", continent.code()),
    ] {
        let added = helper.ctl_json(["rules", "add", "--app", key, "-", &rule]);
        assert_eq!(connect(), Some(REFUSED), "- {rule}");
        // `explain` answers as the verdict path decides.
        let why = helper.ctl_json(["explain", "--app", key, "tcp", PUBLIC, "7"]);
        assert_eq!(why["verdict"], "block", "- {rule}: {why}");
        let id = added["id"].to_string();
        helper.ctl_json(["rules", "remove", &id]);
        assert_eq!(connect(), Some(OK), "after removing - {rule}");
    }
    // A rule for another country decides nothing here.
    let other = if country.as_str() == "DE" { "FR" } else { "DE" };
    helper.ctl_json(["rules", "add", "--app", key, "-", other]);
    assert_eq!(connect(), Some(OK));

    // History keeps them too.
    let page = helper.ctl_json([
        "history",
        "query",
        "--app",
        key,
        "--country",
        country.as_str(),
    ]);
    let rows = page["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{page}");
    assert!(rows.iter().all(|r| r["asn"] == asn), "{page}");
    let blocked = helper.ctl_json([
        "history",
        "query",
        "--asn",
        &asn.to_string(),
        "--verdict",
        "block",
    ]);
    assert_eq!(blocked["rows"].as_array().unwrap().len(), 3, "{blocked}");
}
