//! The arms of the comparison, each in a lab of its own (two namespaces joined by a veth pair):
//! the same servers in the server namespace, and in the client namespace nothing (no firewall),
//! the floor handler, OpenSnitch, or Portcullis. Every arm is set up once and stays up for the
//! whole run, so rounds can visit them in turn.
//!
//! Everything that intercepts runs only inside its lab's client namespace, and goes with it:
//! the lab kills the processes it started (by pid) and deletes its namespaces — and with them
//! every iptables rule and queue binding made there — when the [`Arm`] is dropped, also when
//! the run fails. OpenSnitch reads its configuration from fixed paths under
//! `/etc/opensnitchd`; it gets them from an overlay over `/etc` in a private mount namespace,
//! so the machine's own `/etc` is never written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portcullis_lab::{Helper, HelperOpts, Lab, LabProcess, Ns, Proto, lab_bin};

use crate::servers::{IPERF_PORT, Servers};

/// The NFQUEUE number the floor and Portcullis use (Portcullis' default).
pub const PORTCULLIS_QUEUE: u16 = portcullis_intercept::DEFAULT_QUEUE_NUM;
/// The NFQUEUE number OpenSnitch uses by default.
pub const OPENSNITCH_QUEUE: u16 = 0;
/// How long a firewall may take to be in place.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which firewall an arm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No rules at all.
    NoFirewall,
    /// Portcullis' rule layout answered "allow" by a minimal handler.
    Floor,
    /// OpenSnitch's daemon, headless, default action allow.
    OpenSnitch,
    /// The real `portcullisd` with default settings.
    Portcullis,
    /// The same with its network history off: what recording every connection costs (full
    /// profile only; measured for connect latency and rate only).
    PortcullisNoHistory,
}

impl Kind {
    /// The arm's name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::NoFirewall => "no firewall",
            Kind::Floor => "accept-all NFQUEUE",
            Kind::OpenSnitch => "OpenSnitch 1.5.8",
            Kind::Portcullis => "Portcullis",
            Kind::PortcullisNoHistory => "Portcullis (no hist)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::NoFirewall => "nofw",
            Kind::Floor => "floor",
            Kind::OpenSnitch => "osnitch",
            Kind::Portcullis => "pcl",
            Kind::PortcullisNoHistory => "pcl-nohist",
        }
    }

    /// Whether every figure is measured for this arm (not only connect latency and rate).
    pub fn every_figure(self) -> bool {
        self != Kind::PortcullisNoHistory
    }

    /// The queue the arm's firewall reads, if it has one.
    pub fn queue_num(self) -> Option<u16> {
        match self {
            Kind::NoFirewall => None,
            Kind::Floor | Kind::Portcullis | Kind::PortcullisNoHistory => Some(PORTCULLIS_QUEUE),
            Kind::OpenSnitch => Some(OPENSNITCH_QUEUE),
        }
    }
}

/// Where the peer's daemon is; see [`find_opensnitchd`].
#[derive(Debug, Clone)]
pub struct OpenSnitch {
    /// The `opensnitchd` executable.
    pub daemon: PathBuf,
    /// What `opensnitchd -version` printed.
    pub version: String,
}

/// Finds `opensnitchd`: `$PCL_OPENSNITCHD`, the copy `scripts/install-deps --bench` unpacks to
/// `/opt/portcullis-bench/opensnitch`, or `/usr/bin/opensnitchd`.
pub fn find_opensnitchd() -> Option<OpenSnitch> {
    let candidates = std::env::var_os("PCL_OPENSNITCHD")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("/opt/portcullis-bench/opensnitch/usr/bin/opensnitchd"),
            PathBuf::from("/usr/bin/opensnitchd"),
        ]);
    for daemon in candidates {
        if daemon.is_file() {
            let out = Command::new(&daemon).arg("-version").output().ok()?;
            let mut version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if version.is_empty() {
                version = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            }
            return Some(OpenSnitch { daemon, version });
        }
    }
    None
}

