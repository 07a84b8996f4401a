//! Rule text from users and clients: parsing never panics, and whatever parses has a
//! canonical form that parses back to the same rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::Rule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match text.parse::<Rule>() {
        Ok(rule) => {
            let canonical = rule.to_string();
            let again: Rule = canonical.parse().expect("canonical text parses");
            assert_eq!(again, rule, "round trip of {canonical:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
