//! Processes the lab runs inside its namespaces: long-running ones ([`LabProcess`], owned and
//! reaped by the lab) and one-shot commands with a time limit ([`CmdOutput`]).
//!
//! Output goes to files (per-lab `logs/` for long-running processes, anonymous temporary files
//! for one-shot commands), never to pipes, so a chatty process cannot block and a failing test
//! can print everything. Signals are sent only to children that have not been reaped yet, under
//! the lock that reaps them, so a recycled pid is never hit.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::netns;

/// How long [`LabProcess::terminate`] waits after SIGTERM before it sends SIGKILL.
pub(crate) const TERM_GRACE: Duration = Duration::from_secs(5);
/// Poll interval while waiting for a child.
const POLL: Duration = Duration::from_millis(10);
/// How many times a spawn is retried on ETXTBSY (see [`spawn_retrying`]).
const TXTBSY_RETRIES: u32 = 100;
/// At most this much of each log is printed when a lab is torn down during a panic.
const LOG_TAIL: usize = 8 * 1024;

/// Output of a finished command: exit status and captured text.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// How the command ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

/// Output of a `portcullisctl` run; see [`crate::Helper::ctl`].
pub type CtlOutput = CmdOutput;

impl CmdOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or `None` if a signal ended the command.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Spawns `cmd`, retrying while exec fails with ETXTBSY.
///
/// A freshly copied executable (see `Lab::app`) can be "busy" for a moment: a child forked by a
/// parallel test thread may still hold the copy's write descriptor between fork and exec.
pub(crate) fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < TXTBSY_RETRIES => {
                tries += 1;
                std::thread::sleep(POLL);
            }
            other => return other,
        }
    }
}

/// Describes a command for messages: program and arguments.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn read_all(file: &mut File) -> String {
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        let _ignored = file.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `cmd` to completion with output captured; panics if it cannot start or outlives
/// `timeout` (it is killed first). A non-zero exit is not a panic: see [`CmdOutput::success`].
pub(crate) fn output_with_timeout(mut cmd: Command, timeout: Duration) -> CmdOutput {
    let what = describe(&cmd);
    let mut out =
        tempfile::tempfile().unwrap_or_else(|e| panic!("cannot create a temporary file: {e}"));
    let mut err =
        tempfile::tempfile().unwrap_or_else(|e| panic!("cannot create a temporary file: {e}"));
    let clone = |f: &File| {
        f.try_clone()
            .unwrap_or_else(|e| panic!("cannot dup a file: {e}"))
    };
    cmd.stdin(Stdio::null())
        .stdout(clone(&out))
        .stderr(clone(&err));
    let mut child = spawn_retrying(&mut cmd).unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    drop(cmd); // closes the parent's copies of the output descriptors
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ignored = child.kill();
                let _ignored = child.wait();
                panic!(
                    "`{what}` did not finish within {timeout:?}; killed it\n--- stdout ---\n{}\
                     --- stderr ---\n{}",
                    read_all(&mut out),
                    read_all(&mut err)
                );
            }
            Err(e) => panic!("waiting for `{what}` failed: {e}"),
        }
    };
    CmdOutput {
        status,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
    }
}

/// Shared state of one spawned process: the lab and every handle point at the same entry.
#[derive(Debug)]
pub(crate) struct ProcEntry {
    pid: u32,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
    child: Mutex<Child>,
}

impl ProcEntry {
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exit status if the process has ended (reaping it), `None` while it runs.
    pub(crate) fn try_status(&self) -> Option<ExitStatus> {
        match self.child().try_wait() {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "portcullis-lab: waiting for {} ({}): {e}",
                    self.pid, self.label
                );
                None
            }
        }
    }

    /// Sends `sig` unless the process has already been reaped. Returns whether it was sent.
    pub(crate) fn signal(&self, sig: Signal) -> bool {
        let mut child = self.child();
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        // Not reaped yet and we hold the lock that reaps it: the pid cannot have been reused.
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
    }

    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps the process. `None` only if even
    /// SIGKILL did not end it within a few seconds.
    pub(crate) fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        if let Some(s) = self.wait_timeout(grace) {
            return Some(s);
        }
        self.kill()
    }

    pub(crate) fn kill(&self) -> Option<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.wait_timeout(Duration::from_secs(5))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn read(path: &Path) -> String {
        std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn logs(&self) -> String {
        format!(
            "=== {} (pid {}) ===\n--- stdout ({}) ---\n{}--- stderr ({}) ---\n{}",
            self.label,
            self.pid,
            self.stdout.display(),
            Self::read(&self.stdout),
            self.stderr.display(),
            Self::read(&self.stderr)
        )
    }

    /// The last [`LOG_TAIL`] bytes of each stream, for teardown reports.
    pub(crate) fn log_tail(&self) -> String {
        let tail = |s: String| -> String {
            let cut = s.len().saturating_sub(LOG_TAIL);
            let start = (cut..=s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s.get(start..).unwrap_or_default().to_owned()
        };
        format!(
            "=== {} (pid {}) ===\n--- stdout (tail) ---\n{}--- stderr (tail) ---\n{}",
            self.label,
            self.pid,
            tail(Self::read(&self.stdout)),
            tail(Self::read(&self.stderr))
        )
    }
}

/// Makes the child append its own pid (`PID\n`) to `registry` between fork and exec, so that a
/// run that dies right after forking still leaves a record for the next sweep.
fn register_in_child(cmd: &mut Command, registry: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(registry)?;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // `write_own_pid`, which is async-signal-safe (see there); the `File` it holds keeps the
    // descriptor open (O_APPEND, close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            write_own_pid(&file);
            Ok(())
        });
    }
    Ok(())
}

