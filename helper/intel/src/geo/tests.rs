use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn cc(code: &str) -> Country {
    Country::parse(code).expect("country")
}

/// A small database: two IPv4 country ranges with a gap, an IPv6 one, two ASNs sharing an
/// organisation name.
fn fixture() -> GeoDb {
    let mut b = GeoDbBuilder::new();
    b.country_range(ip("1.0.0.0"), ip("1.0.0.255"), cc("AU"))
        .expect("range");
    b.country_range(ip("1.0.2.0"), ip("1.0.3.255"), cc("CN"))
        .expect("range");
    b.country_range(ip("2001:db9::"), ip("2001:db9::ffff"), cc("DE"))
        .expect("range");
    b.country_range(ip("8.8.8.0"), ip("8.8.8.255"), cc("US"))
        .expect("range");
    b.asn_range(ip("1.0.0.0"), ip("1.0.0.255"), 13335, "Cloudflare, Inc.")
        .expect("range");
    b.asn_range(ip("8.8.8.0"), ip("8.8.8.255"), 15169, "Google LLC")
        .expect("range");
    b.asn_range(ip("2001:db9::"), ip("2001:db9::ffff"), 15169, "Google LLC")
        .expect("range");
    b.asn_range(ip("9.9.9.0"), ip("9.9.9.255"), 19281, "Quad9")
        .expect("range");
    b.build().expect("build")
}

#[test]
fn range_boundaries_and_gaps() {
    let db = fixture();
    assert_eq!(db.country(ip("0.255.255.255")), None);
    assert_eq!(db.country(ip("1.0.0.0")), Some(cc("AU")));
    assert_eq!(db.country(ip("1.0.0.255")), Some(cc("AU")));
    assert_eq!(db.country(ip("1.0.1.0")), None);
    assert_eq!(db.country(ip("1.0.1.255")), None);
    assert_eq!(db.country(ip("1.0.2.0")), Some(cc("CN")));
    assert_eq!(db.country(ip("1.0.3.255")), Some(cc("CN")));
    assert_eq!(db.country(ip("1.0.4.0")), None);
    assert_eq!(db.country(ip("2001:db9::ffff")), Some(cc("DE")));
    assert_eq!(db.country(ip("2001:db9::1:0")), None);
    let google = db.asn(ip("8.8.8.8")).expect("asn");
    assert_eq!(
        google,
        Asn {
            number: 15169,
            org: "Google LLC"
        }
    );
    assert_eq!(db.asn(ip("2001:db9::1")), Some(google));
    assert_eq!(db.asn(ip("9.9.9.9")).map(|a| a.number), Some(19281));
    assert_eq!(db.asn(ip("9.9.10.0")), None);
    let geo = db.lookup(ip("1.0.0.1"));
    assert_eq!(geo.country, Some(cc("AU")));
    assert_eq!(geo.continent(), Some(Continent::Oceania));
    assert_eq!(geo.asn.map(|a| a.org), Some("Cloudflare, Inc."));
    let stats = db.stats();
    assert_eq!((stats.asns, stats.orgs), (3, 3));
    assert!(stats.heap_bytes > 0);
}

#[test]
fn mapped_and_nat64_addresses_are_looked_up_as_ipv4() {
    let db = fixture();
    for addr in ["::ffff:8.8.8.8", "64:ff9b::808:808"] {
        let geo = db.lookup(ip(addr));
        assert_eq!(geo.country, Some(cc("US")), "{addr}");
        assert_eq!(geo.asn.map(|a| a.number), Some(15169), "{addr}");
    }
    // A range given as IPv4-mapped IPv6 lands in the IPv4 table.
    let mut b = GeoDbBuilder::new();
    b.country_range(ip("::ffff:5.0.0.0"), ip("::ffff:5.0.0.255"), cc("FR"))
        .expect("range");
    let db = b.build().expect("build");
    assert_eq!(db.country(ip("5.0.0.7")), Some(cc("FR")));
}

