//! The running helper: binds the IPC socket, answers each authenticated client in its own
//! task, ends temporary rules on time, and stops cleanly on SIGTERM/SIGINT. Requests go to
//! `Service`; this module only moves frames and owns the tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use portcullis_intercept::InterceptConfig;
use portcullis_ipc::{Connection, FrameError, IpcError, Server, ServerConfig};
use portcullis_policy::resolve;
use portcullis_protocol::{
    AppKind, ClientFrame, EnforcementState, ErrorCode, ErrorFrame, Event, Reply, Request, Response,
    ServerFrame, SettingKey, SettingValue,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, watch};

use crate::enforce::{self, Enforcer, NewApp};
use crate::live::SharedPolicy;
use crate::service::Service;
use crate::state_lock::StateLock;
use crate::store::Store;
use crate::{Resolved, ensure_state_dir, now_ms};

/// Events buffered per subscriber before it is told it lagged.
const EVENT_BUFFER: usize = 1024;
/// New apps waiting for a profile before the verdict thread stops handing more over.
const NEW_APPS: usize = 1024;
/// Frames queued for one client before its reader waits.
const OUTBOX: usize = 256;
/// Longest wait for a client to take one frame before it is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most clients connected at once, and per uid: a member of the group must not be able to
/// use up the helper's file descriptors and keep everyone else (root too) out.
/// Root is exempt: members must never be able to lock root out.
const MAX_CLIENTS: u32 = 256;
const MAX_CLIENTS_PER_UID: u32 = 64;

type Shared = Arc<Mutex<Service>>;

/// Runs the helper until a stop signal; returns once everything it set up is undone.
pub fn run(resolved: &Resolved) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(resolved))
}

/// The gid allowed on the socket besides root; `None` (root only) when the group is missing.
fn resolve_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Some(group.gid.as_raw()),
        Ok(None) => {
            tracing::warn!(
                group = name,
                "group does not exist; only root may use the helper (create it with `groupadd --system {name}`)"
            );
            None
        }
        Err(e) => {
            tracing::warn!(group = name, error = %e, "cannot look up group; only root may use the helper");
            None
        }
    }
}

/// What a new settings database starts with (`[first_start]`): inbound connections stay
/// allowed for the listed executables that exist (the SSH server by default), as if the user
/// had set it. A failure is reported and changes nothing else.
fn first_start_settings(service: &mut Service, section: &crate::config::FirstStartSection) {
    for path in &section.allow_inbound {
        if !path.is_file() {
            continue;
        }
        let Some(app) = path.to_str() else { continue };
        let request = portcullis_protocol::Request::SetSetting {
            app: Some(app.to_owned()),
            key: portcullis_protocol::SettingKey::BlockInbound,
            value: Some(portcullis_protocol::SettingValue::Bool(false)),
        };
        match service.handle(request, now_ms(), 0) {
            Ok(_) => tracing::warn!(
                app,
                "first start: this app keeps accepting inbound connections, so that installing \
                 Portcullis locks no one out (undo: portcullisctl settings set --app {app} \
                 block_inbound true)"
            ),
            Err(e) => tracing::error!(app, error = %e.message, "first start: setting not made"),
        }
    }
}

