//! The systemd unit the package installs (`installer/portcullisd.service`): systemd's own
//! checker accepts it, and its sandbox stays as tight as the helper's capabilities allow
//! (`systemd-analyze security`, printed in full, must not rate it above `MAX_EXPOSURE`).
//! The unit is checked from a copy whose `/usr/sbin/portcullisd` is the built binary, so that
//! `verify` finds an executable without anything installed. Needs `systemd-analyze` (Debian's
//! `systemd` package), not a running systemd.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure stops the test with its message"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_lab::lab_bin;

/// The highest exposure `systemd-analyze security` may give the unit (it rates it 3.0 now;
/// loosening the sandbox must be a decision, not an accident).
const MAX_EXPOSURE: f64 = 3.0;

fn unit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../installer/portcullisd.service")
}

/// Whether `systemd-analyze` is here; under CI its absence is a failure, not a skip.
fn have_systemd_analyze(test: &str) -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "systemd-analyze is missing (apt install systemd)"
        );
        println!("SKIPPED {test}: systemd-analyze is not installed");
    }
    ok
}

/// A copy of the unit, in `dir`, that runs the built helper instead of the installed one.
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit()).unwrap();
    assert!(
        text.contains("ExecStart=/usr/sbin/portcullisd run"),
        "{text}"
    );
    let daemon = lab_bin("portcullisd");
    let copy = dir.join("portcullisd.service");
    std::fs::write(
        &copy,
        text.replace("/usr/sbin/portcullisd", daemon.to_str().unwrap()),
    )
    .unwrap();
    copy
}

#[test]
fn systemd_accepts_the_unit() {
    if !have_systemd_analyze("systemd_accepts_the_unit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = unit_copy(dir.path());
    // --man=no: the man pages the unit names come with the package, not with the source tree.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns: {stderr}"
    );
}

#[test]
fn the_unit_exposes_no_more_than_the_helper_needs() {
    if !have_systemd_analyze("the_unit_exposes_no_more_than_the_helper_needs") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure in: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    println!("portcullisd.service exposure: {exposure:.1} (at most {MAX_EXPOSURE:.1})");
    assert!(
        exposure <= MAX_EXPOSURE,
        "the unit's exposure rose to {exposure} (at most {MAX_EXPOSURE}): {line}"
    );
}

#[test]
fn sysusers_and_tmpfiles_entries_parse() {
    if !have_systemd_analyze("sysusers_and_tmpfiles_entries_parse") {
        return;
    }
    let installer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../installer");
    // A throwaway root: --root keeps both tools away from this machine's users and files.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(installer.join("portcullis.sysusers.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-sysusers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("portcullis:x:")),
        "{group}"
    );
    let out = Command::new("systemd-tmpfiles")
        .args(["--create", "--dry-run"])
        .arg(format!("--root={}", root.path().display()))
        .arg(installer.join("portcullis.tmpfiles.conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("--dry-run") {
        // systemd 252 has no --dry-run: create in the throwaway root instead.
        let out = Command::new("systemd-tmpfiles")
            .arg("--create")
            .arg(format!("--root={}", root.path().display()))
            .arg(installer.join("portcullis.tmpfiles.conf"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-tmpfiles: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &str| {
            std::fs::metadata(root.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("var/lib/portcullis"), 0o700);
        assert_eq!(mode("run/portcullis"), 0o755);
    } else {
        assert!(out.status.success(), "systemd-tmpfiles: {stderr}");
    }
}
