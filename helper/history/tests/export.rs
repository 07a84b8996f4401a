//! Export and import: both formats round-trip, and bad input is refused with its line.
#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod common;

use std::net::IpAddr;

use common::record;
use portcullis_history::export::{self, Format};
use portcullis_history::{
    Direction, ExportError, Filter, Kind, Protocol, Record, Scope, Store, Verdict, Verify,
};
use proptest::prelude::*;

fn store(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(&dir.path().join(name), Verify::Schema)
        .unwrap()
        .store
}

#[test]
fn a_filtered_export_round_trips_through_a_fresh_database() {
    for format in [Format::JsonLines, Format::Csv] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = store(&dir, "a.sqlite3");
        let mut records: Vec<Record> = (0..500).map(|i| record(i, "/usr/bin/curl")).collect();
        // Awkward values: quotes, commas, newlines, empty strings, equal timestamps.
        records[3].explanation = "a \"quoted\", multi\r\nline\nexplanation".into();
        records[4].exe = Some(String::new());
        records[5].domain = Some("comma,domain".into());
        records[6].unix_ms = records[7].unix_ms;
        a.insert(&records).unwrap();
        let filter = Filter {
            verdict: Some(Verdict::Allow),
            ..Filter::default()
        };
        let mut first = Vec::new();
        let n = export::export(&a, &filter, format, &mut first).unwrap();
        assert_eq!(n, 400);

        let mut b = store(&dir, "b.sqlite3");
        assert_eq!(
            export::import(&mut b, format, &mut first.as_slice()).unwrap(),
            400
        );
        let mut second = Vec::new();
        export::export(&b, &Filter::default(), format, &mut second).unwrap();
        assert_eq!(
            String::from_utf8(first).unwrap(),
            String::from_utf8(second).unwrap(),
            "{format:?}"
        );

        let rows = |s: &Store| {
            let mut v = Vec::new();
            s.for_each(&filter, 100, |r| -> Result<(), ExportError> {
                v.push(r.record);
                Ok(())
            })
            .unwrap();
            v
        };
        assert_eq!(rows(&a), rows(&b));
    }
}

#[test]
fn bad_input_names_the_line_and_column() {
    let json = "{\"kind\":\"dns\"}\n";
    let err = export::decode(Format::JsonLines, &format!("\n{json}")).unwrap_err();
    assert!(matches!(err, ExportError::Json { line: 2, .. }), "{err}");

    let mut good = Vec::new();
    export::encode(Format::Csv, &[record(1, "/usr/bin/curl")], &mut good).unwrap();
    let good = String::from_utf8(good).unwrap();
    let bad_port = good.replacen(",443,", ",99999,", 1);
    let err = export::decode(Format::Csv, &bad_port).unwrap_err();
    assert!(
        err.to_string().contains("line 2, column remote_port"),
        "{err}"
    );
    let bad_verdict = good.replace(",allow,", ",maybe,");
    let err = export::decode(Format::Csv, &bad_verdict).unwrap_err();
    assert!(err.to_string().contains("column verdict"), "{err}");
    let err = export::decode(Format::Csv, "kind,app\n").unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
    let err = export::decode(Format::Csv, &format!("{good}\"unterminated")).unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
    let err = export::decode(Format::Csv, &format!("{good}a,b\n")).unwrap_err();
    assert!(err.to_string().contains("2 fields"), "{err}");
    assert!(export::decode(Format::Csv, "").unwrap().is_empty());
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./-]{0,12}",
        any::<String>(),
        Just(String::new()),
        Just("\"a,b\"\r\n".to_owned()),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ];
    let counters = (
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
    );
    (
        (
            prop::sample::select(Kind::ALL),
            any::<i64>(),
            arb_text(),
            any::<Option<u32>>(),
            prop::option::of(arb_text()),
            prop::sample::select(Direction::ALL),
            prop::sample::select(Protocol::ALL),
            ip.clone(),
            any::<Option<u16>>(),
            ip,
            any::<Option<u16>>(),
        ),
        (
            prop::option::of(arb_text()),
            prop::option::of(arb_text()),
            any::<Option<u32>>(),
            prop::sample::select(Scope::ALL),
            prop::sample::select(Verdict::ALL),
            arb_text(),
            counters,
            any::<Option<i64>>(),
            any::<Option<i64>>(),
        ),
    )
        .prop_map(|(a, b)| Record {
            kind: a.0,
            unix_ms: a.1,
            app: a.2,
            pid: a.3,
            exe: a.4,
            direction: a.5,
            protocol: a.6,
            local: a.7,
            local_port: a.8,
            remote: a.9,
            remote_port: a.10,
            domain: b.0,
            country: b.1,
            asn: b.2,
            scope: b.3,
            verdict: b.4,
            explanation: b.5,
            bytes_out: b.6.0,
            bytes_in: b.6.1,
            packets_out: b.6.2,
            packets_in: b.6.3,
            start_ms: b.7,
            end_ms: b.8,
        })
}

proptest! {
    #[test]
    fn any_records_round_trip_through_both_formats(records in prop::collection::vec(arb_record(), 0..8)) {
        for format in [Format::JsonLines, Format::Csv] {
            let mut out = Vec::new();
            export::encode(format, &records, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            prop_assert_eq!(&export::decode(format, &text).unwrap(), &records, "{:?}", format);
        }
    }

    #[test]
    fn any_records_round_trip_through_the_database(records in prop::collection::vec(arb_record(), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir, "p.sqlite3");
        s.insert(&records).unwrap();
        let mut back: Vec<(i64, Record)> = Vec::new();
        s.for_each(&Filter::default(), 3, |r| -> Result<(), ExportError> {
            back.push((r.id, r.record));
            Ok(())
        }).unwrap();
        back.sort_by_key(|(id, _)| *id);
        let back: Vec<Record> = back.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(back, records);
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = export::decode(Format::Csv, &text);
        let _ = export::decode(Format::JsonLines, &text);
    }
}
