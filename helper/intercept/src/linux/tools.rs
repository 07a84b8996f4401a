//! Finds and runs the command-line tools this backend drives (`iptables-restore`,
//! `iptables-save`, their IPv6 and legacy siblings), optionally inside a pinned
//! network namespace. It owns process spawning and the error wording for missing tools; it
//! must not interpret what the tools print.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::InterceptError;

/// Where tools are looked for besides `$PATH`: a service's `PATH` may lack the sbin dirs.
const SBIN_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// A tool found on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    /// The name it was found under, for messages.
    pub(crate) name: &'static str,
    /// Its full path.
    pub(crate) path: PathBuf,
}

/// The first of `names` that is installed.
pub(crate) fn find(names: &[&'static str]) -> Option<Tool> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names.iter().find_map(|&name| {
        path_dirs
            .iter()
            .map(PathBuf::as_path)
            .chain(SBIN_DIRS.iter().map(Path::new))
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .map(|path| Tool { name, path })
    })
}

/// The first of `names` that is installed, or the error naming the last of them (the plain
/// name people know) and the Debian package that provides it.
pub(crate) fn require(
    names: &[&'static str],
    package: &'static str,
) -> Result<Tool, InterceptError> {
    find(names).ok_or_else(|| InterceptError::ToolMissing {
        tool: names.last().copied().unwrap_or_default().to_owned(),
        package,
    })
}

/// A handle on one network namespace, so that tools run there whichever thread starts them.
#[derive(Debug)]
pub(crate) struct NetnsPin(File);

impl NetnsPin {
    /// Pins the calling thread's network namespace.
    pub(crate) fn current() -> Result<NetnsPin, InterceptError> {
        File::open("/proc/thread-self/ns/net")
            .map(NetnsPin)
            .map_err(InterceptError::Netns)
    }

    /// Whether the calling thread is in this namespace already (same nsfs inode).
    fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        match (
            self.0.metadata(),
            std::fs::metadata("/proc/thread-self/ns/net"),
        ) {
            (Ok(pinned), Ok(here)) => pinned.dev() == here.dev() && pinned.ino() == here.ino(),
            _ => false,
        }
    }
}

/// Runs `tool args…` to completion, in `netns` if given (else in the caller's), feeding it
/// `stdin`. A non-zero exit is not an error here; see [`run_ok`].
pub(crate) fn run(
    tool: &Tool,
    args: &[&str],
    stdin: Option<&str>,
    netns: Option<&NetnsPin>,
) -> Result<Output, InterceptError> {
    let spawn_err = |source| InterceptError::ToolSpawn {
        tool: tool.name.to_owned(),
        source,
    };
    let mut cmd = Command::new(&tool.path);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Untranslated messages: we match on some of them.
        .env("LC_ALL", "C");
    // Only a thread elsewhere enters the namespace: setns(2) needs CAP_SYS_ADMIN even into
    // one's own, which the service (installer/portcullisd.service) does not grant.
    if let Some(NetnsPin(file)) = netns.filter(|pin| !pin.is_current()) {
        let fd = file.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls setns(2),
        // which is async-signal-safe; `fd` stays open in the parent (and so in the child's
        // copy of the descriptor table) for the whole spawn because `netns` is borrowed.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(text) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // A tool that exits early closes its end; its exit status then says why.
        let _ignored = pipe.write_all(text.as_bytes());
    }
    child.wait_with_output().map_err(spawn_err)
}

/// Like [`run`], but a non-zero exit is [`InterceptError::ToolFailed`]; returns stdout.
pub(crate) fn run_ok(
    tool: &Tool,
    args: &[&str],
    stdin: Option<&str>,
    netns: Option<&NetnsPin>,
) -> Result<String, InterceptError> {
    let out = run(tool, args, stdin, netns)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(tool, args, &out))
    }
}

/// The [`InterceptError::ToolFailed`] for a finished run.
pub(crate) fn failed(tool: &Tool, args: &[&str], out: &Output) -> InterceptError {
    let mut command = tool.name.to_owned();
    for a in args {
        command.push(' ');
        command.push_str(a);
    }
    InterceptError::ToolFailed {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_itself_and_its_package() {
        let err = require(&["pcl-no-such-tool-nft", "pcl-no-such-tool"], "iptables").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`pcl-no-such-tool` is not installed; install the Debian package `iptables`"
        );
    }

    #[test]
    fn tools_are_found_outside_path_too() {
        // `sh` is in /bin or /usr/bin everywhere.
        let sh = find(&["pcl-no-such-tool", "sh"]).unwrap();
        assert_eq!(sh.name, "sh");
        assert!(sh.path.is_absolute());
    }

    #[test]
    fn a_failing_tool_reports_its_command_status_and_stderr() {
        let sh = find(&["sh"]).unwrap();
        let err = run_ok(&sh, &["-c", "echo broken >&2; exit 3"], None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sh -c echo broken >&2; exit 3` failed (exit status: 3): broken"
        );
        let out = run_ok(&sh, &["-c", "cat"], Some("fed"), None).unwrap();
        assert_eq!(out, "fed");
    }

    #[test]
    fn a_tool_runs_in_its_own_namespace_without_entering_it() {
        // Entering needs CAP_SYS_ADMIN; the service has none, so the thread's own namespace
        // must be recognised and the tool started without setns(2).
        let pin = NetnsPin::current().unwrap();
        assert!(pin.is_current());
        let sh = find(&["sh"]).unwrap();
        let out = run(&sh, &["-c", "exit 0"], None, Some(&pin)).unwrap();
        assert!(out.status.success());
        let other = NetnsPin(File::open("/proc/self/ns/mnt").unwrap());
        assert!(
            !other.is_current(),
            "a different nsfs inode is another namespace"
        );
    }
}