#[test]
fn non_routed_addresses_have_no_geo() {
    let mut b = GeoDbBuilder::new();
    // Data claiming the whole space must still not place local addresses.
    b.country_range(ip("0.0.0.0"), ip("255.255.255.255"), cc("US"))
        .expect("range");
    b.country_range(
        ip("::"),
        ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        cc("US"),
    )
    .expect("range");
    b.asn_range(ip("0.0.0.0"), ip("255.255.255.255"), 1, "x")
        .expect("range");
    let db = b.build().expect("build");
    for addr in [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.251",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:192.168.1.1",
        "64:ff9b::a00:1",
    ] {
        assert_eq!(db.lookup(ip(addr)), Geo::default(), "{addr}");
    }
    assert_eq!(db.country(ip("172.32.0.1")), Some(cc("US")));
    assert_eq!(db.country(ip("100.128.0.1")), Some(cc("US")));
    assert_eq!(db.country(ip("2a00::1")), Some(cc("US")));
}

#[test]
fn empty_database_knows_nothing() {
    let db = GeoDb::empty();
    assert_eq!(db.lookup(ip("8.8.8.8")), Geo::default());
    assert_eq!(db.stats(), GeoStats::default());
}

#[test]
fn bad_ranges_are_refused() {
    let mut b = GeoDbBuilder::new();
    let e = b
        .country_range(ip("1.0.0.0"), ip("::1"), cc("DE"))
        .expect_err("mixed");
    assert!(e.to_string().contains("mixes IPv4 and IPv6"), "{e}");
    let e = b
        .asn_range(ip("1.0.0.9"), ip("1.0.0.1"), 5, "")
        .expect_err("reversed");
    assert!(e.to_string().contains("first address after last"), "{e}");
}

const CSV: &str = "\
1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\r
2.26.200.0,2.26.215.255,201907,\"LLC \"\"SPUTNIK\"\"\"

2001::,2001::ffff:ffff:ffff:ffff:ffff:ffff,6939,Hurricane Electric LLC
";

#[test]
fn asn_csv_fixture_loads() {
    let mut b = GeoDbBuilder::new();
    let rows = b.asn_csv(Cursor::new(CSV), "fixture.csv").expect("csv");
    assert_eq!(rows, 3);
    let db = b.build().expect("build");
    assert_eq!(
        db.asn(ip("1.0.0.1")).map(|a| a.org),
        Some("Cloudflare, Inc.")
    );
    assert_eq!(
        db.asn(ip("2.26.201.1")).map(|a| a.org),
        Some("LLC \"SPUTNIK\"")
    );
    assert_eq!(db.asn(ip("2001::1")).map(|a| a.number), Some(6939));
}

#[test]
fn corrupt_csv_lines_name_file_and_line() {
    let cases = [
        ("1.0.0.0,1.0.0.255,13335\n", 1, "3 field(s), expected 4"),
        (
            "1.0.0.0,1.0.0.255,1,a\n1.0.0.x,1.0.0.255,1,a\n",
            2,
            "not an IP address",
        ),
        ("1.0.0.0,1.0.0.255,AS1,a\n", 1, "not a number"),
        ("1.0.0.0,1.0.0.255,99999999999,a\n", 1, "not a number"),
        ("1.0.0.0,::1,1,a\n", 1, "mixes IPv4 and IPv6"),
        ("1.0.0.9,1.0.0.0,1,a\n", 1, "first address after last"),
        ("\n\n1.0.0.0,1.0.0.255,1,\"a\n", 3, "unterminated quote"),
        ("1.0.0.0,1.0.0.255,1,a,b\n", 1, "more than 4 fields"),
    ];
    for (text, line, needle) in cases {
        let e = GeoDbBuilder::new()
            .asn_csv(Cursor::new(text), "asn-test.csv")
            .expect_err(text);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("asn-test.csv: line {line}: ")) && msg.contains(needle),
            "{text:?}: {msg}"
        );
    }
    let e = GeoDbBuilder::new()
        .asn_csv(
            Cursor::new(b"1.0.0.0,1.0.0.255,1,\xff\n".to_vec()),
            "bin.csv",
        )
        .expect_err("utf-8");
    assert_eq!(e.to_string(), "bin.csv: line 1: not UTF-8");
}

