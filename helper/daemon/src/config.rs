//! The helper's configuration file (TOML): where things live and who may connect. Parsing is
//! pure (`Config::parse`); reading the file is separate (`Config::load`). Unknown keys are
//! errors, so a typo never silently falls back to a default. User settings (default action,
//! rules, …) are not here: they live in the settings database and change over IPC.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration file's contents. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the settings database.
    pub state_dir: Option<PathBuf>,
    /// IPC settings.
    #[serde(default)]
    pub ipc: IpcConfig,
    /// Packet interception.
    #[serde(default)]
    pub intercept: InterceptSection,
    /// Process attribution.
    #[serde(default)]
    pub attribution: AttributionSection,
    /// The DNS resolver.
    #[serde(default)]
    pub dns: crate::dns::DnsSection,
    /// The network history.
    #[serde(default)]
    pub history: crate::history::HistorySection,
    /// Intelligence data: the shipped geo-IP, ASN and filter lists, and local list files.
    #[serde(default)]
    pub intel: IntelSection,
    /// Signed data updates.
    #[serde(default)]
    pub updates: crate::updates::UpdatesSection,
    /// What a new settings database starts with.
    #[serde(default)]
    pub first_start: FirstStartSection,
}

/// The `[first_start]` table: what the helper sets when it creates its settings database (the
/// first start after installing), and never again; later the user's settings rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirstStartSection {
    /// Executables (absolute paths) whose apps keep accepting inbound connections, for those
    /// that exist: by default the SSH server, so that installing Portcullis on a machine its
    /// admin reaches over SSH does not lock the admin out. `portcullisctl settings set --app
    /// /usr/sbin/sshd block_inbound true` takes it back.
    pub allow_inbound: Vec<PathBuf>,
}

/// Most executables `[first_start] allow_inbound` may name.
const MAX_FIRST_START_APPS: usize = 64;

impl Default for FirstStartSection {
    fn default() -> Self {
        Self {
            allow_inbound: vec![PathBuf::from("/usr/sbin/sshd")],
        }
    }
}