/// Writes `PID\n` to `file` using only getpid(2) and write(2) (async-signal-safe) and a stack
/// buffer: no allocation, no locks, as required between fork and exec.
fn write_own_pid(file: &File) {
    let mut buf = [0_u8; 24];
    let mut pos = buf.len() - 1;
    if let Some(b) = buf.get_mut(pos) {
        *b = b'\n';
    }
    let mut pid = std::process::id();
    while pos > 0 {
        pos -= 1;
        if let Some(b) = buf.get_mut(pos) {
            *b = b'0' + (pid % 10) as u8;
        }
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    let line = buf.get(pos..).unwrap_or_default();
    // SAFETY: `line` is valid for reads of `line.len()` bytes and `file` keeps the fd open.
    let _ignored = unsafe { libc::write(file.as_raw_fd(), line.as_ptr().cast(), line.len()) };
}

/// Spawns `cmd` (already set up to enter its namespace) with output to `<log_dir>/<seq>-<label>`
/// and records it in `registry` so a later sweep can kill it if this run dies: the child writes
/// `PID` before exec, the parent then `PID STARTTIME`.
pub(crate) fn spawn_logged(
    mut cmd: Command,
    log_dir: &Path,
    seq: u32,
    registry: &Path,
) -> Arc<ProcEntry> {
    let what = describe(&cmd);
    let program = Path::new(cmd.get_program()).file_name().map_or_else(
        || "process".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let label: String = program
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stdout = log_dir.join(format!("{seq:03}-{label}.out"));
    let stderr = log_dir.join(format!("{seq:03}-{label}.err"));
    let create =
        |p: &Path| File::create(p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
    cmd.stdin(Stdio::null())
        .stdout(create(&stdout))
        .stderr(create(&stderr));
    register_in_child(&mut cmd, registry)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", registry.display()));
    let child = spawn_retrying(&mut cmd).unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"));
    let pid = child.id();
    if let Some(st) = netns::start_time(pid) {
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(registry)
            .and_then(|mut f| writeln!(f, "{pid} {st}"));
        if let Err(e) = appended {
            eprintln!(
                "portcullis-lab: cannot record pid {pid} in {}: {e}",
                registry.display()
            );
        }
    }
    Arc::new(ProcEntry {
        pid,
        label: format!("{label}: {what}"),
        stdout,
        stderr,
        child: Mutex::new(child),
    })
}

/// A process the lab started inside one of its namespaces.
///
/// The lab owns the process: dropping this handle does not stop it, dropping the [`crate::Lab`]
/// does (SIGTERM, then SIGKILL). Clones are handles to the same process.
#[derive(Debug, Clone)]
pub struct LabProcess {
    pub(crate) entry: Arc<ProcEntry>,
}

impl LabProcess {
    /// The process id (the program's own: no wrapper process sits in between).
    pub fn pid(&self) -> u32 {
        self.entry.pid()
    }

    /// What was started, for messages.
    pub fn label(&self) -> &str {
        self.entry.label()
    }

    /// Whether the process still runs (it is reaped if it has ended).
    pub fn is_running(&self) -> bool {
        self.entry.try_status().is_none()
    }

    /// Exit status if it has ended, without waiting.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.entry.try_status()
    }

    /// Sends `sig` if the process has not been reaped yet; returns whether it was sent.
    pub fn signal(&self, sig: Signal) -> bool {
        self.entry.signal(sig)
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        self.entry.wait_timeout(timeout)
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL. Panics (with the logs) if it still runs.
    pub fn terminate(&self) -> ExitStatus {
        self.entry
            .terminate(TERM_GRACE)
            .unwrap_or_else(|| panic!("{} survived SIGKILL\n{}", self.label(), self.logs()))
    }

    /// SIGKILL and reap. Panics (with the logs) if it still runs after 5 s.
    pub fn kill(&self) -> ExitStatus {
        self.entry
            .kill()
            .unwrap_or_else(|| panic!("{} survived SIGKILL\n{}", self.label(), self.logs()))
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        ProcEntry::read(&self.entry.stdout)
    }

    /// Waits until stdout contains `needle` (e.g. lab-app's `ready` line); panics with the
    /// process's logs after `timeout`.
    pub fn wait_for_stdout(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stdout().contains(needle) {
            if Instant::now() >= deadline {
                panic!(
                    "{} never printed {needle:?} within {timeout:?}: {}",
                    self.label(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        ProcEntry::read(&self.entry.stderr)
    }

    /// Label, pid, stdout and stderr, ready to print in a failure message.
    pub fn logs(&self) -> String {
        self.entry.logs()
    }
}
