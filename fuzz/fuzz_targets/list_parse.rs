//! Filter list files from the network: parsing never panics in any format, every entry it keeps
//! is a valid normalised name (or network), every reported line exists, and the matcher built
//! from the result finds each kept name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_intel::lists::{
    Category, ListFormat, ListMeta, ParsedList, detect, normalize_domain, parse,
};
use portcullis_intel::matcher::{DomainSetBuilder, MatchKind};

const FORMATS: [ListFormat; 4] = [
    ListFormat::Adblock,
    ListFormat::Hosts,
    ListFormat::Domains,
    ListFormat::Ips,
];

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let _ = detect(data);
    for format in FORMATS {
        match parse(data, format) {
            ParsedList::Domains(p) => {
                assert!(p.errors.len() as u64 <= p.error_count);
                for e in &p.errors {
                    assert!(e.line >= 1 && u64::from(e.line) <= lines, "line {}", e.line);
                }
                for r in p.entries.iter().chain(&p.exceptions) {
                    assert_eq!(normalize_domain(&r.name).as_deref(), Ok(r.name.as_str()));
                    assert!(r.line >= 1 && u64::from(r.line) <= lines);
                }
                let mut b = DomainSetBuilder::new();
                let meta = ListMeta {
                    id: "fuzz".into(),
                    name: "fuzz".into(),
                    category: Category::Other("fuzz".into()),
                    source: "fuzz".into(),
                };
                b.add_list(meta, &p).expect("one list");
                let set = b.build().expect("small");
                for r in &p.entries {
                    let m = set.lookup(&r.name).expect("a kept name matches");
                    assert_eq!(m.domain, r.name);
                    let _ = m.kind == MatchKind::Block;
                }
            }
            ParsedList::Ips(p) => {
                for r in &p.entries {
                    assert_eq!(r.net, r.net.trunc());
                }
            }
        }
    }
});
