//! The desktop app end to end: the real `portcullis` binary (Tauri) on a private Xvfb display
//! and session bus, connected to the real `portcullisd` in a lab namespace. It checks that the
//! main window opens and connects to the helper, that a connection waiting for an answer opens
//! the prompt window (titled with how many wait), and that answering it there with the
//! keyboard lets the connection through and closes the prompt window. Windows are found by
//! title with `xdotool`; screenshots of the whole display (`import -window root`) go to
//! `frontend/test-artifacts/desktop/` (or `$PCL_ARTIFACTS`) and are checked to hold a drawn
//! page, not a blank one. A second test starts the app with no helper at all: its window
//! says so (screenshot), and the app makes its tray icon but knows that no tray host runs on
//! the bare display (so closing its window would quit it rather than hide it).
//!
//! Needs root, Xvfb, dbus-daemon, xdotool, ImageMagick (scripts/install-deps installs them) and
//! the frontend's build (`npm run build`); a missing piece fails with what to run.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failure stops the test with its message"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_lab::app_codes::OK;
use portcullis_lab::{HelperOpts, Lab, Proto, lab_bin, require_root};

/// A child process of this test, killed (by its own pid) when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn frontend_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails (never skips) with what to run when a prerequisite is missing.
fn prerequisites() {
    for tool in ["Xvfb", "dbus-daemon", "xdotool", "import", "identify"] {
        assert!(
            have(tool),
            "{tool} is not installed: run scripts/install-deps"
        );
    }
    assert!(
        frontend_dir().join("dist/index.html").is_file(),
        "the frontend is not built: run `npm run build` in {}",
        frontend_dir().display()
    );
}

/// Starts a child and returns it with the first line it prints (a display number, a bus
/// address).
fn start_with_first_line(cmd: &mut Command, what: &str) -> (Owned, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let owned = Owned(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {} // keep the pipe open and drained
    });
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("{what} did not start within 15 s"));
    (owned, line.trim().to_owned())
}

