//! Enforcement: the verdict thread and the firewall rules around it. The thread takes each
//! new connection from the queue, finds the process and app behind it (`attribution`),
//! decides it with the policy snapshot in force (`verdict`), answers the packet, and records
//! the connection. It never waits on the database, the IPC side or the network: new app
//! profiles and events are handed off without blocking, so a slow client can never hold a
//! packet.
//!
//! Order matters for safety: the queue is bound before the rules that feed it are installed,
//! and at stop the rules are removed before the queue is closed, so no packet is ever sent to
//! a queue nobody reads (with fail-open, `--queue-bypass` covers the crash case too).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use portcullis_attribution::{
    AppIdentity, Attribution, AttributionConfig, Attributor, Flow, ProcessInfo,
};
use portcullis_intercept::{
    ForgetFilter, InstalledRules, InterceptConfig, InterceptError, Pending, Queue, QueueStopper,
};
use portcullis_protocol::{ConnectionInfo, Direction, Event, Verdict};
use tokio::sync::{broadcast, mpsc};

use crate::live::{ConnectionLog, SharedPolicy};
use crate::store::KERNEL_KEY;
use crate::verdict::{Observed, decide_observed};

/// An app the verdict thread met that has no profile yet.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Its profile key.
    pub key: String,
    /// Its name for people.
    pub name: String,
}

/// What the verdict thread shares with the rest of the helper.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The policy in force.
    pub policy: Arc<SharedPolicy>,
    /// Where decided connections are recorded.
    pub log: Arc<ConnectionLog>,
    /// Subscribers' events.
    pub events: broadcast::Sender<Event>,
    /// Apps that need a profile (handed off without waiting).
    pub new_apps: mpsc::Sender<NewApp>,
}

/// The running enforcement: rules installed, verdict thread answering.
#[derive(Debug)]
pub struct Enforcer {
    config: InterceptConfig,
    rules: Option<InstalledRules>,
    stopper: QueueStopper,
    thread: Option<JoinHandle<()>>,
}

impl Enforcer {
    /// Binds the queue, starts the verdict thread, then installs the rules that feed it.
    pub fn start(config: InterceptConfig, shared: Shared) -> anyhow::Result<Enforcer> {
        let queue = Queue::open(&config).context("cannot bind the packet queue")?;
        let stopper = queue.stopper();
        let attributor =
            Attributor::new(AttributionConfig::default()).context("cannot start attribution")?;
        let thread = std::thread::Builder::new()
            .name("verdicts".into())
            .spawn(move || verdict_loop(queue, attributor, &shared))
            .context("cannot start the verdict thread")?;
        let mut enforcer = Enforcer {
            config,
            rules: None,
            stopper,
            thread: Some(thread),
        };
        match InstalledRules::install(&enforcer.config) {
            Ok(rules) => {
                tracing::info!(backend = ?rules.backend(), "firewall rules installed");
                enforcer.rules = Some(rules);
                Ok(enforcer)
            }
            Err(e) => {
                enforcer.stop();
                Err(e).context("cannot install the firewall rules")
            }
        }
    }

    /// Reinstalls the rules with a new fail-open choice (the rest of the configuration stays).
    pub fn set_fail_open(&mut self, fail_open: bool) -> anyhow::Result<()> {
        if self.config.fail_open == fail_open {
            return Ok(());
        }
        self.config.fail_open = fail_open;
        let rules = InstalledRules::install(&self.config).context("cannot reinstall the rules")?;
        // The old value's drop would remove the rules just installed (they share chain
        // names): forget it instead.
        if let Some(old) = self.rules.replace(rules) {
            std::mem::forget(old);
        }
        tracing::info!(fail_open, "firewall rules reinstalled");
        Ok(())
    }

    /// Makes live connections be decided again after a policy change: forgets the conntrack
    /// entries of connections we allowed, so their next packet is queued.
    pub fn redecide_live(&self) {
        match portcullis_intercept::forget_connections(&self.config, ForgetFilter::AllAllowed) {
            Ok(n) => tracing::debug!(connections = n, "live connections to decide again"),
            Err(e) => tracing::warn!(error = %e, "cannot make live connections be decided again"),
        }
    }

