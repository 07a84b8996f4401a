//! The helper as the package installs it: `tests/packaging/run` installs the built packages in
//! a Debian root made with debootstrap and runs this test with `PCL_PACKAGED_ROOT` set to that
//! root. The installed `portcullisd` and `portcullisctl` then run in a lab namespace (never in
//! this machine's own), the helper with no capability beyond the unit's
//! `CapabilityBoundingSet` (setpriv), reporting to a notification socket the way systemd
//! listens (`NOTIFY_SOCKET`), and must enforce: one app blocked by its rule, another allowed.
//! Without `PCL_PACKAGED_ROOT` (a plain `cargo test`) it has nothing to test and says so;
//! `tests/packaging/run` is what `make test` runs for it, and that never skips under CI.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure stops the test with its message"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_lab::app_codes::{OK, REFUSED};
use portcullis_lab::{HelperOpts, Lab, require_root};

/// The capabilities of the installed unit, as setpriv's `--bounding-set` list.
fn unit_capabilities(root: &Path) -> String {
    let unit = root.join("lib/systemd/system/portcullisd.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let caps: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap_or_else(|| panic!("{} has no CapabilityBoundingSet", unit.display()))
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(!caps.is_empty());
    format!("-all,{}", caps.join(","))
}

/// A wrapper that runs the installed helper with only the unit's capabilities.
fn confined_helper(root: &Path, dir: &Path) -> PathBuf {
    let caps = unit_capabilities(root);
    println!("helper capabilities: {caps}");
    let wrapper = dir.join("portcullisd-confined");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --bounding-set {caps} --inh-caps -all -- {} \"$@\"\n",
            root.join("usr/sbin/portcullisd").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

fn received(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_installed_helper_enforces_with_the_units_capabilities() {
    let Some(root) = std::env::var_os("PCL_PACKAGED_ROOT").map(PathBuf::from) else {
        println!(
            "the_installed_helper_enforces_with_the_units_capabilities: nothing to test without \
             PCL_PACKAGED_ROOT (tests/packaging/run sets it)"
        );
        return;
    };
    require_root!();
    let lab = Lab::new("packaged");
    let daemon = confined_helper(&root, lab.dir());
    let notify_path = lab.dir().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, portcullis_lab::Proto::Tcp);
    let mut helper = lab.client().start_helper(HelperOpts {
        daemon_bin: Some(daemon),
        ctl_bin: Some(root.join("usr/bin/portcullisctl")),
        env: vec![(
            "NOTIFY_SOCKET".to_string(),
            notify_path.to_str().unwrap().to_string(),
        )],
        ..HelperOpts::default()
    });
    assert_eq!(received(&notify), "READY=1");
    let status = helper.ctl_json(["status"]).to_string();
    println!("status: {status}");
    assert!(status.contains("enforcing"), "{status}");
    // eBPF attribution and the fast path load with the unit's capabilities alone.
    assert!(
        status.contains("decisions cached in the kernel"),
        "{status}"
    );

    let (a, b) = (lab.app("browser"), lab.app("updater"));
    let server = lab.server().ipv4().to_string();
    helper.ctl_json(["rules", "add", "--app", b.to_str().unwrap(), "-", &server]);
    let connect = |app: &Path| {
        lab.client().run_app(
            app,
            ["connect", "tcp", &server, "7", "--timeout-ms", "2000"],
        )
    };
    let ok = connect(&a);
    assert_eq!(ok.status.code(), Some(OK), "{ok}");
    let refused = connect(&b);
    assert_eq!(refused.status.code(), Some(REFUSED), "{refused}");
    // The app updates itself: a new file (a new inode, different bytes) at the same path, as
    // a package upgrade installs it. Its rule still holds: apps are known by their path.
    let updated = b.with_extension("new");
    let mut bytes = std::fs::read(&b).unwrap();
    bytes.extend_from_slice(b"\0portcullis-test: a newer build\0");
    std::fs::write(&updated, bytes).unwrap();
    std::fs::set_permissions(&updated, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&updated, &b).unwrap();
    let refused = connect(&b);
    assert_eq!(
        refused.status.code(),
        Some(REFUSED),
        "after the app's update: {refused}"
    );
    let conns = helper.ctl_json(["connections"]).to_string();
    assert!(conns.contains(b.to_str().unwrap()), "{conns}");

    helper.stop();
    assert_eq!(received(&notify), "STOPPING=1");
    println!("{}", helper.logs());
    drop(echo);
}
