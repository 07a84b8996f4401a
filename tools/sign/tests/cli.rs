//! The signing tool as a publisher uses it: keygen, sign, verify, and refusals.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failure stops the test with its message"
)]

use std::path::Path;
use std::process::{Command, Output};

fn sign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis-sign"))
        .args(args)
        .output()
        .expect("portcullis-sign runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn keygen_sign_verify_and_refusals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("key");
    let out = sign(&["keygen", "--out", p(&key)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pubkey = text(&out.stdout).trim().to_owned();
    assert_eq!(pubkey.len(), 44, "{pubkey}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten.
    let again = sign(&["keygen", "--out", p(&key)]);
    assert_eq!(again.status.code(), Some(1));
    let shown = sign(&["pubkey", "--key", p(&key)]);
    assert_eq!(text(&shown.stdout).trim(), pubkey);

    let dir = tmp.path().join("bundle");
    std::fs::create_dir_all(dir.join("lists")).expect("mkdir");
    std::fs::write(dir.join("lists/easylist.txt"), "||ads.example^\n").expect("write");
    let out = sign(&["sign", "--key", p(&key), "--version", "7", p(&dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(dir.join("manifest.sig")).expect("sig").len(),
        64
    );
    let ok = sign(&["verify", "--pubkey", &pubkey, p(&dir)]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("ok: version 7, 1 files"));

    let rollback = sign(&["verify", "--pubkey", &pubkey, "--installed", "7", p(&dir)]);
    assert_eq!(rollback.status.code(), Some(1));
    assert!(
        text(&rollback.stderr).contains("rollback"),
        "{}",
        text(&rollback.stderr)
    );

    let other = tmp.path().join("other");
    let out = sign(&["keygen", "--out", p(&other)]);
    let other_pub = text(&out.stdout).trim().to_owned();
    let wrong = sign(&["verify", "--pubkey", &other_pub, p(&dir)]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("not trusted"),
        "{}",
        text(&wrong.stderr)
    );

    std::fs::write(dir.join("lists/easylist.txt"), "||ads.exbmple^\n").expect("write");
    let tampered = sign(&["verify", "--pubkey", &pubkey, p(&dir)]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(
        text(&tampered.stderr).contains("SHA-256"),
        "{}",
        text(&tampered.stderr)
    );

    let bad = sign(&["verify", "--pubkey", "nope", p(&dir)]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("bad public key"));
    let usage = sign(&["sign"]);
    assert_eq!(usage.status.code(), Some(2));
}
