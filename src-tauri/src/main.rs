//! `portcullis`, the desktop app of Portcullis, unprivileged, in the user's session. Without
//! options it opens the desktop window (Tauri; Linux only, see `desktop`), with its tray and
//! prompt window; with `--serve` it runs browser mode instead: the same frontend on 127.0.0.1.
//! Both reach the helper through `portcullis-web`'s bridge over the `ipc` client, carry
//! `protocol` values unchanged and decide nothing themselves.

#[cfg(target_os = "linux")]
mod desktop;
#[cfg(target_os = "linux")]
mod notify;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Default socket of the helper.
const DEFAULT_SOCKET: &str = "/run/portcullis/helper.sock";

/// Portcullis, the per-application firewall: see and decide what every app connects to.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    /// Serve the app in your browser on 127.0.0.1 and print the link to open (browser mode).
    #[arg(long)]
    serve: bool,
    /// The helper's socket.
    #[arg(long, value_name = "PATH", env = "PORTCULLIS_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The built frontend (default: the installed one, else the source tree's frontend/dist).
    #[arg(long, value_name = "DIR", env = "PORTCULLIS_WEB_ROOT")]
    web_root: Option<PathBuf>,
    /// The port for browser mode (default: a free one chosen at random).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    port: u16,
    /// Do not answer prompts from the browser (connections that ask fall back at once unless
    /// another client answers).
    #[arg(long)]
    no_prompts: bool,
    /// Desktop window: make no tray icon (closing the window then quits the app).
    #[arg(long)]
    no_tray: bool,
    /// Desktop window: start in the tray with the window closed (the login autostart entry
    /// uses it). Without a tray to show, the window opens anyway: it must stay reachable.
    #[arg(long, conflicts_with_all = ["serve", "no_tray"])]
    hidden: bool,
    /// Desktop window: no desktop notifications for prompts (otherwise one asks when a
    /// prompt arrives while the window is hidden in the tray or minimized).
    #[arg(long, conflicts_with = "serve")]
    no_notifications: bool,
    /// Trust a socket not owned by root (tests and development only).
    #[arg(long, hide = true)]
    insecure_any_socket_owner: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(target_os = "linux")]
    if !cli.serve {
        desktop::prefer_software_painting();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if !cli.serve {
        return desktop(&cli);
    }
    match serve::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
fn desktop(cli: &Cli) -> ExitCode {
    match desktop::run(cli, serve::web_root(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            eprintln!("portcullis: `portcullis --serve` runs Portcullis in your browser instead");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn desktop(_cli: &Cli) -> ExitCode {
    eprintln!(
        "portcullis: the desktop window is built for Linux only; run `portcullis --serve` to use \
         Portcullis in your browser"
    );
    ExitCode::from(2)
}