impl FirstStartSection {
    fn validate(&self) -> Result<(), String> {
        if self.allow_inbound.len() > MAX_FIRST_START_APPS {
            return Err(format!(
                "[first_start] allow_inbound names {} executables; at most {MAX_FIRST_START_APPS}",
                self.allow_inbound.len()
            ));
        }
        for path in &self.allow_inbound {
            let text = path.to_str().unwrap_or("");
            if !path.is_absolute() || text.is_empty() || text.contains('\0') {
                return Err(format!(
                    "[first_start] allow_inbound: {} is not an absolute path of an executable",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

/// The `[intel]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntelSection {
    /// Where the shipped data lives, laid out as `scripts/fetch-intel-data` installs it
    /// (`geo/dbip-country.mmdb`, `geo/asn-ipv4.csv`, …). Default `/usr/share/portcullis/intel`.
    /// Missing data is logged and leaves country and ASN unknown; it never stops the helper.
    pub data_dir: PathBuf,
    /// Extra filter list files on this machine (`[[intel.lists]]`: `id`, optional `name`,
    /// `path`, `category`, `format`), in force like the shipped lists for the apps that use
    /// their category. See [`crate::lists::LocalList`].
    pub lists: Vec<crate::lists::LocalList>,
}

impl Default for IntelSection {
    fn default() -> Self {
        IntelSection {
            data_dir: PathBuf::from("/usr/share/portcullis/intel"),
            lists: Vec::new(),
        }
    }
}

/// The `[attribution]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionSection {
    /// Record sockets with eBPF programs attached to a cgroup (default true): processes that
    /// exit right after connecting are still attributed, and lookups are cheaper. Without it
    /// (or if attaching fails) the helper looks sockets up with sock_diag and /proc only.
    pub ebpf: bool,
    /// The cgroup2 directory to attach to; default: the cgroup2 root (every process).
    pub ebpf_cgroup: Option<std::path::PathBuf>,
}

impl Default for AttributionSection {
    fn default() -> Self {
        AttributionSection {
            ebpf: true,
            ebpf_cgroup: None,
        }
    }
}

/// The `[intercept]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptSection {
    /// Whether the helper intercepts and decides connections (default true). Without it the
    /// helper only stores and serves policy; `status` says so.
    pub enabled: bool,
    /// The NFQUEUE number (default 4200).
    pub queue_num: u16,
    /// The mark bits Portcullis owns (default 0x9000_0000); at least two bits.
    pub mark_mask: u32,
    /// Whether the kernel repeats cached decisions at `connect()` (default true; needs eBPF):
    /// an app's later TCP connections to a destination already decided skip the packet queue.
    pub fast_path: bool,
}

impl Default for InterceptSection {
    fn default() -> Self {
        InterceptSection {
            enabled: true,
            queue_num: 4200,
            mark_mask: 0x9000_0000,
            fast_path: true,
        }
    }
}

/// The `[ipc]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpcConfig {
    /// Socket path.
    pub socket: Option<PathBuf>,
    /// Group (name or numeric gid) whose members may connect besides root.
    pub group: Option<String>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("configuration file {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
}

impl Config {
    /// Parses configuration text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config
            .first_start
            .validate()
            .map_err(|message| ConfigError::Invalid {
                path: origin.to_path_buf(),
                message,
            })?;
        crate::lists::validate(&config.intel.lists).map_err(|message| ConfigError::Invalid {
            path: origin.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Reads and parses `path`. A missing file is an error only when `required` (the user
    /// named it with `--config`); the default file may be absent.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let c = Config::parse(
            "state_dir = \"/tmp/s\"\n[ipc]\nsocket = \"/tmp/s.sock\"\ngroup = \"wheel\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.state_dir.as_deref(), Some(Path::new("/tmp/s")));
        assert_eq!(c.ipc.group.as_deref(), Some("wheel"));
    }

    #[test]
    fn the_first_start_keeps_sshd_reachable_unless_told_otherwise() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(
            c.first_start.allow_inbound,
            [PathBuf::from("/usr/sbin/sshd")]
        );
        let c = Config::parse("[first_start]\nallow_inbound = []\n", Path::new("x.toml")).unwrap();
        assert!(c.first_start.allow_inbound.is_empty());
        let e = Config::parse(
            "[first_start]\nallow_inbound = [\"sshd\"]\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x.toml") && e.contains("sshd is not an absolute path"),
            "{e}"
        );
        let e = Config::parse("[first_start]\nallow = []\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow"), "{e}");
    }

    #[test]
    fn interception_is_on_by_default_and_can_be_tuned() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert!(c.intercept.enabled);
        let c = Config::parse(
            "[intercept]\nenabled = false\nqueue_num = 7\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!((c.intercept.enabled, c.intercept.queue_num), (false, 7));
        assert_eq!(c.intercept.mark_mask, 0x9000_0000);
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file() {
        let err = Config::parse("[ipc]\nsokcet = \"/x\"\n", Path::new("/etc/p.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/p.toml") && msg.contains("sokcet"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_default_file_is_fine_but_a_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert_eq!(Config::load(&missing, false).unwrap(), Config::default());
        let msg = Config::load(&missing, true).unwrap_err().to_string();
        assert!(msg.contains("none.toml"), "{msg}");
    }

    #[test]
    fn local_lists_parse_and_bad_ones_are_named() {
        let c = Config::parse(
            "[[intel.lists]]\nid = \"drop\"\nname = \"Spamhaus DROP\"\n\
             path = \"/etc/portcullis/drop.txt\"\ncategory = \"malware\"\nformat = \"ips\"\n\
             [[intel.lists]]\nid = \"feed\"\npath = \"/x/feed.txt\"\ncategory = \"phishing\"\n\
             format = \"mixed\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.intel.lists.len(), 2);
        assert_eq!(c.intel.lists[0].format, crate::lists::LocalFormat::Ips);
        assert_eq!(
            c.intel.lists[1].category,
            portcullis_protocol::ListCategory::Phishing
        );
        for (text, want) in [
            (
                "[[intel.lists]]\nid = \"a\"\npath = \"/a\"\ncategory = \"weather\"\nformat = \"ips\"\n",
                "weather",
            ),
            (
                "[[intel.lists]]\nid = \"a\"\npath = \"/a\"\ncategory = \"ads\"\nformat = \"csv\"\n",
                "csv",
            ),
            (
                "[[intel.lists]]\nid = \"a\"\npath = \"/a\"\ncategory = \"ads\"\n",
                "format",
            ),
            (
                "[[intel.lists]]\nid = \"a\"\npath = \"a.txt\"\ncategory = \"ads\"\nformat = \"ips\"\n",
                "must be absolute",
            ),
            (
                "[[intel.lists]]\nid = \"a\"\npath = \"/a\"\ncategory = \"ads\"\nformat = \"ips\"\nurl = \"x\"\n",
                "url",
            ),
        ] {
            let msg = Config::parse(text, Path::new("/etc/p.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("/etc/p.toml") && msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["\u{0}\u{1}", "[[[", "state_dir = 3", "ipc = 5"] {
            assert!(
                Config::parse(text, Path::new("g.toml")).is_err(),
                "{text:?}"
            );
        }
    }
}