async fn run_async(resolved: &Resolved) -> anyhow::Result<()> {
    let paths = &resolved.paths;
    // Stop signals are hooked first so that no signal between here and the loop is lost.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    ensure_state_dir(paths)?;
    let state_lock = StateLock::acquire(&paths.state_dir)?;
    for line in crate::recover::recover(resolved, Some(&state_lock))? {
        tracing::info!("{line} (left by an earlier run)");
    }
    let store = Store::open(&paths.settings_db())?;
    let first_start = store.created();
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let off = EnforcementState::Off {
        reason: "interception is disabled in the configuration ([intercept] enabled = false)"
            .to_string(),
    };
    let service: Shared = Arc::new(Mutex::new(Service::start(
        store,
        events.clone(),
        off,
        now_ms(),
    )?));

    if first_start {
        first_start_settings(&mut lock(&service), &resolved.first_start);
    }

    // History before anything decides, so the first connections are kept too. It is
    // expendable: a database that cannot be opened leaves history off, never enforcement.
    let recorder = lock(&service).connections().history();
    let history = if resolved.history.enabled {
        let policy = lock(&service).policy();
        match crate::history::History::start(&resolved.history, &paths.history_db(), policy) {
            Ok(h) => {
                recorder.attach(h.sender());
                Some(Arc::new(h))
            }
            Err(e) => {
                tracing::error!(error = %e, "the network history is off for this run");
                None
            }
        }
    } else {
        None
    };

    // Geo-IP and ASN before the first decision, so that country and ASN rules hold from the
    // first packet (about a second for the shipped data).
    // The newest installed signed update that still verifies, else the shipped data.
    let (geo, lists, installed) = {
        let dir = resolved.intel.data_dir.clone();
        let local = resolved.intel.lists.clone();
        let section = resolved.updates.clone();
        let state_dir = paths.state_dir.clone();
        tokio::task::spawn_blocking(move || {
            let installed = crate::updates::installed(&section, &state_dir, &dir);
            (
                load_geo(&installed.source),
                load_lists(&installed.source, local),
                installed,
            )
        })
        .await
        .context("loading the intelligence data failed")?
    };
    let updater = Arc::new(
        crate::updates::Updater::new(
            &resolved.updates,
            &paths.state_dir,
            installed,
            lists.clone(),
            geo.clone(),
        )
        .context("invalid [updates] configuration")?,
    );

    lock(&service).set_intel(geo.clone(), lists.clone());
    {
        // New lists or geo data: cached verdicts retired, live connections decided again.
        let service = Arc::downgrade(&service);
        updater.on_swap(move || {
            if let Some(service) = service.upgrade() {
                lock(&service).intel_changed();
            }
        });
    }
    let rates = Arc::new(crate::rates::Rates::default());
    let (new_apps, new_apps_rx) = mpsc::channel(NEW_APPS);
    let domains = Arc::new(crate::live::DomainMap::default());
    // The resolver first, so that queries redirected to it find it listening. A failure to
    // start it is logged, never a reason not to enforce.
    let dns = if resolved.dns.enabled {
        let policy = lock(&service).policy();
        // Only the mark bits matter to the resolver's socket hook.
        let firewall = resolved.intercept.enabled.then_some(InterceptConfig {
            queue_num: resolved.intercept.queue_num,
            mark_mask: resolved.intercept.mark_mask,
            ..InterceptConfig::default()
        });
        match crate::dns::Dns::start(
            &resolved.dns,
            policy,
            domains.clone(),
            firewall,
            recorder.clone(),
            lists.clone(),
        )
        .await
        {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "the DNS resolver is off");
                None
            }
        }
    } else {
        None
    };
    let dns_control = dns.as_ref().map(crate::dns::Dns::control);
    let enforcer: SharedEnforcer = Arc::new(Mutex::new(None));
    if resolved.intercept.enabled {
        let (policy, log, prompts, replies) = {
            let mut svc = lock(&service);
            (
                svc.policy(),
                svc.connections(),
                svc.prompts(),
                svc.take_prompt_replies(),
            )
        };
        let replies = replies.context("the prompt answers channel was already taken")?;
        let ebpf_cgroup = if resolved.attribution.ebpf {
            resolved
                .attribution
                .ebpf_cgroup
                .clone()
                .or_else(portcullis_attribution::cgroup2_mount)
        } else {
            None
        };
        let fast_path = resolved.intercept.fast_path;
        let config = InterceptConfig {
            queue_num: resolved.intercept.queue_num,
            mark_mask: resolved.intercept.mark_mask,
            fail_open: fail_open_setting(&policy),
            exclude_cgroup: None,
            dns_redirect: dns
                .as_ref()
                .and_then(|_| crate::dns::redirect_target(&resolved.dns)),
        };
        let shared = enforce::Shared {
            policy,
            log,
            prompts,
            events: events.clone(),
            new_apps,
            domains: domains.clone(),
            dns: dns.is_some(),
            geo,
            lists,
            rates: rates.clone(),
        };
        let started = tokio::task::spawn_blocking(move || {
            Enforcer::start(config, ebpf_cgroup, fast_path, shared, replies)
        })
        .await
        .context("the enforcement start-up failed")??;
        let started_how = started.attribution.clone();
        *enforcer.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);
        crate::recover::enable_accounting(&paths.state_dir);
        {
            let mut svc = lock(&service);
            svc.set_enforcement(EnforcementState::Enforcing);
            svc.set_attribution(started_how);
        }
        tracing::info!("enforcing");
    }
    let make_profiles = tokio::spawn(make_new_profiles(service.clone(), new_apps_rx));
    let changes = lock(&service).policy_changes();
    let follow_policy = tokio::spawn(follow_policy_changes(
        enforcer.clone(),
        service.clone(),
        changes.clone(),
    ));

    let group = resolve_group(&resolved.group);
    let server = Server::bind(ServerConfig {
        path: paths.socket.clone(),
        group,
        mode: if group.is_some() { 0o660 } else { 0o600 },
        max_frame_len: portcullis_protocol::MAX_FRAME_LEN,
    })
    .with_context(|| format!("cannot serve IPC on {}", paths.socket.display()))?;
    tracing::info!(
        socket = %paths.socket.display(),
        state_dir = %paths.state_dir.display(),
        pid = std::process::id(),
        "portcullisd ready"
    );
    // Interception, the resolver and the socket are all up: a unit ordered after this one
    // (Type=notify) may rely on them now.
    crate::notify::notify("READY=1");

    let scheduled_updates = updater.schedule();
    let local_lists = updater.follow_local_lists();
    let clients = Arc::new(Clients::default());
    let expiry = tokio::spawn(end_rules_on_time(service.clone(), changes));
    let evicted = tokio::spawn(forget_evicted_flows(enforcer.clone()));
    let result = loop {
        tokio::select! {
            accepted = server.accept() => match accepted {
                Ok(conn) => match ClientSlot::claim(&clients, conn.peer.uid) {
                    Some(slot) => {
                        tokio::spawn(serve_client(
                            conn,
                            slot,
                            service.clone(),
                            Parts {
                                events: events.clone(),
                                dns: dns_control.clone(),
                                history: history.clone(),
                                rates: rates.clone(),
                                updater: updater.clone(),
                            },
                        ));
                    }
                    None => {
                        tracing::warn!(uid = conn.peer.uid, "too many clients; refusing one");
                        tokio::spawn(async move {
                            let err = ErrorFrame::new(ErrorCode::PermissionDenied, "too many clients are connected to the helper; close some and retry");
                            let _ = conn.send_error_and_close(err).await;
                        });
                    }
                },

                Err(e) => break Err(anyhow::Error::new(e).context("IPC socket failed")),
            },
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break Ok(()); }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break Ok(()); }
        }
    };
    crate::notify::notify("STOPPING=1");
    expiry.abort();
    evicted.abort();
    if let Some(task) = local_lists {
        task.abort();
    }
    if let Some(task) = scheduled_updates {
        task.abort();
    }
    make_profiles.abort();
    follow_policy.abort();
    // Rules first, then the socket: traffic is never left queued to a helper that is gone.
    let stopping = enforcer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(mut e) = stopping {
        let _ = tokio::task::spawn_blocking(move || e.stop()).await;
    }
    crate::recover::restore_accounting(&paths.state_dir);
    if let Some(d) = dns {
        d.stop().await;
    }
    drop(server);
    if let Some(h) = &history {
        let s = h.stats();
        tracing::info!(
            written = s.written,
            lost = s.lost,
            not_recorded = s.not_recorded,
            failed = s.failed,
            "history at stop"
        );
    }
    tracing::info!("portcullisd stopped");
    result
}

