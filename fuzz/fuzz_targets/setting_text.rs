//! Setting keys and values as typed on the command line: parsing never panics, and a parsed
//! value fits its key and displays to text that parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_protocol::{SettingKey, SettingValue};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    let _ = key.parse::<SettingKey>();
    for key in SettingKey::ALL {
        if let Ok(v) = SettingValue::parse(key, value) {
            assert!(v.check(key).is_ok());
            assert_eq!(SettingValue::parse(key, &v.to_string()).ok(), Some(v));
        }
    }
});
