//! Driving the real helper in a lab: start `portcullisd` inside a namespace, wait until its
//! socket answers, run `portcullisctl` against it, stop, kill and restart it with its state kept.
//!
//! Command lines (the contract with `helper/daemon` and `helper/ctl`):
//!
//! ```text
//! portcullisd run --state-dir <lab>/helperK/state --socket <lab>/helperK/helper.sock [--config F] [--ebpf-cgroup <lab cgroup>] [ARGS…]
//! portcullisctl --socket <lab>/helperK/helper.sock [--json] ARGS…
//! ```
//!
//! `--ebpf-cgroup <lab cgroup>` ([`crate::Lab::cgroup`]) is always passed unless `ARGS` already
//! hold `--ebpf-cgroup` or `--no-ebpf`: the helper's eBPF programs go to the lab's own cgroup,
//! never the root cgroup. Both binaries run inside the lab's cgroup, as everything the lab starts.
//!
//! The lab creates `helperK/` (mode 0755) but not `state/`: creating its state directory on first
//! start is the daemon's job, and part of what the tests exercise.
//! The socket sits beside the state directory, not in it, so that the daemon may lock its state
//! directory down while peers of other users can still reach the socket (and be refused).
//! "Ready" means: the socket accepts a connection. The probe connects and closes without a word,
//! which the daemon must tolerate. This module never removes the socket or state itself: a
//! restart after a kill must cope with a stale socket, and that is part of what tests check.

use std::ffi::OsStr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::bins::lab_bin;
use crate::lab::{Ns, make_dir};
use crate::process::{self, CtlOutput, LabProcess};

/// Time limit for one `portcullisctl` run.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Helper::stop`] waits after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest Unix socket path the kernel accepts (`sun_path` minus the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How to start the helper; `HelperOpts::default()` starts the real binaries without a config.
#[derive(Debug, Clone)]
pub struct HelperOpts {
    /// Passed as `--config FILE`.
    pub config: Option<PathBuf>,
    /// Written to `<helper dir>/config.toml` and passed as `--config` (wins over `config`).
    pub config_toml: Option<String>,
    /// Extra arguments after the standard ones. `--ebpf-cgroup <lab cgroup>` is added unless
    /// these hold `--ebpf-cgroup` (another group, e.g. one the test made below the lab's) or
    /// `--no-ebpf`.
    pub args: Vec<String>,
    /// Extra environment variables for the daemon (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Daemon binary; default: `lab_bin("portcullisd")`.
    pub daemon_bin: Option<PathBuf>,
    /// Control binary; default: `lab_bin("portcullisctl")`.
    pub ctl_bin: Option<PathBuf>,
    /// How long to wait for the socket to answer (default 10 s).
    pub ready_timeout: Duration,
}

