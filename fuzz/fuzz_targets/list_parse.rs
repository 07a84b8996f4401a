//! Filter list files from the network: parsing never panics in any format, every entry it keeps
//! is a valid normalised name (or network), every reported line exists, and the matchers built
//! from the result find each kept name and each kept network's first and last address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_intel::ipset::IpSetBuilder;
use portcullis_intel::lists::{
    Category, IpRule, ListFormat, ListMeta, Parsed, ParsedList, detect, normalize_domain, parse,
    parse_ips,
};
use portcullis_intel::matcher::{DomainSetBuilder, MatchKind};

fn meta() -> ListMeta {
    ListMeta {
        id: "fuzz".into(),
        name: "fuzz".into(),
        category: Category::Other("fuzz".into()),
        source: "fuzz".into(),
    }
}

fn check_ips(rules: &[IpRule], lines: u64) {
    let mut b = IpSetBuilder::new();
    b.add_list(meta(), rules).expect("one list");
    let set = b.build().expect("small");
    for r in rules {
        assert_eq!(r.net, r.net.trunc());
        assert!(r.line >= 1 && u64::from(r.line) <= lines);
        // The text shown for the entry parses back to the same network.
        let text = r.written.to_string();
        let back = parse_ips(text.as_bytes());
        assert_eq!(back.entries.first().map(|b| b.net), Some(r.net), "{text}");
        for addr in [r.net.network(), r.net.broadcast()] {
            // An IPv4-mapped IPv6 address is looked up as the IPv4 address (as the policy's
            // own CIDR rules do), so an IPv6 network over that range does not match it.
            if let std::net::IpAddr::V6(v6) = addr
                && v6.to_ipv4_mapped().is_some()
            {
                continue;
            }
            let m = set.lookup(addr).expect("a kept network matches");
            assert!(u64::from(m.line) <= lines);
        }
    }
}

fn check_domains(p: &Parsed<portcullis_intel::lists::DomainRule>, lines: u64) {
    assert!(p.errors.len() as u64 <= p.error_count);
    for e in &p.errors {
        assert!(e.line >= 1 && u64::from(e.line) <= lines, "line {}", e.line);
    }
    for r in p.entries.iter().chain(&p.exceptions) {
        assert_eq!(normalize_domain(&r.name).as_deref(), Ok(r.name.as_str()));
        assert!(r.line >= 1 && u64::from(r.line) <= lines);
    }
    let mut b = DomainSetBuilder::new();
    b.add_list(meta(), p).expect("one list");
    let set = b.build().expect("small");
    for r in &p.entries {
        let m = set.lookup(&r.name).expect("a kept name matches");
        assert_eq!(m.domain, r.name);
        let _ = m.kind == MatchKind::Block;
    }
}

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let _ = detect(data);
    for format in ListFormat::ALL {
        match parse(data, format) {
            ParsedList::Domains(p) => check_domains(&p, lines),
            ParsedList::Ips(p) => check_ips(&p.entries, lines),
            ParsedList::Mixed(m) => {
                check_domains(&m.domains, lines);
                check_ips(&m.ips, lines);
            }
        }
    }
});