/// Whether the resolver itself answers `request` (when it runs).
fn is_dns(request: &Request) -> bool {
    matches!(
        request,
        Request::DnsStatus | Request::DnsQuery { .. } | Request::DnsFlush
    )
}

/// The geo-IP and ASN data under `dir`; an empty database (country and ASN unknown) when it
/// cannot be read, with the reason logged.
fn load_geo(source: &crate::updates::DataSource) -> Arc<portcullis_intel::geo::LiveGeo> {
    let started = std::time::Instant::now();
    let files = source.geo_files();
    let db = match portcullis_intel::geo::GeoDb::load(&files) {
        Ok(db) => {
            let stats = db.stats();
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                asns = stats.asns,
                heap_bytes = stats.heap_bytes,
                "geo-IP and ASN data loaded"
            );
            db
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no geo-IP data: connections' country and ASN stay unknown, and country, \
                 continent and ASN rules match nothing (see [intel] data_dir)"
            );
            portcullis_intel::geo::GeoDb::empty()
        }
    };
    Arc::new(portcullis_intel::geo::LiveGeo::new(db))
}

/// The shipped filter lists of `source` and the local list files; what cannot be read is
/// logged and left out.
fn load_lists(
    source: &crate::updates::DataSource,
    local: Vec<crate::lists::LocalList>,
) -> Arc<crate::lists::Lists> {
    let started = std::time::Instant::now();
    let (lists, loaded) = crate::lists::Lists::load_from(source, local);
    let entries: usize = loaded.lists.iter().map(|l| l.domains).sum();
    let networks: usize = loaded.lists.iter().map(|l| l.networks).sum();
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        lists = loaded.lists.len(),
        entries,
        networks,
        version = source.version(),
        "filter lists loaded"
    );
    for (id, why) in &loaded.missing {
        tracing::warn!(list = %id, error = %why, "a filter list is not in force");
    }
    Arc::new(lists)
}

