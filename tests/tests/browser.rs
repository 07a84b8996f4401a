//! The UI end to end in a real browser: `portcullis --serve` (browser mode) bridged to the real
//! `portcullisd` in a lab namespace, driven by Playwright (`playwright-core`) in Debian's
//! Chromium. The script `frontend/e2e/browser.e2e.mjs` clicks through the UI; when it needs
//! traffic it prints `STEP <name>` and this test makes the lab app connect, checks what
//! happened, and answers `DONE`. It covers: a wrong token and a foreign Origin are refused, a
//! request round-trips to the helper, a lab app's connection appears in the Monitor, a rule
//! added in the App panel blocks that app's next connection, a prompt's answer takes
//! effect, the History view lists, searches and explains what the helper recorded, and a lab
//! app with a `.desktop` entry (in XDG directories this test gives `portcullis --serve`) shows
//! in the Apps view by its entry's name and icon, while the icon route serves nothing else. Screenshots of every view go to `frontend/test-artifacts/browser/` (or
//! `$PCL_ARTIFACTS`).
//!
//! Browser mode and Chromium run in the machine's own network namespace and talk over its
//! 127.0.0.1 only; the helper, the apps and their traffic stay in the lab.
//!
//! Needs root, node, the frontend's npm packages (`npm install` in frontend/) and its build
//! (`npm run build`); `scripts/run-tests` prepares both. A missing piece fails the test with
//! what to run (never a silent skip).

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failure stops the test with its message"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_lab::app_codes::{OK, REFUSED};
use portcullis_lab::{HelperOpts, Lab, Proto, lab_bin, require_root};

/// The whole browser script may take this long.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

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

/// Fails (never skips) with what to run when a prerequisite is missing.
fn prerequisites() {
    let fe = frontend_dir();
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: run scripts/install-deps"
    );
    assert!(
        fe.join("node_modules/playwright-core/package.json")
            .is_file(),
        "the frontend's npm packages are missing: run `npm install` in {}",
        fe.display()
    );
    assert!(
        fe.join("dist/index.html").is_file(),
        "the frontend is not built: run `npm run build` in {}",
        fe.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "Debian's chromium is not installed: run scripts/install-deps"
    );
}

/// A 16×16 blue PNG, the icon of the lab app with a `.desktop` entry.
const ICON: &[u8] = &[
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 16, 0, 0, 0, 16, 8, 6,
    0, 0, 0, 31, 243, 255, 97, 0, 0, 0, 25, 73, 68, 65, 84, 120, 218, 99, 208, 170, 122, 244, 159,
    18, 204, 48, 106, 192, 168, 1, 163, 6, 12, 23, 3, 0, 5, 67, 133, 31, 5, 93, 185, 206, 0, 0, 0,
    0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// The name the `.desktop` entry gives app C.
const APP_C_NAME: &str = "Lab Scribble";

/// XDG data directories of the test's own with a `.desktop` entry (and hicolor icon) for the
/// lab app at `app`.
fn xdg_dirs(dir: &Path, app: &Path) -> (PathBuf, PathBuf) {
    let home = dir.join("home");
    let share = dir.join("share");
    std::fs::create_dir_all(home.join("applications")).unwrap();
    std::fs::create_dir_all(share.join("applications")).unwrap();
    std::fs::create_dir_all(share.join("icons/hicolor/48x48/apps")).unwrap();
    std::fs::write(
        share.join("applications/org.example.LabScribble.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName={APP_C_NAME}\nName[xx]=Wrong\n\
             Icon=lab-scribble\nExec={} --new-window %F\n",
            app.display()
        ),
    )
    .unwrap();
    std::fs::write(
        share.join("icons/hicolor/48x48/apps/lab-scribble.png"),
        ICON,
    )
    .unwrap();
    (home, share)
}

/// Starts `portcullis --serve` for the helper at `socket` (with `.desktop` entries from
/// `xdg`: data home and data dirs) and returns it with its login URL.
fn serve(socket: &Path, xdg: &(PathBuf, PathBuf)) -> (Owned, String) {
    let mut child = Command::new(lab_bin("portcullis"))
        .arg("--serve")
        .arg("--socket")
        .arg(socket)
        .arg("--web-root")
        .arg(frontend_dir().join("dist"))
        .env("XDG_DATA_HOME", &xdg.0)
        .env("XDG_DATA_DIRS", &xdg.1)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start portcullis --serve: {e}"));
    let stdout = child.stdout.take().unwrap();
    let owned = Owned(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("portcullis: open ") {
                    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
                    return (owned, url.to_owned());
                }
            }
            Err(_) => panic!("portcullis --serve printed no login URL within 15 s"),
        }
    }
}

