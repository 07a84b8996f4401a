//! `sudo make run`'s script, end to end: `scripts/run-local` starts the real `portcullisd` and
//! the app, here in a lab namespace (never on the machine's own network) with the lab's
//! paths, a lab group id and no display, so the app runs in browser mode as the "sudo user"
//! (`nobody` here), with no privilege but the helper's group. The printed link signs a
//! browser in and the page reaches the helper; Ctrl-C (SIGINT to the script) stops the app
//! and the helper, which removes its rules.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failure stops the test with its message"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_lab::{Lab, Signal, lab_bin, require_root};

/// The group let in to the helper: a gid no account has as its own.
const GROUP: u32 = 4243;

/// The pids of `pid`'s children (all threads).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// A line `Key:\tvalue…` of /proc/PID/status.
fn status_field(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

#[test]
fn make_run_starts_the_helper_and_the_app_and_ctrl_c_stops_both() {
    require_root!();
    let lab = Lab::new("run-local");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/run-local");
    let bin = lab_bin("portcullisd");
    let bin_dir = bin.parent().unwrap();
    assert!(
        bin_dir.join("portcullis").is_file(),
        "the app `portcullis` is not built in {}: run `cargo build --workspace --bins`",
        bin_dir.display()
    );
    let dir = lab.dir().join("run-local");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("helper.sock");
    let state = dir.join("state");
    let config = dir.join("portcullisd.toml");
    std::fs::write(&config, format!("[ipc]\ngroup = \"{GROUP}\"\n")).unwrap();

    let mut cmd = lab.client().cmd(
        &script,
        [
            bin_dir.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
            "--ebpf-cgroup".as_ref(),
            lab.cgroup().as_os_str(),
        ],
    );
    // A terminal's Ctrl-C reaches a script whose SIGINT is in its default state; a test run
    // in the background (CI under `nohup … &`) inherits SIGINT ignored, which a shell cannot
    // trap. Start the script as a terminal would.
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: between fork and exec only sigaction is called, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGINT,
                    nix::sys::signal::SigHandler::SigDfl,
                )
                .map(|_| ())
                .map_err(std::io::Error::from)
            });
        }
    }
    cmd.env("PORTCULLIS_SOCKET", &socket)
        .env("PORTCULLIS_GROUP", GROUP.to_string())
        .env("SUDO_USER", "nobody")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("PORTCULLIS_UI");
    let run = lab.client().spawn(cmd);
    run.wait_for_stdout("portcullis: open http://", Duration::from_secs(90));
    let out = run.stdout();
    assert!(out.contains("browser mode (as nobody)"), "{}", run.logs());
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("portcullis: open "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let origin = url.split("/?").next().unwrap().to_owned();

    // The app: a child of the script, as nobody with the helper's group and no capability.
    let app = children(run.pid())
        .into_iter()
        .find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "portcullis")
        })
        .unwrap_or_else(|| panic!("no app process under the script\n{}", run.logs()));
    let helper = children(run.pid())
        .into_iter()
        .find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "portcullisd")
        })
        .unwrap_or_else(|| panic!("no helper process under the script\n{}", run.logs()));
    assert_eq!(
        status_field(app, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["65534"; 4]
    );
    assert!(
        status_field(app, "Groups")
            .split_whitespace()
            .any(|g| g == GROUP.to_string()),
        "groups: {}",
        status_field(app, "Groups")
    );
    assert_eq!(status_field(app, "CapEff"), "0000000000000000");
    assert_eq!(
        status_field(helper, "Uid").split_whitespace().next(),
        Some("0")
    );

    // The link signs a browser in; the page then reaches the helper through the app.
    let jar = dir.join("cookies");
    let curl = |args: &[&str]| {
        let out = lab.client().run("curl", args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let jar_s = jar.to_str().unwrap();
    let signed_in = curl(&["-sS", "-c", jar_s, "-w", "\n%{http_code}", &url]);
    assert!(signed_in.ends_with("200"), "{signed_in}");
    let reply = curl(&[
        "-sS",
        "-b",
        jar_s,
        "-H",
        &format!("Origin: {origin}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"method":"status"}"#,
        &format!("{origin}/api/request"),
    ]);
    let reply: serde_json::Value = serde_json::from_str(&reply)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {reply}\n{}", run.logs()));
    assert_eq!(
        reply["ok"]["data"]["enforcement"]["state"], "enforcing",
        "{reply}"
    );
    let rules = lab.client().run("iptables-save", [] as [&str; 0]);
    assert!(String::from_utf8_lossy(&rules.stdout).contains("PORTCULLIS"));

    // Ctrl-C: both stop, and the helper's rules go with it.
    assert!(run.signal(Signal::SIGINT));
    let status = run
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("run-local did not stop on SIGINT\n{}", run.logs()));
    assert_eq!(status.code(), Some(130), "{}", run.logs());
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(app) || alive(helper)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(app), "the app outlived Ctrl-C");
    assert!(!alive(helper), "the helper outlived Ctrl-C");
    assert!(
        run.stdout().contains("portcullisd stopped"),
        "{}",
        run.logs()
    );
    let rules = lab.client().run("iptables-save", [] as [&str; 0]);
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("PORTCULLIS"),
        "rules left after Ctrl-C"
    );
    assert!(!socket.exists(), "the socket was left behind");
}