#[test]
fn truncated_or_garbage_mmdb_is_an_error_naming_the_file() {
    for bytes in [
        &b""[..],
        &b"not a database at all"[..],
        &b"\xab\xcd\xefMaxMind.com"[..],
        &b"\x00\x00\x00\x00\xab\xcd\xefMaxMind.com\xe0"[..],
    ] {
        let e = GeoDbBuilder::new()
            .country_mmdb(bytes, "broken.mmdb")
            .expect_err("corrupt");
        assert!(
            e.to_string()
                .starts_with("broken.mmdb: not a valid MaxMind DB file"),
            "{e}"
        );
    }
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = GeoDb::load(&GeoFiles::in_dir(dir.path())).expect_err("missing");
    assert!(e.to_string().contains("dbip-country.mmdb"), "{e}");
}

/// The naive model: the last-added row containing the address wins only if no row starting
/// later (or at the same start, added later) also contains it — exactly the builder's rule
/// for non-nested overlaps. The strategy generates disjoint rows, so the rule reduces to
/// "the row that contains it".
fn model(rows: &[(u32, u32, u16)], addr: u32) -> Option<u16> {
    rows.iter()
        .find(|(a, b, _)| *a <= addr && addr <= *b)
        .map(|(_, _, v)| *v)
}

fn disjoint_rows() -> impl Strategy<Value = Vec<(u32, u32, u16)>> {
    // Sorted cut points over a small space so ranges, gaps and neighbours all occur; values
    // from a handful of countries so merging occurs too.
    (
        prop::collection::btree_set(any::<u32>(), 0..40),
        prop::collection::vec((0u16..4, any::<bool>()), 40),
    )
        .prop_map(|(cuts, labels)| {
            let cuts: Vec<u32> = cuts.into_iter().collect();
            cuts.windows(2)
                .zip(labels)
                .filter(|(_, (_, keep))| *keep)
                .map(|(w, (v, _))| (w[0], w[1] - 1, v))
                .collect()
        })
}

const CODES: [&str; 4] = ["DE", "FR", "US", "JP"];

proptest! {
    #[test]
    fn lookups_match_a_linear_scan(
        mut rows in disjoint_rows(),
        probes in prop::collection::vec(any::<u32>(), 0..64),
        shuffle in any::<u64>(),
    ) {
        // Feed rows in a scrambled order: the builder must sort.
        let n = rows.len().max(1);
        rows.rotate_left((shuffle as usize) % n);
        let mut b = GeoDbBuilder::new();
        for (first, last, v) in &rows {
            b.country_range(
                IpAddr::V4((*first).into()),
                IpAddr::V4((*last).into()),
                cc(CODES[*v as usize]),
            ).expect("range");
            b.asn_range(IpAddr::V4((*first).into()), IpAddr::V4((*last).into()), u32::from(*v) + 1, CODES[*v as usize]).expect("range");
        }
        let db = b.build().expect("build");
        let edges = rows.iter().flat_map(|(a, b, _)| [a.wrapping_sub(1), *a, *b, b.wrapping_add(1)]);
        for addr in probes.into_iter().chain(edges) {
            let ip = IpAddr::V4(addr.into());
            let want = routed(ip).and(model(&rows, addr));
            prop_assert_eq!(db.country(ip), want.map(|v| cc(CODES[v as usize])), "{}", ip);
            prop_assert_eq!(db.asn(ip).map(|a| a.number), want.map(|v| u32::from(v) + 1), "{}", ip);
        }
    }

    #[test]
    fn ipv6_lookups_match_a_linear_scan(
        cuts in prop::collection::btree_set(0x2000u128 << 112..0x2100u128 << 112, 0..30),
        probes in prop::collection::vec(0x2000u128 << 112..0x2100u128 << 112, 0..64),
    ) {
        let cuts: Vec<u128> = cuts.into_iter().collect();
        let rows: Vec<(u128, u128, usize)> = cuts
            .windows(2)
            .enumerate()
            .filter(|(i, _)| i % 3 != 1)
            .map(|(i, w)| (w[0], w[1] - 1, i % 4))
            .collect();
        let mut b = GeoDbBuilder::new();
        for (first, last, v) in &rows {
            b.country_range(IpAddr::V6((*first).into()), IpAddr::V6((*last).into()), cc(CODES[*v]))
                .expect("range");
        }
        let db = b.build().expect("build");
        let edges = rows.iter().flat_map(|(a, b, _)| [a - 1, *a, *b, b + 1]);
        for addr in probes.into_iter().chain(edges) {
            let ip = IpAddr::V6(addr.into());
            let want = routed(ip)
                .and(rows.iter().find(|(a, b, _)| *a <= addr && addr <= *b))
                .map(|(_, _, v)| cc(CODES[*v]));
            prop_assert_eq!(db.country(ip), want, "{}", ip);
        }
    }

    #[test]
    fn csv_loader_never_panics(text in "[0-9a-f.:,\"\\n ]{0,200}") {
        let _ = GeoDbBuilder::new().asn_csv(Cursor::new(text), "fuzz.csv");
    }

    #[test]
    fn mmdb_loader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = bytes;
        bytes.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
        let _ = GeoDbBuilder::new().country_mmdb(&bytes, "fuzz.mmdb");
    }
}

