//! `portcullisctl`, the command-line client of `portcullisd`. It speaks the same protocol as
//! the desktop app (only `portcullis-protocol` and `portcullis-ipc`), prints tables for people
//! and, with `--json`, the helper's answers as JSON for scripts. Errors are one line on
//! stderr (or a JSON object on stdout with `--json`) and a non-zero exit code.
//!
//! The command-line surface is a contract: later releases add commands, never rename these.

mod docs;
mod history;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use portcullis_ipc::{Client, ClientConfig, IpcError};
use portcullis_protocol::{
    ConnectionQuery, Direction, Event, PromptAnswer, PromptDuration, PromptTarget, Protocol,
    Request, Response, RuleLifetime, RuleOwner, SettingKey, SettingValue, UpdateOutcome,
};

/// Default socket of the helper.
const DEFAULT_SOCKET: &str = "/run/portcullis/helper.sock";

/// Control Portcullis, the per-application firewall, from the command line.
#[derive(Debug, Parser)]
#[command(name = "portcullisctl", version, about, propagate_version = true)]
struct Cli {
    /// The helper's socket.
    #[arg(long, global = true, value_name = "PATH", env = "PORTCULLIS_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the helper's answers as JSON (errors too, on stdout).
    #[arg(long, global = true)]
    json: bool,
    /// Trust a socket not owned by root (tests and development only).
    #[arg(long, global = true, hide = true)]
    insecure_any_socket_owner: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Version, uptime and enforcement state of the helper.
    Status,
    /// Let every new connection pass, undecided, for MINUTES (1-1440); protection resumes by
    /// itself then.
    Pause {
        /// How long.
        minutes: u32,
    },
    /// End a pause now (connections opened during it are decided again).
    Resume,
    /// Show or change settings, globally or for one app.
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// Apps (profiles) the helper knows.
    #[command(subcommand)]
    Apps(AppsCmd),
    /// Endpoint rules, globally or for one app (first match wins).
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Print events (setting and rule changes, new apps, connections) as they happen, until
    /// interrupted.
    Events,
    /// Connections waiting for an answer (default_action=ask), and answering them.
    #[command(subcommand)]
    Prompts(PromptsCmd),
    /// Recent connections with app, destination, verdict and reason.
    Connections {
        /// Then keep printing new ones as they are decided, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// What would happen to a connection, and why (nothing is changed). Options go before
    /// the connection, e.g. `explain --app /usr/bin/curl tcp 10.0.0.1 443`.
    Explain(ExplainArgs),
    /// The helper's DNS resolver: its state, how it answers a name, emptying its cache.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// The network history: past connections and DNS queries, top lists, export, clear.
    #[command(subcommand)]
    History(history::HistoryCmd),
    /// Each app's traffic in the last second (open TCP connections), busiest first.
    Bandwidth {
        /// Keep printing every second, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Signed data updates (filter lists, geo-IP): their state, or a check now.
    #[command(subcommand)]
    Updates(UpdatesCmd),
    /// What the helper's geo-IP and ASN data say of an address.
    #[command(subcommand)]
    Intel(IntelCmd),
    /// Filter lists: what each holds, which categories are in force, and updates.
    #[command(subcommand)]
    Lists(ListsCmd),
    /// Write the man pages and shell completions to DIR (for packagers).
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write them (`man/`, `completions/`).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ListsCmd {
    /// Every list: category, entries, skipped and bad lines, whether it is in force; the
    /// categories in force; the data version.
    Status,
    /// Turn a category of lists on (ads, trackers, malware, phishing), for every app or for
    /// one (`--app`; the app then no longer inherits the global choice).
    Enable {
        /// ads, trackers, malware or phishing.
        category: String,
        #[command(flatten)]
        app: AppOpt,
    },
    /// Turn a category of lists off, for every app or for one (`--app`).
    Disable {
        /// ads, trackers, malware or phishing.
        category: String,
        #[command(flatten)]
        app: AppOpt,
    },
    /// Check for newer signed lists now (as `updates check`).
    Update,
}

#[derive(Debug, Subcommand)]
enum IntelCmd {
    /// Country, continent and network (ASN) of IP, as the data in force says.
    Lookup {
        /// An IPv4 or IPv6 address.
        ip: std::net::IpAddr,
    },
}

#[derive(Debug, Subcommand)]
enum UpdatesCmd {
    /// Where updates come from, the version in force, and how the last check ended.
    Status,
    /// Check for a newer signed bundle now and install it if it passes every check (exit 1
    /// when the bundle is refused or the check fails; the data in force is then kept).
    Check,
}

#[derive(Debug, Subcommand)]
enum DnsCmd {
    /// Whether it runs, where it listens, its upstreams with their counters, the cache.
    Status,
    /// How the helper answers NAME (A and AAAA) for an app, and why if it is blocked (the
    /// lookup is not recorded for the app's connections).
    Query {
        /// The name, e.g. `example.com`.
        name: String,
        /// The app to answer as (its executable path or key); default: an app without a
        /// profile of its own.
        #[arg(long, value_name = "EXE")]
        app: Option<String>,
    },
    /// Empty its cache.
    Flush,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    #[command(flatten)]
    app: AppOpt,
    /// A connection another machine opens to us (PORT is then our local port).
    #[arg(long)]
    inbound: bool,
    /// The name the app looked ADDRESS up by.
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// tcp, udp or icmp.
    protocol: String,
    /// The other end's IP address.
    address: String,
    /// The port (remote for outbound, local for inbound); not for icmp.
    port: Option<u16>,
}

#[derive(Debug, Args)]
struct AppOpt {
    /// The app, by executable path; without it, the global settings or rules.
    #[arg(long, value_name = "EXE")]
    app: Option<String>,
}

#[derive(Debug, Subcommand)]
enum SettingsCmd {
    /// Show every setting in force (and where it comes from), or one.
    Get {
        /// One key; all when left out.
        key: Option<String>,
        #[command(flatten)]
        app: AppOpt,
    },
    /// Set KEY to VALUE; without VALUE, clear it so it is inherited again.
    Set {
        /// The key, e.g. default_action.
        key: String,
        /// The value, e.g. block; left out: inherit.
        value: Option<String>,
        #[command(flatten)]
        app: AppOpt,
    },
    /// List the keys and what they take.
    Keys,
}

#[derive(Debug, Subcommand)]
enum AppsCmd {
    /// Every app with a profile.
    List,
    /// One app: its profile, settings in force and rules.
    Show {
        /// The app's executable path.
        app: String,
    },
}

#[derive(Debug, Subcommand)]
enum PromptsCmd {
    /// The prompts waiting now.
    List,
    /// Stay connected as someone who answers prompts, printing them as they come (until
    /// interrupted). While no client watches, `ask` falls back at once.
    Watch,
    /// Answer a prompt, e.g. `prompts answer 3 allow --for ip-port --minutes 10`.
    Answer {
        /// The prompt's id (see `prompts list`).
        id: u64,
        /// `allow` or `block`.
        verdict: String,
        /// What the rule is about: ip, ip-port, port, domain or subdomains.
        #[arg(long = "for", value_name = "TARGET", default_value = "ip-port")]
        target: String,
        /// Only this connection; no rule (the default).
        #[arg(long, group = "duration")]
        once: bool,
        /// A rule for this many minutes.
        #[arg(long, value_name = "N", group = "duration")]
        minutes: Option<u32>,
        /// A rule until the asking process exits.
        #[arg(long, group = "duration")]
        until_quit: bool,
        /// A rule until the helper restarts.
        #[arg(long, group = "duration")]
        until_restart: bool,
        /// A rule kept until removed.
        #[arg(long, group = "duration")]
        always: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCmd {
    /// The rules of one list, in order.
    List {
        #[command(flatten)]
        app: AppOpt,
    },
    /// Add a rule, e.g. `rules add --app /usr/bin/curl - 10.0.0.0/8`. Options go before the
    /// rule.
    Add {
        #[command(flatten)]
        app: AppOpt,
        /// 1-based position in the list; default: at the end.
        #[arg(long, value_name = "N")]
        position: Option<u32>,
        /// Remove the rule after this many minutes.
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["until_restart", "seconds"])]
        minutes: Option<u32>,
        /// Remove the rule after this many seconds.
        #[arg(long, value_name = "SECONDS", conflicts_with = "until_restart")]
        seconds: Option<u32>,
        /// Remove the rule when the helper restarts.
        #[arg(long)]
        until_restart: bool,
        /// The rule: `+` or `-`, then what it matches, e.g. `- *.example.com tcp/443`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        rule: Vec<String>,
    },
    /// Remove a rule by id.
    Remove {
        /// The rule's id (see `rules list`).
        id: i64,
    },
    /// Move a rule to a 1-based position in its list.
    Move {
        /// The rule's id.
        id: i64,
        /// The new position.
        position: u32,
    },
}

/// A failure to report: its message, a machine code for `--json`, the exit code.
struct Failure {
    code: &'static str,
    message: String,
    exit: u8,
}

impl From<IpcError> for Failure {
    fn from(e: IpcError) -> Failure {
        let (code, exit) = match &e {
            IpcError::Helper(frame) => (error_code(frame.code), 1),
            IpcError::NotRunning { .. } => ("not_running", 3),
            IpcError::PermissionDenied { .. } => ("permission_denied", 4),
            IpcError::Refused(frame)
                if frame.code == portcullis_protocol::ErrorCode::PermissionDenied =>
            {
                ("permission_denied", 4)
            }
            IpcError::Refused(frame) => (error_code(frame.code), 1),
            _ => ("ipc", 1),
        };
        // IpcError's own message does not repeat its cause; people need both.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Failure {
            code,
            message,
            exit,
        }
    }
}

fn error_code(code: portcullis_protocol::ErrorCode) -> &'static str {
    use portcullis_protocol::ErrorCode as C;
    match code {
        C::PermissionDenied => "permission_denied",
        C::VersionMismatch => "version_mismatch",
        C::BadFrame => "bad_frame",
        C::FrameTooLarge => "frame_too_large",
        C::InvalidInput => "invalid_input",
        C::NotFound => "not_found",
        C::Internal => "internal",
        C::Unknown => "unknown",
    }
}

fn usage(message: String) -> Failure {
    Failure {
        code: "invalid_input",
        message,
        exit: 2,
    }
}

fn owner(app: &AppOpt) -> RuleOwner {
    match &app.app {
        Some(a) => RuleOwner::App(a.clone()),
        None => RuleOwner::Global,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn connection_query(args: &ExplainArgs) -> Result<ConnectionQuery, Failure> {
    let protocol = match args.protocol.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        other => {
            return Err(usage(format!(
                "invalid protocol `{other}`: expected tcp, udp or icmp"
            )));
        }
    };
    let remote = args.address.parse().map_err(|_| {
        usage(format!(
            "invalid address `{}`: expected an IPv4 or IPv6 address",
            args.address
        ))
    })?;
    if protocol == Protocol::Icmp && args.port.is_some() {
        return Err(usage("icmp has no ports".into()));
    }
    let (direction, remote_port, local_port) = if args.inbound {
        (Direction::Inbound, None, args.port)
    } else {
        (Direction::Outbound, args.port, None)
    };
    Ok(ConnectionQuery {
        direction,
        protocol,
        remote,
        remote_port,
        local_port,
        domain: args.domain.clone(),
    })
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(ClientConfig {
        path: cli.socket.clone(),
        require_root_owner: !cli.insecure_any_socket_owner,
        client_name: format!("portcullisctl {}", env!("CARGO_PKG_VERSION")),
        max_frame_len: portcullis_protocol::MAX_FRAME_LEN,
    })
    .await?)
}

async fn call(client: &mut Client, request: Request) -> Result<Response, Failure> {
    Ok(client.call(request).await?)
}

/// How to print the answer to a request.
enum Show {
    Status,
    Settings(Option<SettingKey>),
    Apps,
    App,
    Rules,
    Rule(&'static str),
    Explanation,
    Connections,
    Events,
    Prompts,
    PromptsWatch,
    Answered,
    Dns,
    Updates,
    Intel,
    Lists,
    ListsToggle {
        category: portcullis_protocol::ListCategory,
        on: bool,
        app: Option<String>,
    },
}

/// A list category named on the command line.
fn category_arg(text: &str) -> Result<portcullis_protocol::ListCategory, Failure> {
    portcullis_protocol::ListCategory::from_word(text.trim()).ok_or_else(|| {
        usage(format!(
            "unknown list category `{}`: use ads, trackers, malware or phishing",
            text.escape_debug()
        ))
    })
}

/// Turns the command line into the request to send, checking everything that can be checked
/// without the helper first, so bad usage is reported as such (exit 2) even when the helper
/// is not running.
fn plan(command: &Command) -> Result<(Request, Show), Failure> {
    let setting_key = |k: &str| {
        k.parse::<SettingKey>()
            .map_err(|e: portcullis_protocol::SettingParseError| usage(e.message))
    };
    Ok(match command {
        Command::GenerateDocs { .. } => {
            return Err(usage(
                "generate-docs sends nothing to the helper".to_string(),
            ));
        }
        Command::Status => (Request::Status, Show::Status),
        Command::Pause { minutes } => (Request::Pause { minutes: *minutes }, Show::Status),
        Command::Resume => (Request::Resume, Show::Status),
        Command::Settings(SettingsCmd::Get { key, app }) => {
            let key = key.as_deref().map(setting_key).transpose()?;
            (
                Request::GetSettings {
                    app: app.app.clone(),
                },
                Show::Settings(key),
            )
        }
        Command::Settings(SettingsCmd::Set { key, value, app }) => {
            let key = setting_key(key)?;
            let value = value
                .as_deref()
                .map(|v| SettingValue::parse(key, v))
                .transpose()
                .map_err(|e| usage(e.message))?;
            let req = Request::SetSetting {
                app: app.app.clone(),
                key,
                value,
            };
            (req, Show::Settings(Some(key)))
        }
        Command::Settings(SettingsCmd::Keys) => {
            return Err(usage("`settings keys` needs no helper".into()));
        }
        Command::Apps(AppsCmd::List) => (Request::ListApps, Show::Apps),
        Command::Apps(AppsCmd::Show { app }) => (Request::ShowApp { app: app.clone() }, Show::App),
        Command::Rules(RulesCmd::List { app }) => {
            (Request::ListRules { owner: owner(app) }, Show::Rules)
        }
        Command::Rules(RulesCmd::Add {
            app,
            position,
            minutes,
            seconds,
            until_restart,
            rule,
        }) => {
            let secs = minutes
                .map(|m| u64::from(m) * 60)
                .or(seconds.map(u64::from));
            let lifetime = match (secs, until_restart) {
                (Some(0), _) => return Err(usage("a rule must live at least 1 second".into())),
                (Some(s), _) => RuleLifetime::Until {
                    unix_ms: now_ms().saturating_add(s * 1000),
                },
                (None, true) => RuleLifetime::UntilRestart,
                (None, false) => RuleLifetime::Forever,
            };
            let req = Request::AddRule {
                owner: owner(app),
                text: rule.join(" "),
                position: *position,
                lifetime,
            };
            (req, Show::Rule("added"))
        }
        Command::Rules(RulesCmd::Remove { id }) => {
            (Request::RemoveRule { id: *id }, Show::Rule("removed"))
        }
        Command::Rules(RulesCmd::Move { id, position }) => (
            Request::MoveRule {
                id: *id,
                position: *position,
            },
            Show::Rules,
        ),
        Command::Explain(args) => {
            let connection = connection_query(args)?;
            (
                Request::Explain {
                    app: args.app.app.clone(),
                    connection,
                },
                Show::Explanation,
            )
        }
        Command::Connections { .. } => (Request::ListConnections, Show::Connections),
        Command::History(cmd) => (history::plan(cmd, now_ms())?, Show::Dns),
        Command::Bandwidth { .. } => (Request::LiveRates, Show::Dns),
        Command::Updates(UpdatesCmd::Status) => (Request::UpdateStatus, Show::Updates),
        Command::Updates(UpdatesCmd::Check) => (Request::UpdateCheck, Show::Updates),
        Command::Intel(IntelCmd::Lookup { ip }) => (Request::IntelLookup { ip: *ip }, Show::Intel),
        Command::Lists(ListsCmd::Status) => (Request::ListsStatus, Show::Lists),
        Command::Lists(ListsCmd::Update) => (Request::UpdateCheck, Show::Updates),
        Command::Lists(
            ListsCmd::Enable { category, app } | ListsCmd::Disable { category, app },
        ) => {
            let category = category_arg(category)?;
            let on = matches!(command, Command::Lists(ListsCmd::Enable { .. }));
            // The global settings first: an app the helper has not seen yet inherits them.
            (
                Request::GetSettings { app: None },
                Show::ListsToggle {
                    category,
                    on,
                    app: app.app.clone(),
                },
            )
        }
        Command::Dns(DnsCmd::Status) => (Request::DnsStatus, Show::Dns),
        Command::Dns(DnsCmd::Flush) => (Request::DnsFlush, Show::Dns),
        Command::Dns(DnsCmd::Query { name, app }) => (
            Request::DnsQuery {
                name: name.clone(),
                app: app.clone(),
            },
            Show::Dns,
        ),
        Command::Events => (Request::Subscribe, Show::Events),
        Command::Prompts(PromptsCmd::List) => (Request::ListPrompts, Show::Prompts),
        Command::Prompts(PromptsCmd::Watch) => (Request::WatchPrompts, Show::PromptsWatch),
        Command::Prompts(PromptsCmd::Answer {
            id,
            verdict,
            target,
            once: _,
            minutes,
            until_quit,
            until_restart,
            always,
        }) => {
            let allow = match verdict.as_str() {
                "allow" => true,
                "block" => false,
                other => {
                    return Err(usage(format!(
                        "invalid answer `{other}`: expected allow or block"
                    )));
                }
            };
            let target = match target.as_str() {
                "ip" => PromptTarget::Ip,
                "ip-port" => PromptTarget::IpPort,
                "port" => PromptTarget::Port,
                "domain" => PromptTarget::Domain,
                "subdomains" => PromptTarget::Subdomains,
                other => {
                    return Err(usage(format!(
                        "invalid target `{other}`: expected ip, ip-port, port, domain or subdomains"
                    )));
                }
            };
            let duration = match (minutes, until_quit, until_restart, always) {
                (Some(0), ..) => return Err(usage("--minutes must be at least 1".into())),
                (Some(m), ..) => PromptDuration::Minutes { minutes: *m },
                (None, true, _, _) => PromptDuration::UntilAppQuits,
                (None, _, true, _) => PromptDuration::UntilRestart,
                (None, _, _, true) => PromptDuration::Always,
                _ => PromptDuration::Once,
            };
            let answer = PromptAnswer {
                allow,
                target,
                duration,
            };
            (Request::AnswerPrompt { id: *id, answer }, Show::Answered)
        }
    })
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    if let Command::Settings(SettingsCmd::Keys) = &cli.command {
        output::keys(cli.json);
        return Ok(());
    }
    if let Command::Bandwidth { follow } = &cli.command {
        let mut client = connect(cli).await?;
        loop {
            let resp = call(&mut client, Request::LiveRates).await?;
            history::print(&resp, cli.json);
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if !cli.json {
                println!();
            }
        }
    }
    if let Command::History(cmd) = &cli.command {
        let request = history::plan(cmd, now_ms())?;
        let mut client = connect(cli).await?;
        if let history::HistoryCmd::Export { csv, .. } = cmd {
            return history::export(&mut client, request, *csv).await;
        }
        let resp = call(&mut client, request).await?;
        history::print(&resp, cli.json);
        return Ok(());
    }
    let (request, show) = plan(&cli.command)?;
    let follow = matches!(cli.command, Command::Connections { follow: true });
    let mut client = connect(cli).await?;
    let json = cli.json;
    let resp = call(&mut client, request).await?;
    match show {
        Show::Status => output::status(&resp, json),
        Show::Settings(key) => output::settings(&resp, key, json),
        Show::Apps => output::apps(&resp, json),
        Show::App => output::app(&resp, json),
        Show::Rules => output::rules(&resp, json),
        Show::Rule(verb) => output::rule(&resp, verb, json),
        Show::Explanation => output::explanation(&resp, json),
        Show::Connections => {
            output::connections(&resp, json);
            if follow {
                call(&mut client, Request::Subscribe).await?;
                loop {
                    if let Event::Connection { connection } = client.next_event().await? {
                        output::connection(&connection, json);
                    }
                }
            }
        }
        Show::Prompts => output::prompts(&resp, json),
        Show::Answered => output::answered(&resp, json),
        Show::Dns => output::dns(&resp, json),
        Show::Updates => {
            output::updates(&resp, json);
            if matches!(cli.command, Command::Updates(UpdatesCmd::Check))
                && let Response::Updates(s) = &resp
                && let Some(UpdateOutcome::Refused { reason } | UpdateOutcome::Failed { reason }) =
                    &s.last
            {
                return Err(Failure {
                    code: "update_refused",
                    message: format!("no update installed: {reason}"),
                    exit: 1,
                });
            }
        }
        Show::Intel => output::intel(&resp, json),
        Show::Lists => {
            let updates = call(&mut client, Request::UpdateStatus).await?;
            output::lists(&resp, &updates, json);
        }
        Show::ListsToggle { category, on, app } => {
            let resp = match &app {
                None => resp,
                Some(a) => match call(
                    &mut client,
                    Request::GetSettings {
                        app: Some(a.clone()),
                    },
                )
                .await
                {
                    Err(e) if e.code == "not_found" => resp,
                    other => other?,
                },
            };
            let Response::Settings(view) = &resp else {
                return Err(Failure {
                    code: "protocol",
                    message: "the helper answered settings with something else".into(),
                    exit: 1,
                });
            };
            let mut now: Vec<portcullis_protocol::ListCategory> = view
                .entries
                .iter()
                .find(|e| e.key == SettingKey::FilterLists)
                .and_then(|e| match &e.value {
                    SettingValue::Categories(c) => Some(c.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            now.retain(|c| *c != category);
            if on {
                now.push(category);
            }
            now.sort();
            let set = Request::SetSetting {
                app,
                key: SettingKey::FilterLists,
                value: Some(SettingValue::Categories(now)),
            };
            let done = call(&mut client, set).await?;
            output::settings(&done, Some(SettingKey::FilterLists), json);
        }
        Show::PromptsWatch => {
            let now = call(&mut client, Request::ListPrompts).await?;
            output::prompts(&now, json);
            loop {
                match client.next_event().await? {
                    Event::PromptAdded { prompt } => output::prompt(&prompt, json),
                    e @ Event::PromptClosed { .. } => output::event(&e, json),
                    _ => {}
                }
            }
        }
        Show::Events => loop {
            let event = client.next_event().await?;
            output::event(&event, json);
        },
    }
    Ok(())
}

/// Like other command-line tools, end quietly when the reader of our output goes away
/// (`portcullisctl … | head`) instead of failing on the broken pipe.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start, before any thread or
    // output exists; no Rust state is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    let cli = Cli::parse();
    if let Command::GenerateDocs { dir } = &cli.command {
        return match docs::generate(<Cli as clap::CommandFactory>::command(), "1", dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullisctl: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullisctl: error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "error": { "code": f.code, "message": f.message } })
                );
            } else {
                eprintln!("portcullisctl: error: {}", f.message);
            }
            ExitCode::from(f.exit)
        }
    }
}
