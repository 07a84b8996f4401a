//! History imports (JSON lines and CSV) from users' files: decoding never panics, and
//! whatever decodes encodes back to text that decodes to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_history::export::{self, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in [Format::JsonLines, Format::Csv] {
        match export::decode(format, text) {
            Ok(records) => {
                let mut out = Vec::new();
                export::encode(format, &records, &mut out).expect("encoding to memory");
                let again = String::from_utf8(out).expect("exports are UTF-8");
                let back = export::decode(format, &again).expect("our own export decodes");
                assert_eq!(back, records, "round trip of {format:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