impl Default for HelperOpts {
    fn default() -> Self {
        HelperOpts {
            config: None,
            config_toml: None,
            args: Vec::new(),
            env: Vec::new(),
            daemon_bin: None,
            ctl_bin: None,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// A helper daemon running in a lab namespace, with its own state directory and socket.
///
/// The lab owns the process: dropping the `Helper` leaves it running until the lab is dropped.
#[derive(Debug)]
pub struct Helper {
    ns: Ns,
    dir: PathBuf,
    state_dir: PathBuf,
    socket: PathBuf,
    config: Option<PathBuf>,
    daemon_bin: PathBuf,
    ctl_bin: PathBuf,
    opts: HelperOpts,
    runs: Vec<LabProcess>,
}

impl Ns {
    /// Starts `portcullisd` in this namespace (see [`Helper`]) and waits until its socket
    /// answers; panics with the daemon's log if it exits or does not answer in time.
    pub fn start_helper(&self, opts: HelperOpts) -> Helper {
        // create_dir claims a number atomically, also against helpers started in parallel.
        let dir = (1..)
            .map(|k| self.lab_dir().join(format!("helper{k}")))
            .find(|d| match std::fs::create_dir(d) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => panic!("cannot create {}: {e}", d.display()),
            })
            .unwrap_or_else(|| panic!("no free helper directory"));
        make_dir(&dir); // mode 0755 whatever the umask
        let socket = dir.join("helper.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            panic!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes; set PCL_LAB_DIR to a \
                 shorter directory",
                socket.display()
            );
        }
        let config = match (&opts.config_toml, &opts.config) {
            (Some(text), _) => {
                let path = dir.join("config.toml");
                std::fs::write(&path, text)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                Some(path)
            }
            (None, path) => path.clone(),
        };
        let mut helper = Helper {
            ns: self.clone(),
            state_dir: dir.join("state"),
            socket,
            config,
            daemon_bin: opts
                .daemon_bin
                .clone()
                .unwrap_or_else(|| lab_bin("portcullisd")),
            ctl_bin: opts
                .ctl_bin
                .clone()
                .unwrap_or_else(|| lab_bin("portcullisctl")),
            dir,
            opts,
            runs: Vec::new(),
        };
        helper.start();
        helper
    }
}

/// Whether a daemon argument already says where eBPF goes (or that it is off).
fn chooses_ebpf(arg: &str) -> bool {
    arg == "--no-ebpf" || arg == "--ebpf-cgroup" || arg.starts_with("--ebpf-cgroup=")
}

impl Helper {
    fn start(&mut self) {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("run"),
            OsStr::new("--state-dir"),
            self.state_dir.as_os_str(),
            OsStr::new("--socket"),
            self.socket.as_os_str(),
        ];
        if let Some(config) = &self.config {
            args.push(OsStr::new("--config"));
            args.push(config.as_os_str());
        }
        if !self.opts.args.iter().any(|a| chooses_ebpf(a)) {
            args.push(OsStr::new("--ebpf-cgroup"));
            args.push(self.ns.cgroup().as_os_str());
        }
        args.extend(self.opts.args.iter().map(OsStr::new));
        let mut cmd = self.ns.cmd(&self.daemon_bin, args);
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        let run = self.ns.spawn(cmd);
        self.runs.push(run.clone());
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            if let Some(status) = run.try_status() {
                panic!(
                    "{} exited ({status}) before its socket {} answered\n{}",
                    self.daemon_bin.display(),
                    self.socket.display(),
                    self.logs()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not answer on {} within {:?}\n{}",
                    self.daemon_bin.display(),
                    self.socket.display(),
                    self.opts.ready_timeout,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The current (or last) daemon process.
    pub fn process(&self) -> Option<&LabProcess> {
        self.runs.last()
    }

    /// Whether the daemon currently runs.
    pub fn is_running(&self) -> bool {
        self.process().is_some_and(LabProcess::is_running)
    }

    /// The daemon's pid (of the current or last run).
    pub fn pid(&self) -> Option<u32> {
        self.process().map(LabProcess::pid)
    }

    /// Runs `portcullisctl --socket <sock> ARGS…` in the helper's namespace (at most 30 s).
    pub fn ctl<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> CtlOutput {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--socket"), self.socket.as_os_str()];
        let args: Vec<S> = args.into_iter().collect();
        all.extend(args.iter().map(AsRef::as_ref));
        process::output_with_timeout(self.ns.cmd(&self.ctl_bin, all), CTL_TIMEOUT)
    }

    /// Runs `portcullisctl --socket <sock> --json ARGS…`, asserts it succeeded and returns the
    /// parsed JSON it printed; panics with its output (and the daemon's log) otherwise.
    pub fn ctl_json<S: AsRef<OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
    ) -> serde_json::Value {
        let args: Vec<S> = args.into_iter().collect();
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let mut all: Vec<&OsStr> = vec![OsStr::new("--json")];
        all.extend(args.iter().map(AsRef::as_ref));
        let out = self.ctl(all);
        if !out.success() {
            panic!(
                "portcullisctl --json {} failed: {out}\n{}",
                shown.join(" "),
                self.logs()
            );
        }
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "portcullisctl --json {} printed invalid JSON ({e}): {out}",
                shown.join(" ")
            )
        })
    }

    /// Stops the daemon with SIGTERM and asserts that it exits with status 0 within 10 s.
    pub fn stop(&mut self) {
        let Some(run) = self.runs.last().cloned() else {
            panic!("helper was never started");
        };
        if !run.signal(nix::sys::signal::Signal::SIGTERM) {
            panic!(
                "helper is not running (ended with {:?})\n{}",
                run.try_status(),
                self.logs()
            );
        }
        let Some(status) = run.wait_timeout(STOP_TIMEOUT) else {
            run.kill();
            panic!(
                "helper did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                self.logs()
            );
        };
        if status.code() != Some(0) {
            panic!(
                "helper exited with {status} after SIGTERM, expected 0\n{}",
                self.logs()
            );
        }
    }

    /// Kills the daemon with SIGKILL (no cleanup on its side) and returns its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        let Some(run) = self.runs.last() else {
            panic!("helper was never started");
        };
        run.kill()
    }

    /// Stops the daemon if it runs (as [`Helper::stop`]), then starts it again with the same
    /// options, state directory and socket path, and waits until it answers.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        }
        self.start();
    }

    /// The daemon's state directory (kept across restarts; removed with the lab).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The daemon's socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory holding state, socket and generated config.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Logs of every run of the daemon so far, oldest first.
    pub fn logs(&self) -> String {
        let runs: Vec<String> = self.runs.iter().map(LabProcess::logs).collect();
        runs.join("\n")
    }
}
