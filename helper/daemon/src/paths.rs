//! Every path the helper uses comes from here, so that tests and packagers can move them all
//! with three options (`--config`, `--state-dir`, `--socket`) and nothing else hard-codes one.

use std::path::{Path, PathBuf};

/// The configuration file read when `--config` is not given (it may be absent).
pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullisd.toml";
/// Where settings, profiles and rules live when neither `--state-dir` nor the config says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/portcullis";
/// The IPC socket when neither `--socket` nor the config says.
pub const DEFAULT_SOCKET: &str = "/run/portcullis/helper.sock";
/// The group whose members may talk to the helper.
pub const DEFAULT_GROUP: &str = "portcullis";

/// The paths of one running helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Directory of the settings database.
    pub state_dir: PathBuf,
    /// The IPC socket.
    pub socket: PathBuf,
}

impl Paths {
    /// The settings database: profiles, settings and rules.
    pub fn settings_db(&self) -> PathBuf {
        self.state_dir.join("settings.db")
    }

    /// The network history database (expendable: a corrupt one is moved aside).
    pub fn history_db(&self) -> PathBuf {
        self.state_dir.join("history.db")
    }
}

/// Makes `path` absolute against the current directory, so that logs and errors name the
/// file unambiguously and a later `chdir` cannot change what it means.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