#[test]
fn the_ui_in_a_real_browser_drives_the_real_helper() {
    require_root!();
    prerequisites();
    let lab = Lab::new("browser");
    let _echo = lab.server().tcp_echo(7);
    lab.server().wait_for_port(7, Proto::Tcp);
    let helper = lab.client().start_helper(HelperOpts::default());
    let server = lab.server().ipv4().to_string();
    let app_a = lab.app("webmail");
    let app_b = lab.app("updater");
    let app_c = lab.app("scribble");
    let xdg_root = tempfile::tempdir().unwrap();
    let xdg = xdg_dirs(xdg_root.path(), &app_c);
    let (_serve, url) = serve(helper.socket(), &xdg);

    let artifacts = std::env::var_os("PCL_ARTIFACTS").map_or_else(
        || frontend_dir().join("test-artifacts/browser"),
        PathBuf::from,
    );
    let mut node = Command::new("node")
        .arg("e2e/browser.e2e.mjs")
        .current_dir(frontend_dir())
        .env("PCL_URL", &url)
        .env("PCL_APP_A", &app_a)
        .env("PCL_APP_B", &app_b)
        .env("PCL_APP_C", &app_c)
        .env("PCL_APP_C_NAME", APP_C_NAME)
        .env("PCL_SERVER", &server)
        .env("PCL_ARTIFACTS", &artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let mut to_node = node.stdin.take().unwrap();
    let from_node = node.stdout.take().unwrap();
    let mut errors = node.stderr.take().unwrap();
    let node = Owned(node);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from_node).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let connect = |app: &Path| {
        lab.client().run_app(
            app,
            ["connect", "tcp", &server, "7", "--timeout-ms", "5000"],
        )
    };
    let mut asking = None;
    let mut transcript = Vec::new();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let passed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break false; // ended (stdout closed) or timed out
        };
        eprintln!("browser: {line}");
        transcript.push(line.clone());
        if line == "PASS" {
            break true;
        }
        let Some(step) = line.strip_prefix("STEP ") else {
            continue;
        };
        let done = match step {
            "connect-a-allowed" => {
                let out = connect(&app_a);
                assert_eq!(out.code(), Some(OK), "default allow: {out}");
                "allowed".to_owned()
            }
            "connect-c-allowed" => {
                let out = connect(&app_c);
                assert_eq!(out.code(), Some(OK), "default allow: {out}");
                "allowed".to_owned()
            }
            "connect-a-blocked" => {
                let out = connect(&app_a);
                assert_eq!(
                    out.code(),
                    Some(REFUSED),
                    "the rule added in the browser blocks: {out}\n{}",
                    helper.logs()
                );
                "refused".to_owned()
            }
            "connect-b-asks" => {
                // It waits on the prompt the browser shows.
                let cmd = lab.client().cmd(
                    &app_b,
                    ["connect", "tcp", &server, "7", "--timeout-ms", "20000"],
                );
                asking = Some(lab.client().spawn(cmd));
                "started".to_owned()
            }
            "check-b-allowed" => {
                let p = asking.take().unwrap();
                let status = p
                    .wait_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|| panic!("app B never finished: {}", p.logs()));
                assert_eq!(
                    status.code(),
                    Some(OK),
                    "allowed by the answer: {}",
                    p.logs()
                );
                let rules = helper.ctl_json(["rules", "list", "--app", app_b.to_str().unwrap()]);
                let want = format!("+ {server} tcp/7");
                assert_eq!(rules[0]["text"], want.as_str(), "{rules}");
                assert_eq!(rules[0]["lifetime"]["kind"], "forever", "{rules}");
                let again = connect(&app_b);
                assert_eq!(again.code(), Some(OK), "the rule decides without asking");
                format!("app B connected; rule {want}")
            }
            other => panic!("unknown step {other}"),
        };
        writeln!(to_node, "DONE {done}").unwrap();
    };
    drop(to_node);
    let mut err = String::new();
    if !passed {
        drop(node);
        let _ = std::io::Read::read_to_string(&mut errors, &mut err);
        panic!(
            "the browser script failed:\n{}\n{err}\nhelper log:\n{}",
            transcript.join("\n"),
            helper.logs()
        );
    }
    for shot in [
        "overview",
        "apps",
        "app-panel",
        "monitor",
        "settings",
        "prompt",
        "history",
    ] {
        let path = artifacts.join(format!("{shot}.png"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "screenshot {} missing or empty",
            path.display()
        );
    }
}