/// Whether the history answers `request` (when it is kept).
fn is_history(request: &Request) -> bool {
    matches!(
        request,
        Request::HistoryQuery { .. }
            | Request::HistoryTop { .. }
            | Request::HistoryBandwidth { .. }
            | Request::HistoryClear { .. }
    )
}

/// Answers a history request (queries may read many pages: never under the service lock).
fn history_request(h: &crate::history::History, request: Request) -> Reply {
    let answer = match request {
        Request::HistoryQuery {
            filter,
            after,
            limit,
        } => h.query(&filter, after, limit).map(Response::History),
        Request::HistoryTop {
            by,
            filter,
            by_bytes,
            limit,
        } => h
            .top(by, &filter, by_bytes, limit)
            .map(Response::HistoryTop),
        Request::HistoryBandwidth {
            app,
            since_ms,
            until_ms,
            bucket,
        } => app
            .as_deref()
            .map_or(Ok(()), crate::service::check_app_key)
            .and_then(|()| h.bandwidth(app.as_deref(), since_ms, until_ms, bucket))
            .map(Response::Bandwidth),
        Request::HistoryClear { app } => app
            .as_deref()
            .map_or(Ok(()), crate::service::check_app_key)
            .and_then(|()| h.clear(app))
            .map(|rows| Response::HistoryCleared { rows }),
        _ => Err(ErrorFrame::new(
            ErrorCode::Internal,
            "not a history request; nothing was changed",
        )),
    };
    match answer {
        Ok(r) => Reply::Ok(r),
        Err(e) => Reply::Err(e),
    }
}

/// Answers a DNS request from the running resolver (resolving may wait on the network, so it
/// never holds the service lock).
async fn dns_request(ctl: &crate::dns::DnsControl, request: Request) -> Reply {
    match request {
        Request::DnsStatus => Reply::Ok(Response::DnsStatus(Box::new(ctl.status()))),
        Request::DnsFlush => Reply::Ok(Response::DnsFlushed {
            entries: ctl.flush(),
        }),
        Request::DnsQuery { name, app } => match ctl.query(&name, app.as_deref()).await {
            Ok(answer) => Reply::Ok(Response::DnsAnswer(Box::new(answer))),
            Err(e) => Reply::Err(e),
        },
        _ => Reply::Err(ErrorFrame::new(
            ErrorCode::Internal,
            "not a DNS request; nothing was changed",
        )),
    }
}

