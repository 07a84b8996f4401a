//! `portcullis --serve`: starts browser mode, prints the one-time link, and serves until
//! SIGINT/SIGTERM (Ctrl-C on Windows). Finding the built frontend is this module's job (the
//! desktop window uses the same one).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use portcullis_ipc::ClientConfig;
use portcullis_web::{ServeConfig, WebServer};

use crate::Cli;

pub(crate) fn run(cli: &Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: &Cli) -> anyhow::Result<()> {
    let mut helper = ClientConfig::new(
        &cli.socket,
        format!("portcullis --serve {}", env!("CARGO_PKG_VERSION")),
    );
    helper.require_root_owner = !cli.insecure_any_socket_owner;
    let mut config = ServeConfig::new(helper, web_root(cli));
    config.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, cli.port));
    config.watch_prompts = !cli.no_prompts;
    let server = WebServer::bind(config)
        .await
        .context("cannot start browser mode")?;
    let url = server.login_url().context("no login link was made")?;
    // One line a script can read (tests do), then the same for people.
    println!("portcullis: serving on http://{}/", server.local_addr());
    println!("portcullis: open {url}");
    println!("portcullis: the link works once; it signs this browser in. Stop with Ctrl-C.");
    server
        .serve(shutdown())
        .await
        .context("browser mode failed")?;
    tracing::info!("browser mode stopped");
    Ok(())
}

/// The frontend: `--web-root`, else the installed copy beside the binary or in /usr/share,
/// else the source tree's `frontend/dist` (development).
pub(crate) fn web_root(cli: &Cli) -> PathBuf {
    if let Some(dir) = &cli.web_root {
        return dir.clone();
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        candidates.push(bin.join("../share/portcullis/web"));
    }
    candidates.push(PathBuf::from("/usr/share/portcullis/web"));
    let source_tree = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/dist"));
    candidates
        .into_iter()
        .find(|d| d.join("index.html").is_file())
        .unwrap_or(source_tree)
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ignored = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ignored = tokio::signal::ctrl_c().await;
    }
}
