//! Signed data updates, end to end: the real `portcullisd` in a lab namespace checks a real
//! HTTPS server (a test CA, `[updates] trust = { ca_file }`) on demand. A good bundle brings
//! a new list entry that blocks a name at once; then a tampered manifest, a tampered file, a
//! bundle signed by another key, a replayed older bundle, a truncated file and an oversize
//! file are each refused with their reason in the `updates check` answer, and the data in
//! force stays the good bundle's. After a restart the installed bundle is still in force.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure stops the test with its message"
)]

use std::path::Path;
use std::process::Command;

use ed25519_dalek::SigningKey;
use portcullis_intel::bundle::{
    self, FORMAT, FileEntry, MANIFEST, Manifest, SIGNATURE, TrustedKey,
};
use portcullis_lab::dns::{TestPki, require_tool};
use portcullis_lab::{HelperOpts, Lab, require_root};

const RESOLVER: &str = "127.0.0.153";
const PORT: u16 = 8443;
const LIST: &str = "lists/easylist.txt";

/// Writes a bundle of `files` signed by `key` into `dir` (emptied first).
fn publish(dir: &Path, key: &SigningKey, version: u64, files: &[(&str, &[u8])]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (path, contents) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    let m = Manifest {
        format: FORMAT,
        version,
        created: 1_750_000_000,
        key_id: TrustedKey::new(key.verifying_key()).id().to_owned(),
        files: files.iter().map(|(p, c)| FileEntry::of(*p, c)).collect(),
    };
    let bytes = m.to_bytes();
    std::fs::write(dir.join(MANIFEST), &bytes).unwrap();
    std::fs::write(dir.join(SIGNATURE), bundle::sign(&bytes, key)).unwrap();
}