/// One arm: its lab, servers and firewall. Fields drop in order: servers and firewall
/// handles first, the lab (which kills the processes and deletes the namespaces) last.
#[derive(Debug)]
pub struct Arm {
    /// Which firewall.
    pub kind: Kind,
    /// The in-process servers in the server namespace.
    pub servers: Servers,
    /// The Portcullis helper (Portcullis arm only).
    pub helper: Option<Helper>,
    /// The floor handler or OpenSnitch process.
    pub firewall: Option<LabProcess>,
    /// The probe every measured connection of this arm comes from (one app).
    pub probe: PathBuf,
    /// What the firewall says about itself (Portcullis: version and how it attributes).
    pub about: Option<String>,
    apps_made: AtomicU32,
    /// The lab; dropped last.
    pub lab: Lab,
}

impl Arm {
    /// Makes the lab, starts the servers and the firewall, and waits until it is in place.
    pub fn start(kind: Kind, opensnitch: Option<&OpenSnitch>) -> anyhow::Result<Arm> {
        let lab = Lab::new(&format!("bench-{}", kind.short()));
        let servers = Servers::start(lab.server())?;
        // The lab owns the iperf3 server and stops it at teardown.
        let _iperf = lab.server().spawn(
            lab.server()
                .cmd("iperf3", ["-s", "-p", &IPERF_PORT.to_string()]),
        );
        lab.server().wait_for_port(IPERF_PORT, Proto::Tcp);
        let apps = lab.dir().join("apps");
        std::fs::create_dir_all(&apps).context("creating the apps directory")?;
        let probe = apps.join("pcl-probe");
        let src = lab_bin("pcl-probe");
        std::fs::copy(&src, &probe)
            .and_then(|_| std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)))
            .with_context(|| format!("copying {} to {}", src.display(), probe.display()))?;

        let (mut helper, mut firewall) = (None, None);
        match kind {
            Kind::NoFirewall => {}
            Kind::Floor => {
                let exe = std::env::current_exe().context("finding pcl-bench itself")?;
                firewall = Some(lab.client().spawn(lab.client().cmd(exe, ["floor"])));
            }
            Kind::OpenSnitch => {
                let os = opensnitch.context("OpenSnitch arm without opensnitchd")?;
                firewall = Some(start_opensnitch(&lab, &os.daemon)?);
            }
            Kind::Portcullis => {
                helper = Some(lab.client().start_helper(HelperOpts::default()));
            }
            Kind::PortcullisNoHistory => {
                helper = Some(lab.client().start_helper(HelperOpts {
                    config_toml: Some("[history]\nenabled = false\n".to_owned()),
                    ..HelperOpts::default()
                }));
            }
        }
        let arm = Arm {
            kind,
            servers,
            helper,
            firewall,
            probe,
            about: None,
            apps_made: AtomicU32::new(0),
            lab,
        };
        arm.wait_ready()?;
        let mut arm = arm;
        if let Some(h) = &arm.helper {
            let status = h.ctl_json(["status"]);
            let text = |k: &str| {
                status
                    .get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            };
            arm.about = Some(format!(
                "portcullisd {}, attribution: {}",
                text("version"),
                text("attribution")
            ));
        }
        Ok(arm)
    }

    /// The client namespace.
    pub fn client(&self) -> &Ns {
        self.lab.client()
    }

    /// The server's address, as text for command lines.
    pub fn server_ip(&self) -> String {
        self.lab.server().ipv4().to_string()
    }

    /// The pid of the process that decides (helper, floor handler or OpenSnitch).
    pub fn firewall_pid(&self) -> Option<u32> {
        match (&self.helper, &self.firewall) {
            (Some(h), _) => h.pid(),
            (None, Some(p)) => Some(p.pid()),
            (None, None) => None,
        }
    }

    /// A new app: a hard link to the probe under a name never used before in this lab (a copy
    /// if linking fails). Firewalls tell apps apart by executable path, and the kernel reports
    /// the path a process was started by, so each link is an app of its own.
    pub fn new_app(&self, prefix: &str) -> anyhow::Result<PathBuf> {
        let n = self.apps_made.fetch_add(1, Ordering::Relaxed);
        let path = self.probe.with_file_name(format!("{prefix}-{n:05}"));
        if std::fs::hard_link(&self.probe, &path).is_err() {
            std::fs::copy(&self.probe, &path)
                .with_context(|| format!("copying the probe to {}", path.display()))?;
        }
        Ok(path)
    }

    /// Deletes the client namespace's conntrack table, so that each measurement starts from
    /// the same empty table (arms with a firewall only; without one conntrack is not loaded).
    pub fn flush_conntrack(&self) -> anyhow::Result<()> {
        if self.kind == Kind::NoFirewall {
            return Ok(());
        }
        let mut cmd = Command::new("conntrack");
        cmd.arg("-F");
        let out = self.client().output(cmd);
        if !out.success() {
            bail!("conntrack -F in {} failed: {out}", self.client().name());
        }
        Ok(())
    }

    /// Waits until the arm's rules are installed and its queue is bound.
    fn wait_ready(&self) -> anyhow::Result<()> {
        let Some(queue) = self.kind.queue_num() else {
            return Ok(());
        };
        let marker = match self.kind {
            Kind::OpenSnitch => "NFQUEUE --queue-num 0",
            _ => portcullis_intercept::rules::CHAIN_OUT,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let bound = self
                .client()
                .in_ns(|| portcullis_intercept::queue_stats(queue).is_some());
            let rules = self.client().output(Command::new("iptables-save"));
            let installed = rules.success()
                && rules.stdout.contains(marker)
                && rules.stdout.contains("NFQUEUE");
            if bound && installed {
                return Ok(());
            }
            if let Some(p) = &self.firewall
                && let Some(status) = p.try_status()
            {
                bail!(
                    "{} exited ({status}) while starting:\n{}",
                    self.kind.label(),
                    p.logs()
                );
            }
            if Instant::now() >= deadline {
                let logs = match (&self.helper, &self.firewall) {
                    (Some(h), _) => h.logs(),
                    (None, Some(p)) => p.logs(),
                    (None, None) => String::new(),
                };
                bail!(
                    "{} not in place after {READY_TIMEOUT:?} (queue bound: {bound}, rules: \
                     {installed})\n{logs}",
                    self.kind.label()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts `opensnitchd` headless in the lab's client namespace: its configuration (default
/// action allow, `/proc` process monitor, iptables) and an empty rules directory come from an
/// overlay over `/etc` in a private mount namespace, and its UI socket points at nothing.
fn start_opensnitch(lab: &Lab, daemon: &Path) -> anyhow::Result<LabProcess> {
    let dir = lab.dir().join("opensnitch");
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    let etc = upper.join("opensnitchd");
    std::fs::create_dir_all(etc.join("rules")).context("creating OpenSnitch's rules dir")?;
    std::fs::create_dir_all(&work).context("creating the overlay work dir")?;
    let ui_socket = format!("unix://{}", dir.join("no-ui.sock").display());
    let config = serde_json::json!({
        "Server": {
            "Address": ui_socket,
            "LogFile": dir.join("opensnitchd.log"),
        },
        "DefaultAction": "allow",
        "DefaultDuration": "once",
        "InterceptUnknown": false,
        "ProcMonitorMethod": "proc",
        "LogLevel": 2,
        "Firewall": "iptables",
        "Stats": { "MaxEvents": 150, "MaxStats": 25 },
    });
    std::fs::write(etc.join("default-config.json"), config.to_string())
        .context("writing OpenSnitch's configuration")?;
    // The package's own system rules: let ICMP pass without asking.
    let system_fw = serde_json::json!({
        "SystemRules": [{ "Rule": {
            "Description": "Allow icmp", "Table": "mangle", "Chain": "OUTPUT",
            "Parameters": "-p icmp", "Target": "ACCEPT", "TargetParameters": "",
        }}]
    });
    std::fs::write(etc.join("system-fw.json"), system_fw.to_string())
        .context("writing OpenSnitch's firewall configuration")?;
    let script = format!(
        "mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc && exec {} \
         -rules-path /etc/opensnitchd/rules -ui-socket {ui_socket} -process-monitor-method proc",
        upper.display(),
        work.display(),
        daemon.display(),
    );
    // `unshare` and `sh` exec in place: the lab's pid is opensnitchd's own.
    let cmd = lab.client().cmd(
        "unshare",
        [
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    Ok(lab.client().spawn(cmd))
}