/// Once a second, forgets in conntrack the allowed connections the table of live flows had
/// to push out (see `Enforcer::forget_evicted`).
async fn forget_evicted_flows(enforcer: SharedEnforcer) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let enforcer = enforcer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let guard = enforcer.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(e) = guard.as_ref() {
                let n = e.forget_evicted();
                if n > 0 {
                    tracing::debug!(
                        connections = n,
                        "connections pushed out of the table go back to the queue"
                    );
                }
            }
        })
        .await;
    }
}

/// Ends temporary rules when their time is up. It sleeps until the earliest end and wakes
/// early when a rule list changes, so an idle helper does not tick.
async fn end_rules_on_time(service: Shared, mut changes: watch::Receiver<u64>) {
    /// With temporary rules pending, look at the wall clock at least this often: the sleep
    /// runs on a monotonic clock that stops while the machine is suspended.
    const RECHECK: Duration = Duration::from_secs(5);
    loop {
        let wait = {
            let svc = lock(&service);
            let by_time = svc
                .next_expiry()
                .map(|t| Duration::from_millis(t.saturating_sub(now_ms())).min(RECHECK));
            if svc.has_process_rules() {
                Some(by_time.unwrap_or(RECHECK).min(RECHECK))
            } else {
                by_time
            }
        };
        let sleep = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(24 * 3600)));
        tokio::select! {
            () = sleep => {
                let svc = service.clone();
                // SQLite work stays off the async workers.
                let failed = tokio::task::spawn_blocking(move || lock(&svc).expire(now_ms()).err())
                    .await
                    .ok()
                    .flatten();
                if let Some(e) = failed {
                    tracing::error!("cannot end temporary rules; retrying in 10 s");
                    tracing::debug!(error = %e, "expiry failed");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The enforcer, shared with the task that follows policy changes.
type SharedEnforcer = Arc<Mutex<Option<Enforcer>>>;

/// The global `fail_open` setting in force.
fn fail_open_setting(policy: &Arc<SharedPolicy>) -> bool {
    let global = policy.load();
    matches!(
        resolve(SettingKey::FailOpen, None, &global.global.overrides).value,
        SettingValue::Bool(true)
    )
}

/// Makes profiles for apps the verdict thread met for the first time.
async fn make_new_profiles(service: Shared, mut apps: mpsc::Receiver<NewApp>) {
    while let Some(app) = apps.recv().await {
        let svc = service.clone();
        let _ = tokio::task::spawn_blocking(move || {
            lock(&svc).app_seen(&app.key, AppKind::Executable, &app.name, now_ms());
        })
        .await;
    }
}

/// After rule or setting changes (coalesced), makes the live connections the new policy
/// blocks be decided again, and applies a changed `fail_open` (queue rules and flag).
async fn follow_policy_changes(
    enforcer: SharedEnforcer,
    service: Shared,
    mut changes: watch::Receiver<u64>,
) {
    /// Changes within this window are handled together.
    const COALESCE: Duration = Duration::from_millis(50);
    while changes.changed().await.is_ok() {
        tokio::time::sleep(COALESCE).await;
        changes.borrow_and_update();
        let (enforcer, service) = (enforcer.clone(), service.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let mut guard = enforcer.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(e) = guard.as_mut() else { return };
            let policy = lock(&service).policy();
            if let Err(err) = e.set_fail_open(fail_open_setting(&policy)) {
                tracing::error!(error = %err, "cannot apply fail_open");
            }
            e.redecide_live(&policy.load());
        })
        .await;
    }
}

/// Locks the service; a panic in another task while holding it must not stop the helper.
fn lock(service: &Shared) -> std::sync::MutexGuard<'_, Service> {
    service
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts connected clients, in total and per uid.
#[derive(Debug, Default)]
pub struct Clients {
    per_uid: Mutex<HashMap<u32, u32>>,
    total: AtomicU32,
}

/// One connected client's place in the count; freed when the connection ends, however it
/// ends.
struct ClientSlot {
    clients: Arc<Clients>,
    uid: u32,
}

impl ClientSlot {
    /// A place for a client of `uid`, unless the limits are reached.
    fn claim(clients: &Arc<Clients>, uid: u32) -> Option<ClientSlot> {
        let mut per_uid = clients
            .per_uid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = per_uid.get(&uid).copied().unwrap_or(0);
        let full =
            clients.total.load(Ordering::Relaxed) >= MAX_CLIENTS || mine >= MAX_CLIENTS_PER_UID;
        if full && uid != 0 {
            // Nothing recorded for a refused client (no entry left behind for its uid).
            return None;
        }
        per_uid.insert(uid, mine + 1);
        clients.total.fetch_add(1, Ordering::Relaxed);
        Some(ClientSlot {
            clients: clients.clone(),
            uid,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut per_uid = self
            .clients
            .per_uid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_uid.remove(&self.uid);
            }
        }
        self.clients.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every client's task answers from, besides the service.
#[derive(Clone)]
struct Parts {
    events: broadcast::Sender<Event>,
    dns: Option<Arc<crate::dns::DnsControl>>,
    history: Option<Arc<crate::history::History>>,
    rates: Arc<crate::rates::Rates>,
    updater: Arc<crate::updates::Updater>,
}

async fn serve_client(conn: Connection, slot: ClientSlot, service: Shared, parts: Parts) {
    let Parts {
        events,
        dns,
        history,
        rates,
        updater,
    } = parts;
    let clients = slot.clients.clone();
    let peer = conn.peer;
    tracing::debug!(
        uid = peer.uid,
        pid = peer.pid,
        client = conn.client_name(),
        "client connected"
    );
    let (mut reader, mut writer) = conn.split();
    let (outbox, mut outgoing) = mpsc::channel::<ServerFrame>(OUTBOX);

    let writer_task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let last = matches!(frame, ServerFrame::Error(_));
            // A client that stops reading must not hold a task and its memory forever.
            let sent = match tokio::time::timeout(WRITE_TIMEOUT, writer.send(&frame)).await {
                Ok(Err(IpcError::Frame(FrameError::TooLarge { .. }))) => match &frame {
                    // Say so rather than drop the connection: the request itself worked.
                    ServerFrame::Response { id, .. } => {
                        let err = ErrorFrame::new(
                            ErrorCode::Internal,
                            "the answer is larger than one frame; narrow the request",
                        );
                        let reply = ServerFrame::Response {
                            id: *id,
                            reply: Reply::Err(err),
                        };
                        matches!(
                            tokio::time::timeout(WRITE_TIMEOUT, writer.send(&reply)).await,
                            Ok(Ok(()))
                        )
                    }
                    _ => true,
                },
                Ok(result) => result.is_ok(),
                Err(_) => false,
            };
            if !sent || last {
                break;
            }
        }
        writer.close();
    });

    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    // Counts this client as one who answers prompts, until it disconnects.
    let mut watcher: Option<crate::live::PromptWatcher> = None;
    loop {
        let frame = match reader.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(uid = peer.uid, error = %e, "bad frame; closing this connection");
                if let Some(frame) = e.to_error_frame() {
                    let _ = outbox.send(ServerFrame::Error(frame)).await;
                }
                break;
            }
        };
        let (id, request) = match frame {
            ClientFrame::Request { id, request } => (id, request),
            ClientFrame::Hello { .. } => {
                let err = ErrorFrame::new(ErrorCode::BadFrame, "unexpected second hello");
                let _ = outbox.send(ServerFrame::Error(err)).await;
                break;
            }
        };
        if request == Request::WatchPrompts && watcher.is_none() {
            watcher = Some(lock(&service).prompts().watch());
        }
        let reply = if request == Request::Subscribe || request == Request::WatchPrompts {
            if forwarder.is_none() {
                forwarder = Some(tokio::spawn(forward_events(
                    events.subscribe(),
                    outbox.clone(),
                )));
            }
            Reply::Ok(Response::Subscribed)
        } else if request == Request::UpdateStatus {
            Reply::Ok(Response::Updates(Box::new(updater.status())))
        } else if request == Request::UpdateCheck {
            if updater.enabled() {
                // The check runs in its own task: a client that goes away does not cut a
                // download short, and the next check waits for this one.
                let u = updater.clone();
                match tokio::spawn(async move { u.check().await }).await {
                    Ok(status) => Reply::Ok(Response::Updates(Box::new(status))),
                    Err(e) => {
                        tracing::error!(error = %e, "update check failed");
                        Reply::Err(ErrorFrame::new(
                            ErrorCode::Internal,
                            "the update check failed; the data in force is kept",
                        ))
                    }
                }
            } else {
                Reply::Err(ErrorFrame::new(
                    ErrorCode::InvalidInput,
                    "updates are off: set [updates] url and keys in the helper's configuration",
                ))
            }
        } else if let (Some(ctl), true) = (&dns, is_dns(&request)) {
            dns_request(ctl, request).await
        } else if request == Request::LiveRates {
            Reply::Ok(Response::Rates(rates.current()))
        } else if let (Some(h), true) = (&history, is_history(&request)) {
            let h = h.clone();
            match tokio::task::spawn_blocking(move || history_request(&h, request)).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::error!(error = %e, "history request failed");
                    Reply::Err(ErrorFrame::new(
                        ErrorCode::Internal,
                        "the helper failed to answer; nothing was changed",
                    ))
                }
            }
        } else {
            let svc = service.clone();
            let n = clients.total.load(Ordering::Relaxed);
            // SQLite writes wait for fsync: keep them off the async workers.
            match tokio::task::spawn_blocking(move || lock(&svc).handle(request, now_ms(), n)).await
            {
                Ok(Ok(response)) => Reply::Ok(response),
                Ok(Err(e)) => Reply::Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed");
                    Reply::Err(ErrorFrame::new(
                        ErrorCode::Internal,
                        "the helper failed to answer; nothing was changed",
                    ))
                }
            }
        };
        if outbox
            .send(ServerFrame::Response { id, reply })
            .await
            .is_err()
        {
            break;
        }
    }
    drop(watcher);
    if let Some(f) = forwarder {
        f.abort();
    }
    drop(outbox);
    let _ = writer_task.await;
    tracing::debug!(uid = peer.uid, pid = peer.pid, "client disconnected");
}