/// The real shipped data, if `scripts/fetch-intel-data` installed it. Under CI (`CI=true`) a
/// missing data directory fails the test: CI must fetch the data, never skip silently.
#[test]
fn real_data_places_well_known_addresses() {
    let dir = std::env::var_os("PORTCULLIS_INTEL_DATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/intel/dist"),
        PathBuf::from,
    );
    let files = GeoFiles::in_dir(&dir);
    if !files.country_mmdb.exists() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI: geo data missing in {} (run scripts/fetch-intel-data first)",
            dir.display()
        );
        eprintln!(
            "SKIPPED real_data_places_well_known_addresses: no geo data in {} \
             (run `make intel-data`; set PORTCULLIS_INTEL_DATA to use another directory)",
            dir.display()
        );
        return;
    }
    let started = std::time::Instant::now();
    let db = GeoDb::load(&files).expect("load real data");
    eprintln!(
        "loaded real geo data in {:?}: {:?}",
        started.elapsed(),
        db.stats()
    );
    let cases = [
        ("1.1.1.1", 13335, None),
        ("8.8.8.8", 15169, Some("US")),
        ("9.9.9.9", 19281, None),
        ("2606:4700:4700::1111", 13335, None),
        ("2001:4860:4860::8888", 15169, None),
        ("::ffff:8.8.4.4", 15169, Some("US")),
    ];
    for (addr, asn, country) in cases {
        let geo = db.lookup(ip(addr));
        assert_eq!(geo.asn.map(|a| a.number), Some(asn), "{addr}: {geo:?}");
        assert!(geo.country.is_some(), "{addr}: {geo:?}");
        if let Some(country) = country {
            assert_eq!(geo.country, Some(cc(country)), "{addr}");
        }
    }
    assert_eq!(db.lookup(ip("192.168.1.1")), Geo::default());
    assert_eq!(
        db.country(ip("81.2.69.142")).and_then(Country::continent),
        Some(Continent::Europe)
    );
    let stats = db.stats();
    assert!(
        stats.country_v4 > 100_000 && stats.asn_v4 > 100_000,
        "{stats:?}"
    );

    // The real file cut short (as by an interrupted copy) is an error naming it.
    let bytes = std::fs::read(&files.country_mmdb).expect("read mmdb");
    for cut in [bytes.len() / 2, bytes.len() - 100] {
        let e = GeoDbBuilder::new()
            .country_mmdb(bytes.get(..cut).expect("cut"), "cut.mmdb")
            .expect_err("truncated");
        assert!(e.to_string().starts_with("cut.mmdb: "), "{e}");
    }
}