/// The visible windows whose title matches `pattern` (a regular expression).
fn windows(display: &str, pattern: &str) -> Vec<String> {
    let out = Command::new("xdotool")
        .args(["search", "--onlyvisible", "--name", pattern])
        .env("DISPLAY", display)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Screenshots the whole display to `path` and checks that something was drawn: a blank or
/// half-painted window has only a handful of colours.
fn screenshot(display: &str, path: &Path) -> u64 {
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(path)
        .env("DISPLAY", display)
        .status()
        .unwrap();
    assert!(status.success(), "import failed for {}", path.display());
    let out = Command::new("identify")
        .args(["-format", "%k"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A display and a session bus of the test's own: (Xvfb, dbus-daemon, `DISPLAY`, bus address).
fn display_and_bus() -> (Owned, Owned, String, String) {
    let (xvfb, number) = start_with_first_line(
        Command::new("Xvfb").args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1440x900x24",
            "-nolisten",
            "tcp",
        ]),
        "Xvfb",
    );
    let (bus, address) = start_with_first_line(
        Command::new("dbus-daemon").args(["--session", "--nofork", "--print-address=1"]),
        "dbus-daemon",
    );
    (xvfb, bus, format!(":{number}"), address)
}

/// Starts the desktop app for the helper at `socket`, its output to `log`.
fn start_app(socket: &Path, display: &str, bus: &str, log: &Path) -> Owned {
    let log = std::fs::File::create(log).unwrap();
    Owned(
        Command::new(lab_bin("portcullis"))
            .arg("--socket")
            .arg(socket)
            .arg("--web-root")
            .arg(frontend_dir().join("dist"))
            .env("DISPLAY", display)
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .env_remove("WAYLAND_DISPLAY")
            // No accessibility bus: it would be started on this test's bus and outlive it.
            .env("NO_AT_BRIDGE", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start portcullis: {e}")),
    )
}

#[test]
fn the_desktop_app_says_when_the_helper_is_not_running() {
    require_root!(); // not for itself: it goes with the other UI tests
    prerequisites();
    let artifacts = artifacts();
    let (_xvfb, _bus, display, bus) = display_and_bus();
    let dir = tempfile::tempdir().unwrap();
    let log_path = artifacts.join("portcullis-no-helper.log");
    let _app = start_app(&dir.path().join("helper.sock"), &display, &bus, &log_path);
    wait_for("the main window", Duration::from_secs(30), || {
        !windows(&display, "^Portcullis$").is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let colours = screenshot(&display, &artifacts.join("helper-not-running.png"));
    assert!(
        colours > 64,
        "the main window looks blank ({colours} colours)"
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("no tray host") && !log.contains("no tray:"),
        "the tray icon is made, and the app knows nothing shows it here:\n{log}"
    );
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("PCL_ARTIFACTS").map_or_else(
        || frontend_dir().join("test-artifacts/desktop"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_desktop_app_opens_its_window_and_a_prompt_window_for_the_real_helper() {
    require_root!();
    prerequisites();
    let artifacts = artifacts();

    let lab = Lab::new("desktop");
    let _echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    helper.ctl_json(["settings", "set", "default_action", "ask"]);
    let server = lab.server().ipv4().to_string();
    let app = lab.app("chatty");

    let (_xvfb, _bus, display, bus) = display_and_bus();
    let clients_before = helper.ctl_json(["status"])["clients"].as_u64().unwrap();
    let log_path = artifacts.join("portcullis.log");
    let started = Instant::now();
    let _app = start_app(helper.socket(), &display, &bus, &log_path);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let shown = wait_for("the main window", Duration::from_secs(30), || {
        !windows(&display, "^Portcullis$").is_empty()
    });
    eprintln!("desktop: main window mapped {shown:?} after start");
    // The app's event stream (which watches prompts) reaches the helper.
    wait_for(
        "the app's connection to the helper",
        Duration::from_secs(20),
        || helper.ctl_json(["status"])["clients"].as_u64().unwrap() > clients_before,
    );
    eprintln!(
        "desktop: connected to the helper {:?} after start",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3)); // the page loads and paints
    let colours = screenshot(&display, &artifacts.join("main.png"));
    assert!(
        colours > 64,
        "the main window looks blank ({colours} colours)\n{}",
        logs()
    );

    // A connection that asks: the prompt window opens, titled with how many wait.
    let cmd = lab.client().cmd(
        &app,
        ["connect", "tcp", &server, "7", "--timeout-ms", "30000"],
    );
    let asking = lab.client().spawn(cmd);
    wait_for("the prompt window", Duration::from_secs(20), || {
        !windows(&display, "^Portcullis: 1 connection waiting$").is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let colours = screenshot(&display, &artifacts.join("prompt.png"));
    assert!(colours > 64, "the prompt window looks blank\n{}", logs());

    // Answer it in the prompt window with the keyboard (A: allow, once by default), after a
    // click on its text gives it the focus it did not take by itself.
    let prompt = windows(&display, "^Portcullis: 1 connection waiting$");
    let id = prompt.first().unwrap();
    let status = Command::new("xdotool")
        .args([
            "mousemove",
            "--window",
            id,
            "200",
            "150",
            "click",
            "1",
            "sleep",
            "0.3",
            "key",
            "a",
        ])
        .env("DISPLAY", &display)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "xdotool could not type into the prompt window"
    );
    let done = asking
        .wait_timeout(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the app never finished: {}\n{}", asking.logs(), logs()));
    assert_eq!(
        done.code(),
        Some(OK),
        "allowed in the prompt window: {}",
        asking.logs()
    );
    wait_for(
        "the prompt window to close",
        Duration::from_secs(10),
        || windows(&display, "connection.* waiting").is_empty(),
    );
    std::thread::sleep(Duration::from_millis(1500)); // the main window drops its copy too
    let colours = screenshot(&display, &artifacts.join("after-answer.png"));
    assert!(colours > 64, "the main window looks blank after the answer");
    assert!(
        !windows(&display, "^Portcullis$").is_empty(),
        "the main window is still there"
    );
}
