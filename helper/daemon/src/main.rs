//! `portcullisd`, the privileged helper: wiring only. It reads the configuration, opens the
//! settings database, serves IPC, and stops cleanly on SIGTERM/SIGINT. Decisions live in
//! `portcullis-policy`, storage in `store`, request handling in `service`, sockets in
//! `portcullis-ipc`. `portcullisd recover` undoes what a crashed run left behind.

mod config;
mod dns;
mod docs;
mod enforce;
mod history;
mod link_dns;
mod lists;
mod live;
mod notify;
mod paths;
mod rates;
mod recover;
mod serve;
mod service;
mod state_lock;
mod store;
mod updates;
mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::paths::Paths;

/// Portcullis' privileged helper: decides, per application, which connections may pass.
#[derive(Debug, Parser)]
#[command(name = "portcullisd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
}

/// Options that place the helper's files; each overrides the configuration file.
#[derive(Debug, clap::Args)]
struct Placement {
    /// Configuration file (TOML). Default: /etc/portcullis/portcullisd.toml if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the settings database. Default: /var/lib/portcullis.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// IPC socket. Default: /run/portcullis/helper.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The cgroup2 directory whose processes eBPF attributes. Default: the cgroup2 root.
    #[arg(long, value_name = "DIR", conflicts_with = "no_ebpf")]
    ebpf_cgroup: Option<PathBuf>,
    /// Attribute with sock_diag and /proc only, without eBPF.
    #[arg(long)]
    no_ebpf: bool,
    /// Decide every new connection in the helper: no decisions cached in the kernel.
    #[arg(long)]
    no_fast_path: bool,
    /// The shipped intelligence data (geo-IP, ASN, filter lists). Default:
    /// /usr/share/portcullis/intel.
    #[arg(long, value_name = "DIR")]
    intel_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run in the foreground until SIGTERM or SIGINT.
    Run(Placement),
    /// Undo every system change a crashed run left behind (safe to run at any time).
    Recover(Placement),
    /// Write the man pages and shell completions to DIR (for packagers).
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write them (`man/`, `completions/`).
        dir: PathBuf,
    },
}

/// Everything `run` needs, resolved from the options, the configuration file and defaults.
#[derive(Debug)]
pub struct Resolved {
    /// Where things live.
    pub paths: Paths,
    /// Group allowed on the socket besides root, by name as configured.
    pub group: String,
    /// Packet interception.
    pub intercept: config::InterceptSection,
    /// Process attribution.
    pub attribution: config::AttributionSection,
    /// The DNS resolver.
    pub dns: dns::DnsSection,
    /// The network history.
    pub history: history::HistorySection,
    /// Shipped intelligence data.
    pub intel: config::IntelSection,
    /// Signed data updates.
    pub updates: updates::UpdatesSection,
    /// What a new settings database starts with.
    pub first_start: config::FirstStartSection,
}

fn resolve(p: &Placement) -> anyhow::Result<Resolved> {
    let (config_path, required) = match &p.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(paths::DEFAULT_CONFIG), false),
    };
    let config = Config::load(&config_path, required)?;
    let state_dir = p
        .state_dir
        .clone()
        .or(config.state_dir)
        .unwrap_or_else(|| PathBuf::from(paths::DEFAULT_STATE_DIR));
    let socket = p
        .socket
        .clone()
        .or(config.ipc.socket)
        .unwrap_or_else(|| PathBuf::from(paths::DEFAULT_SOCKET));
    Ok(Resolved {
        paths: Paths {
            state_dir: paths::absolute(&state_dir),
            socket: paths::absolute(&socket),
        },
        group: config
            .ipc
            .group
            .unwrap_or_else(|| paths::DEFAULT_GROUP.to_string()),
        intercept: config::InterceptSection {
            fast_path: config.intercept.fast_path && !p.no_fast_path,
            ..config.intercept
        },
        attribution: config::AttributionSection {
            ebpf: config.attribution.ebpf && !p.no_ebpf,
            ebpf_cgroup: p.ebpf_cgroup.clone().or(config.attribution.ebpf_cgroup),
        },
        dns: config.dns,
        history: config.history,
        intel: config::IntelSection {
            data_dir: p
                .intel_dir
                .as_deref()
                .map_or(config.intel.data_dir, paths::absolute),
            lists: config.intel.lists,
        },
        updates: config.updates,
        first_start: config.first_start,
    })
}

/// Milliseconds since the Unix epoch, the time unit of stored rules.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let result = match &cli.command {
        Command::Run(p) => resolve(p).and_then(|r| serve::run(&r)),
        Command::Recover(p) => resolve(p)
            .and_then(|r| recover::recover(&r, None))
            .map(|done| {
                for line in done {
                    println!("{line}");
                }
            }),
        Command::GenerateDocs { dir } => {
            docs::generate(<Cli as clap::CommandFactory>::command(), "8", dir)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("portcullisd: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Creates the state directory (root-only) if it does not exist.
pub fn ensure_state_dir(paths: &Paths) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.state_dir)
        .with_context(|| {
            format!(
                "cannot create state directory {}",
                paths.state_dir.display()
            )
        })
}
