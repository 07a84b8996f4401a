//! The desktop app's benchmark (`pcl-appbench`, tests/bench) still runs: its quick profile
//! end to end (the real app on a private Xvfb display, the real helper in a lab, a few hundred
//! live rows in the Monitor), without the Chromium arm. Only that it completes and prints
//! every table is checked: figures are for `make bench-app`, never asserted in a test.
//!
//! Needs root, Xvfb, dbus-daemon, python3-dbus and python3-gi (scripts/install-deps) and the
//! frontend's build; a missing piece fails with what to run.

use std::process::Command;

use portcullis_lab::{lab_bin, require_root};

#[test]
fn the_desktop_app_benchmark_runs_its_quick_profile() {
    require_root!();
    let out = Command::new(lab_bin("pcl-appbench"))
        .args(["--quick", "--no-chromium"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pcl-appbench --quick failed:\n{stdout}\n{stderr}"
    );
    for table in [
        "cold start to first paint",
        "memory of the process tree",
        "idle CPU of the process tree",
        "Monitor scrolling",
    ] {
        assert!(stdout.contains(table), "no `{table}` table:\n{stdout}");
    }
}