    /// Removes the rules, then stops the verdict thread.
    pub fn stop(&mut self) {
        if let Some(mut rules) = self.rules.take() {
            match rules.remove() {
                Ok(_) => tracing::info!("firewall rules removed"),
                Err(e) => tracing::error!(error = %e, "cannot remove the firewall rules"),
            }
        }
        self.stopper.stop();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the verdict thread panicked");
        }
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A name for people from an app identity.
fn app_name(app: &AppIdentity) -> String {
    match app {
        AppIdentity::Executable(p) | AppIdentity::AppImage(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.to_string_lossy().into_owned()),
        AppIdentity::Flatpak(id) => id.clone(),
        AppIdentity::Snap(name) => name.clone(),
    }
}

/// Most app keys remembered as "profile requested" before the set is cleared.
const REQUESTED_MAX: usize = 4096;

fn verdict_loop(mut queue: Queue, mut attributor: Attributor, shared: &Shared) {
    let mut requested: HashSet<String> = HashSet::new();
    loop {
        let pending = match queue.recv() {
            Ok(p) => p,
            Err(InterceptError::Stopped) => return,
            Err(e) => {
                tracing::error!(error = %e, "reading the packet queue failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let verdict = decide_pending(&pending, &mut attributor, shared, &mut requested);
        if let Err(e) = queue.verdict(pending, verdict) {
            tracing::debug!(error = %e, "cannot answer a packet");
        }
    }
}

fn decide_pending(
    pending: &Pending,
    attributor: &mut Attributor,
    shared: &Shared,
    requested: &mut HashSet<String>,
) -> Verdict {
    let packet = match pending.packet() {
        Ok(p) => p,
        Err(portcullis_intercept::PacketError::Unsupported(proto)) => {
            // Only TCP, UDP and ICMP are decided; other protocols (SCTP, GRE, …) pass.
            tracing::trace!(proto, "protocol not decided; allowed");
            return Verdict::Allow;
        }
        Err(e) => {
            tracing::debug!(error = %e, "unreadable packet; dropped");
            return Verdict::Drop;
        }
    };
    let direction = pending.direction().unwrap_or(Direction::Outbound);
    let (local, local_port, remote, remote_port) = match direction {
        Direction::Outbound => (packet.src, packet.src_port, packet.dst, packet.dst_port),
        Direction::Inbound => (packet.dst, packet.dst_port, packet.src, packet.src_port),
    };
    let attribution = match (local_port, remote_port) {
        (Some(lp), Some(rp)) => attributor.attribute(&Flow {
            protocol: packet.protocol,
            direction,
            local: SocketAddr::new(local, lp),
            remote: SocketAddr::new(remote, rp),
        }),
        _ => Attribution::NotFound,
    };
    let process: Option<&ProcessInfo> = match &attribution {
        Attribution::Process(p) => Some(p),
        _ => None,
    };
    let app = process.map_or_else(|| KERNEL_KEY.to_string(), |p| p.app.key());

    let snapshot = shared.policy.load();
    if let Some(p) = process
        && !snapshot.apps.contains_key(&app)
        && !requested.contains(&app)
    {
        if requested.len() >= REQUESTED_MAX {
            requested.clear();
        }
        requested.insert(app.clone());
        let new = NewApp {
            key: app.clone(),
            name: app_name(&p.app),
        };
        if shared.new_apps.try_send(new).is_err() {
            tracing::debug!("new-app queue full; the profile is made on a later connection");
            requested.remove(&app);
        }
    }
    let seen = Observed {
        direction,
        protocol: packet.protocol,
        remote,
        remote_port,
        local_port,
        app: &app,
    };
    // Prompts are answered through connected UIs; until the helper can hold a packet for an
    // answer, nobody can be asked and `ask` falls back at once.
    let (explanation, scope) = decide_observed(&snapshot, &seen, false);
    let verdict = match explanation.verdict {
        Verdict::Ask => Verdict::Block,
        v => v,
    };
    tracing::trace!(?verdict, "connection decided");
    let info = ConnectionInfo {
        id: shared.log.next_id(),
        unix_ms: crate::now_ms(),
        app,
        pid: process.map(|p| p.pid),
        direction,
        protocol: packet.protocol,
        local,
        local_port,
        remote,
        remote_port,
        domain: None,
        scope,
        explanation,
    };
    let _ = shared.events.send(Event::Connection {
        connection: info.clone(),
    });
    shared.log.record(info);
    verdict
}