async fn forward_events(mut events: broadcast::Receiver<Event>, outbox: mpsc::Sender<ServerFrame>) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if outbox.send(ServerFrame::Event { event }).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_limits_hold_per_uid_and_in_total_and_never_lock_root_out() {
        let clients = Arc::new(Clients::default());
        let mut member: Vec<ClientSlot> = (0..MAX_CLIENTS_PER_UID)
            .map(|_| ClientSlot::claim(&clients, 1000).unwrap())
            .collect();
        assert!(
            ClientSlot::claim(&clients, 1000).is_none(),
            "the 65th client of one uid is refused"
        );
        // Another member still gets in; a slot freed is a slot reusable.
        let other = ClientSlot::claim(&clients, 1001).unwrap();
        member.pop();
        let again = ClientSlot::claim(&clients, 1000).unwrap();
        // Fill the total with other uids.
        let mut rest = Vec::new();
        let mut uid = 2000;
        while clients.total.load(Ordering::Relaxed) < MAX_CLIENTS {
            if let Some(slot) = ClientSlot::claim(&clients, uid) {
                rest.push(slot);
            } else {
                uid += 1;
            }
        }
        assert!(ClientSlot::claim(&clients, 5000).is_none(), "total reached");
        let root = ClientSlot::claim(&clients, 0);
        assert!(root.is_some(), "root is exempt from both limits");
        drop((member, other, again, rest, root));
        assert_eq!(clients.total.load(Ordering::Relaxed), 0);
        assert!(clients.per_uid.lock().unwrap().is_empty());
    }
}