#[test]
fn good_bundles_install_and_bad_ones_are_refused_keeping_the_old_data() {
    require_root!();
    let python = require_tool("python3", "python3");
    let lab = Lab::new("updates");
    let server = lab.server().ipv4();
    let pki = TestPki::new(lab.server(), "updates.test", &[server.into()]);
    let www = tempfile::tempdir().unwrap();
    let site = www.path().join("site");
    let mut https = Command::new(python);
    https.arg("-c").arg(
        "import http.server, ssl, sys\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
         ctx.load_cert_chain(sys.argv[2], sys.argv[3])\n\
         h = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=sys.argv[1], **k)\n\
         s = http.server.ThreadingHTTPServer((sys.argv[4], int(sys.argv[5])), h)\n\
         s.socket = ctx.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
    );
    https
        .arg(&site)
        .arg(&pki.cert)
        .arg(&pki.key)
        .arg(server.to_string())
        .arg(PORT.to_string());
    let _https = lab.server().spawn(https);

    let key = SigningKey::from_bytes(&[42; 32]);
    let other = SigningKey::from_bytes(&[43; 32]);
    let public = TrustedKey::new(key.verifying_key()).to_base64();

    // The shipped data: one list entry.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("lists")).unwrap();
    std::fs::write(data.path().join(LIST), "||shipped.test^\n").unwrap();
    let config = format!(
        "[intel]\ndata_dir = \"{}\"\n[dns]\nenabled = true\n[dns.resolver]\n\
         listen = [\"{RESOLVER}:53\"]\nupstreams = [\"plain://{server}\"]\n\
         [updates]\nurl = \"https://{server}:{PORT}/\"\nkeys = [\"{public}\"]\n\
         interval_hours = 0\nmax_file_mb = 1\ntrust = {{ ca_file = \"{}\" }}\n",
        data.path().display(),
        pki.ca.display()
    );
    let mut helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });
    let blocked = |helper: &portcullis_lab::Helper, name: &str| {
        let answer = helper.ctl_json(["dns", "query", name]).to_string();
        answer.contains("EasyList")
    };
    let check = |helper: &portcullis_lab::Helper| {
        let mut out = helper.ctl(["--json", "updates", "check"]);
        for _ in 0..50 {
            // The server may still be starting.
            if !out.stdout.contains("cannot fetch manifest.json") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            out = helper.ctl(["--json", "updates", "check"]);
        }
        out
    };
    assert!(blocked(&helper, "shipped.test"));
    assert!(!blocked(&helper, "fresh.test"));
    let status = helper.ctl_json(["updates", "status"]);
    assert_eq!(status["installed_version"], 0, "{status}");

    // An older bundle, signed now, replayed later.
    let old = www.path().join("old");
    publish(&old, &key, 1, &[(LIST, b"||shipped.test^\n||old.test^\n")]);

    // Everything blocked by default: the helper's own download still passes.
    helper.ctl_json(["settings", "set", "default_action", "block"]);

    // A good bundle: installed, and its entry blocks at once.
    publish(
        &site,
        &key,
        2,
        &[(LIST, b"||shipped.test^\n||fresh.test^\n")],
    );
    let out = check(&helper);
    assert!(out.success(), "{out}\n{}", helper.logs());
    assert!(out.stdout.contains("\"installed\""), "{out}");
    assert!(blocked(&helper, "fresh.test"));
    // The same bundle again: up to date, not an error.
    let out = check(&helper);
    assert!(out.success() && out.stdout.contains("up_to_date"), "{out}");

    let evil: &[u8] = b"||fresh.test^\n||evil.test^\n";
    let refused = |helper: &portcullis_lab::Helper, case: &str, why: &str| {
        let out = check(helper);
        assert_eq!(out.code(), Some(1), "{case}: {out}");
        assert!(out.stdout.contains("refused"), "{case}: {out}");
        assert!(
            out.stdout.contains(why),
            "{case}: expected {why:?} in {out}"
        );
        // The good bundle's data is still in force, and only it.
        assert!(blocked(helper, "fresh.test"), "{case}");
        assert!(!blocked(helper, "evil.test"), "{case}");
        let status = helper.ctl_json(["updates", "status"]);
        assert_eq!(status["installed_version"], 2, "{case}: {status}");
    };

    // Tampered manifest: one byte of the signed text changed.
    publish(&site, &key, 3, &[(LIST, evil)]);
    let text = std::fs::read_to_string(site.join(MANIFEST)).unwrap();
    std::fs::write(
        site.join(MANIFEST),
        text.replace("\"version\": 3", "\"version\": 4"),
    )
    .unwrap();
    refused(&helper, "tampered manifest", "bad signature");

    // Tampered file: same size, other contents.
    publish(&site, &key, 3, &[(LIST, evil)]);
    std::fs::write(site.join(LIST), b"||fresh.test^\n||evil.tesT^\n").unwrap();
    refused(&helper, "tampered file", "does not match its SHA-256");

    // Signed by a key the helper does not trust.
    publish(&site, &other, 3, &[(LIST, evil)]);
    refused(&helper, "wrong key", "not trusted");

    // A replayed older bundle, validly signed.
    let _ = std::fs::remove_dir_all(&site);
    std::fs::rename(&old, &site).unwrap();
    refused(&helper, "replayed older bundle", "rollback refused");

    // Truncated download: the file is shorter than the manifest says.
    publish(&site, &key, 3, &[(LIST, evil)]);
    std::fs::write(site.join(LIST), &evil[..10]).unwrap();
    refused(&helper, "truncated download", "the manifest says");

    // A file longer than the manifest says is cut off as it arrives.
    publish(&site, &key, 3, &[(LIST, evil)]);
    std::fs::write(
        site.join(LIST),
        [evil, b"||more.test^\n".as_slice()].concat(),
    )
    .unwrap();
    refused(&helper, "overlong file", "longer than");

    // Oversize: more than max_file_mb (1 MiB), refused before any download.
    let mut big = evil.to_vec();
    big.resize((1 << 20) + 1, b'\n');
    publish(&site, &key, 3, &[(LIST, &big)]);
    refused(&helper, "oversize file", "more than the 1048576 allowed");

    // After a restart, the installed bundle (not the shipped data) is in force.
    helper.restart();
    assert!(blocked(&helper, "fresh.test"));
    let status = helper.ctl_json(["updates", "status"]);
    assert_eq!(status["installed_version"], 2, "{status}");
}
