//! Bundle manifests and signatures from the network: verification never panics on any bytes,
//! and whatever it accepts was signed by the trusted key, is newer than the installed
//! version, and names only safe, distinct, bounded files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_intel::bundle::{FileEntry, TrustedKey, check_path, verify, verify_file};

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let trusted = [TrustedKey::new(key.verifying_key())];
    // As given: the first 64 bytes are the signature, the rest the manifest.
    let (sig, manifest) = data.split_at(data.len().min(64));
    if let Ok(m) = verify(manifest, sig, &trusted, 3, 1 << 20) {
        assert!(m.version > 3);
        for f in &m.files {
            assert!(check_path(&f.path).is_ok());
            assert!(f.size <= 1 << 20);
        }
    }
    // Signed: every manifest that parses must pass or fail with a named error, never panic.
    let sig = portcullis_intel::bundle::sign(data, &key);
    if let Ok(m) = verify(data, &sig, &trusted, 0, 1 << 20) {
        for f in &m.files {
            let _ = verify_file(f, data);
        }
    }
    let _ = verify_file(&FileEntry::of("f", b"x"), data);
    let _ = TrustedKey::from_base64(&String::from_utf8_lossy(data));
});
