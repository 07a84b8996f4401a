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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use portcullis_attribution::{
    AppIdentity, Attribution, AttributionConfig, Attributor, FastDecision, FastEvent, FastEvents,
    FastMarks, FastPath, FastVerdict, Flow, KernelProcess, ProcessInfo, TrafficEvent,
};
use portcullis_intercept::{
    ForgetFilter, InstalledRules, InterceptConfig, InterceptError, Marks, Pending, Queue,
    QueueStopper,
};
use portcullis_policy::resolve;
use portcullis_protocol::{
    Action, ConnectionInfo, DecidedBy, Direction, Event, Explanation, ProfileLabel, PromptInfo,
    PromptOutcome, Protocol, SettingKey, SettingValue, Verdict,
};
use tokio::sync::{broadcast, mpsc};

use crate::live::{
    AppSlots, ConnectionLog, DomainMap, FlowKey, LiveFlows, OpenPrompt, PromptBoard, PromptReply,
    SharedPolicy,
};
use crate::store::KERNEL_KEY;
use crate::verdict::{Observed, Place, decide_observed};

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
    /// Prompts waiting for an answer, shared with the IPC side.
    pub prompts: Arc<PromptBoard>,
    /// Subscribers' events.
    pub events: broadcast::Sender<Event>,
    /// Apps that need a profile (handed off without waiting).
    pub new_apps: mpsc::Sender<NewApp>,
    /// The names each app looked addresses up by (filled by the DNS side).
    pub domains: Arc<DomainMap>,
    /// Whether the resolver runs: then a decision made without a name may change once the
    /// app looks one up, and the kernel repeats it only briefly.
    pub dns: bool,
    /// Country and ASN of addresses (empty when no data was loaded).
    pub geo: Arc<portcullis_intel::geo::LiveGeo>,
    /// The filter lists.
    pub lists: Arc<crate::lists::Lists>,
    /// Live bandwidth per app (filled by the rates thread).
    pub rates: Arc<crate::rates::Rates>,
}

/// The running enforcement: rules installed, verdict thread answering.
#[derive(Debug)]
pub struct Enforcer {
    /// How connections are attributed, for `status`.
    pub attribution: String,
    config: InterceptConfig,
    shared: Shared,
    rules: Option<InstalledRules>,
    stopper: QueueStopper,
    thread: Option<JoinHandle<()>>,
    /// The thread that logs connections the kernel decided (fast path), and its stop flag.
    fast_thread: Option<JoinHandle<()>>,
    fast_stop: Arc<AtomicBool>,
    /// The thread that records what ended connections carried (stops with `fast_stop`).
    traffic_thread: Option<JoinHandle<()>>,
    /// The thread that samples live rates (stops with `fast_stop`).
    rates_thread: Option<JoinHandle<()>>,
    /// The allowed connections a policy change decides again.
    flows: Arc<LiveFlows>,
}

impl Enforcer {
    /// Binds the queue, starts the verdict thread, then installs the rules that feed it, and
    /// then (with `fast_path` and eBPF) lets the kernel repeat cached decisions.
    pub fn start(
        config: InterceptConfig,
        ebpf_cgroup: Option<PathBuf>,
        fast_path: bool,
        shared: Shared,
        replies: Receiver<PromptReply>,
    ) -> anyhow::Result<Enforcer> {
        let queue = Queue::open(&config).context("cannot bind the packet queue")?;
        let stopper = queue.stopper();
        let (mut attributor, mut how) = start_attribution(ebpf_cgroup)?;
        let traffic = attributor.traffic();
        let fast = if fast_path {
            attributor.fast_path()
        } else {
            None
        };
        let slots = Arc::new(AppSlots::default());
        let flows = Arc::new(LiveFlows::default());
        let thread_shared = shared.clone();
        let thread_fast = fast.clone();
        let thread_slots = Arc::clone(&slots);
        let thread_flows = Arc::clone(&flows);
        let thread = std::thread::Builder::new()
            .name("verdicts".into())
            .spawn(move || {
                // A verdict thread that panicked would leave the queue unread while status
                // says "enforcing": stop the helper instead, so the service manager restarts
                // it (the rules stay; fail-open lets traffic pass meanwhile).
                let run = std::panic::AssertUnwindSafe(|| {
                    VerdictLoop::new(queue, attributor, thread_shared, replies)
                        .with_kernel_state(thread_fast, thread_slots, thread_flows)
                        .run();
                });
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("the verdict thread failed; stopping the helper");
                    std::process::exit(70);
                }
            })
            .context("cannot start the verdict thread")?;
        let mut enforcer = Enforcer {
            attribution: String::new(),
            config,
            shared,
            rules: None,
            stopper,
            thread: Some(thread),
            fast_thread: None,
            fast_stop: Arc::new(AtomicBool::new(false)),
            traffic_thread: None,
            rates_thread: None,
            flows,
        };
        {
            let rates = Arc::clone(&enforcer.shared.rates);
            let flows = Arc::clone(&enforcer.flows);
            let stop = Arc::clone(&enforcer.fast_stop);
            let config = enforcer.config.clone();
            let history = enforcer.shared.log.history();
            match std::thread::Builder::new()
                .name("rates".into())
                .spawn(move || crate::rates::run(&rates, &flows, &config, &history, &stop))
            {
                Ok(t) => enforcer.rates_thread = Some(t),
                Err(e) => tracing::warn!(error = %e, "live bandwidth is off"),
            }
        }
        if let Some(events) = traffic {
            let history = enforcer.shared.log.history();
            let flows = Arc::clone(&enforcer.flows);
            let stop = Arc::clone(&enforcer.fast_stop);
            match std::thread::Builder::new()
                .name("traffic".into())
                .spawn(move || record_traffic(events, &history, &flows, &stop))
            {
                Ok(t) => enforcer.traffic_thread = Some(t),
                Err(e) => tracing::warn!(error = %e, "bytes per connection are off"),
            }
        }
        match InstalledRules::install(&enforcer.config) {
            Ok(rules) => {
                tracing::info!(backend = ?rules.backend(), "firewall rules installed");
                enforcer.rules = Some(rules);
            }
            Err(e) => {
                enforcer.stop();
                return Err(e).context("cannot install the firewall rules");
            }
        }
        // Only now: a marked SYN passes because of the rules' mark rule.
        if let Some(fast) = fast {
            match enforcer.start_fast_path(fast, slots) {
                Ok(()) => how.push_str("; decisions cached in the kernel (fast path)"),
                Err(e) => {
                    tracing::warn!(error = %e, "the fast path is off");
                    how.push_str("; fast path off");
                }
            }
        } else if fast_path {
            how.push_str("; fast path off (needs eBPF)");
        }
        enforcer.attribution = how;
        Ok(enforcer)
    }

    /// Turns the kernel's decision cache on and starts logging what it decides.
    fn start_fast_path(&mut self, fast: FastPath, slots: Arc<AppSlots>) -> anyhow::Result<()> {
        let marks = Marks::from_mask(self.config.mark_mask).context("bad mark mask")?;
        let events = fast
            .take_events()
            .context("the fast path's reports were already taken")?;
        let marks = FastMarks {
            mask: marks.mask,
            allow: marks.allow,
        };
        self.shared
            .policy
            .attach_fast_path(fast, marks)
            .context("cannot turn the fast path on")?;
        let shared = self.shared.clone();
        let stop = Arc::clone(&self.fast_stop);
        let flows = Arc::clone(&self.flows);
        let firewall = self.config.clone();
        let thread = std::thread::Builder::new()
            .name("fast-path-log".into())
            .spawn(move || log_fast_events(events, &shared, &slots, &flows, &firewall, &stop))
            .context("cannot start the fast path's log thread")?;
        self.fast_thread = Some(thread);
        tracing::info!("fast path on: cached decisions are repeated in the kernel");
        Ok(())
    }

    /// Applies a new fail-open choice: the queue rules are switched in place
    /// (`--queue-bypass`) and the queue's own flag follows; nothing else changes.
    pub fn set_fail_open(&mut self, fail_open: bool) -> anyhow::Result<()> {
        if self.config.fail_open == fail_open {
            return Ok(());
        }
        let wanted = InterceptConfig {
            fail_open,
            ..self.config.clone()
        };
        if let Some(rules) = &self.rules {
            rules
                .set_fail_open(&wanted)
                .context("cannot switch the queue rules")?;
        }
        self.stopper.set_fail_open(fail_open);
        self.config = wanted;
        tracing::info!(fail_open, "fail-open choice applied");
        Ok(())
    }

    /// Forgets in conntrack the allowed connections the full table of live flows pushed out,
    /// so their next packet is queued, decided and recorded again: a flood of connections can
    /// push a flow out of the table, never out of re-decision. Returns how many went.
    pub fn forget_evicted(&self) -> usize {
        let mut n = 0;
        for key in self.flows.take_evicted() {
            let filter = ForgetFilter::AllowedFlow {
                protocol: key.protocol,
                src: key.src,
                dst: key.dst,
            };
            match portcullis_intercept::forget_connections(&self.config, filter) {
                Ok(k) => n += k,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot forget a connection pushed out of the table");
                    break;
                }
            }
        }
        n
    }

    /// After a policy change: decides every live allowed connection again with `snapshot`
    /// (those the verdict path and the fast path allowed while the helper runs, pruned against
    /// conntrack first when the table fills), and forgets the conntrack entries of those it
    /// now blocks, so their next packet is queued and refused. Connections still allowed are
    /// left alone.
    pub fn redecide_live(&self, snapshot: &crate::store::Snapshot) {
        if self.flows.len() > LiveFlows::MAX / 4 {
            match portcullis_intercept::allowed_connections(&self.config) {
                // Only a complete list says which flows are gone.
                Ok(live) if live.len() < LiveFlows::MAX => {
                    let live: HashSet<FlowKey> = live
                        .into_iter()
                        .map(|c| FlowKey {
                            protocol: c.protocol,
                            src: c.src,
                            dst: c.dst,
                        })
                        .collect();
                    self.flows.retain(&live);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot list the live connections"),
            }
        }
        let mut cuts = 0;
        let now = Instant::now();
        for (key, flow) in self.flows.snapshot() {
            let domain = self.shared.domains.lookup(&flow.app, flow.remote.ip(), now);
            let observed = Observed {
                direction: flow.direction,
                protocol: key.protocol,
                remote: flow.remote.ip(),
                remote_port: Some(flow.remote.port()),
                local_port: Some(flow.local.port()),
                app: &flow.app,
                domain: domain.as_ref().map(|(d, _)| &**d),
                place: Place::of(&self.shared.geo.load(), flow.remote.ip()),
            };
            // `ask` is no reason to cut a connection someone allowed (e.g. "once"): only a
            // block or drop of the policy itself is.
            let (now, _) = decide_observed(snapshot, &self.shared.lists, &observed, true);
            if matches!(now.verdict, Verdict::Allow | Verdict::Ask) {
                continue;
            }
            let filter = ForgetFilter::AllowedFlow {
                protocol: key.protocol,
                src: key.src,
                dst: key.dst,
            };
            match portcullis_intercept::forget_connections(&self.config, filter) {
                // Kept either way: a cut connection may come back (its next packet is queued
                // and decided), and one found gone is pruned with the next complete list.
                Ok(n) => cuts += n,
                Err(e) => tracing::warn!(error = %e, "cannot re-decide a live connection"),
            }
        }
        if cuts > 0 {
            tracing::debug!(connections = cuts, "live connections to decide again");
        }
    }

    /// Turns the fast path off, removes the rules, then stops the verdict thread.
    pub fn stop(&mut self) {
        self.shared.policy.detach_fast_path();
        self.fast_stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.fast_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the fast path's log thread panicked");
        }
        if let Some(thread) = self.traffic_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the traffic thread panicked");
        }
        if let Some(thread) = self.rates_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the rates thread panicked");
        }
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

/// Logs the connections the kernel decided from its cache, as the verdict thread logs the
/// others, until `stop`. Off the verdict path: a slow subscriber never delays a decision.
fn log_fast_events(
    mut events: FastEvents,
    shared: &Shared,
    slots: &AppSlots,
    flows: &LiveFlows,
    firewall: &InterceptConfig,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(event) = events.next(Duration::from_millis(250)) else {
            continue;
        };
        let Some(app) = slots.key(event.app) else {
            tracing::debug!(
                app = event.app,
                "fast-path report for an unknown app number"
            );
            continue;
        };
        let allowed = match (event.verdict, event.local) {
            (FastVerdict::Allow, Some(local)) => Some((
                FlowKey {
                    protocol: event.protocol,
                    src: local,
                    dst: event.remote,
                },
                local,
                app.clone(),
            )),
            _ => None,
        };
        let (info, now_blocked) = fast_connection(shared, &event, app);
        if now_blocked && let (FastVerdict::Allow, Some(local)) = (event.verdict, event.local) {
            // Allowed in the kernel under a policy that changed since (the change's own
            // re-decision may have run before this report came): decide it again now.
            let filter = ForgetFilter::AllowedFlow {
                protocol: event.protocol,
                src: local,
                dst: event.remote,
            };
            if let Err(e) = portcullis_intercept::forget_connections(firewall, filter) {
                tracing::warn!(error = %e, "cannot re-decide a connection the kernel allowed");
            }
        }
        publish(shared, info);
        // Only after its record: what the connection carried (reported when it ends, perhaps
        // before this report was read) is matched through this table, and must find the
        // connection's row already on its way to history.
        if let Some((key, local, app)) = allowed {
            flows.insert(key, &app, Direction::Outbound, local);
        }
    }
}

/// Until `stop`, gives history what each ended connection carried, by the app that the
/// table of live connections names for it (connections it never allowed carried nothing).
fn record_traffic(
    mut events: portcullis_attribution::TrafficEvents,
    history: &crate::history::Recorder,
    flows: &LiveFlows,
    stop: &AtomicBool,
) {
    // A connection the kernel allowed (fast path) joins the table when its report is read,
    // which may come after its end: such ends wait a little for it.
    const WAIT: Duration = Duration::from_secs(2);
    const MAX_WAITING: usize = 4096;
    let mut waiting: std::collections::VecDeque<(std::time::Instant, TrafficEvent)> =
        std::collections::VecDeque::new();
    let mut retried = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Everything the ring holds now, then the waiting ends at most every 100 ms: a flood
        // of reports never costs a pass over the waiting ones each.
        let mut fresh = Vec::new();
        if let Some(first) = events.next(Duration::from_millis(100)) {
            fresh.push(first);
            while fresh.len() < 4096 {
                match events.next(Duration::ZERO) {
                    Some(e) => fresh.push(e),
                    None => break,
                }
            }
        }
        if !history.is_on() {
            waiting.clear();
            continue;
        }
        let now = std::time::Instant::now();
        let mut pending: Vec<(std::time::Instant, TrafficEvent)> =
            fresh.into_iter().map(|e| (now + WAIT, e)).collect();
        if now.duration_since(retried) >= Duration::from_millis(100) {
            retried = now;
            pending.extend(waiting.drain(..));
        }
        for (until, event) in pending {
            match flows.app_at(event.protocol, event.local, event.remote) {
                Some(app) => {
                    tracing::trace!(
                        local = %event.local,
                        remote = %event.remote,
                        bytes_out = event.bytes_out,
                        bytes_in = event.bytes_in,
                        "traffic of an ended connection"
                    );
                    history.traffic(&app, &event);
                }
                None if until > now && waiting.len() < MAX_WAITING => {
                    waiting.push_back((until, event));
                }
                None => tracing::trace!(
                    local = %event.local,
                    remote = %event.remote,
                    "traffic of a connection no app is known for"
                ),
            }
        }
    }
}

/// Tells subscribers (if any: no copy is made for nobody) and records a decided connection.
fn publish(shared: &Shared, info: ConnectionInfo) {
    if shared.events.receiver_count() > 0 {
        let _ = shared.events.send(Event::Connection {
            connection: Box::new(info.clone()),
        });
    }
    shared.log.record(info);
}

/// A connection the kernel decided, as the log and subscribers see it: the policy's
/// explanation for it now, with the kernel's verdict; and whether the policy now blocks it.
fn fast_connection(shared: &Shared, event: &FastEvent, app: String) -> (ConnectionInfo, bool) {
    let verdict = match event.verdict {
        FastVerdict::Allow => Verdict::Allow,
        FastVerdict::Block => Verdict::Block,
    };
    let snapshot = shared.policy.load();
    let domain = shared
        .domains
        .lookup(&app, event.remote.ip(), Instant::now())
        .map(|(d, _)| d);
    let place = Place::of(&shared.geo.load(), event.remote.ip());
    let seen = Observed {
        direction: Direction::Outbound,
        protocol: event.protocol,
        remote: event.remote.ip(),
        remote_port: Some(event.remote.port()),
        local_port: event.local.map(|l| l.port()),
        app: &app,
        domain: domain.as_deref(),
        place,
    };
    let (mut explanation, scope) = decide_observed(&snapshot, &shared.lists, &seen, true);
    let now_blocked = matches!(explanation.verdict, Verdict::Block | Verdict::Drop);
    if explanation.verdict != verdict {
        // The policy changed since the kernel decided (a moment's race): say what happened.
        explanation = Explanation {
            verdict,
            decided_by: explanation.decided_by,
            summary: format!(
                "{} by a decision cached in the kernel just before the policy changed",
                if verdict == Verdict::Allow {
                    "allowed"
                } else {
                    "blocked"
                }
            ),
        };
    }
    let local = event.local.map_or_else(
        || match event.remote {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
        |l| l.ip(),
    );
    let info = ConnectionInfo {
        id: shared.log.next_id(),
        unix_ms: crate::now_ms(),
        app,
        pid: Some(event.process.pid),
        direction: Direction::Outbound,
        protocol: event.protocol,
        local,
        local_port: event.local.map(|l| l.port()),
        remote: event.remote.ip(),
        remote_port: Some(event.remote.port()),
        domain: domain.map(|d| d.to_string()),
        country: place.country_text(),
        asn: place.asn,
        scope,
        explanation,
        decided_in_kernel: true,
    };
    (info, now_blocked)
}

/// Starts attribution: with eBPF on `ebpf_cgroup` when given, falling back to sock_diag and
/// /proc (with a warning) when the programs cannot be attached. Returns how it attributes.
fn start_attribution(ebpf_cgroup: Option<PathBuf>) -> anyhow::Result<(Attributor, String)> {
    if let Some(cgroup) = ebpf_cgroup {
        let config = AttributionConfig {
            ebpf_cgroup: Some(cgroup.clone()),
            ..AttributionConfig::default()
        };
        match Attributor::new(config) {
            Ok(a) => {
                tracing::info!(cgroup = %cgroup.display(), "eBPF attribution attached");
                return Ok((
                    a,
                    format!(
                        "eBPF on cgroup {}, then sock_diag and /proc",
                        cgroup.display()
                    ),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "eBPF attribution unavailable; using sock_diag and /proc");
                let a = Attributor::new(AttributionConfig::default())
                    .context("cannot start attribution")?;
                return Ok((a, format!("sock_diag and /proc (eBPF unavailable: {e})")));
            }
        }
    }
    let a = Attributor::new(AttributionConfig::default()).context("cannot start attribution")?;
    Ok((a, "sock_diag and /proc (eBPF off)".to_string()))
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

/// How long the kernel repeats a decision made without a name while the resolver runs.
const UNNAMED_DECISION_LIFETIME: Duration = Duration::from_secs(30);
/// Most app keys remembered as "profile requested" before the set is cleared.
const REQUESTED_MAX: usize = 4096;
/// Bounds on held packets: prompts open at once, per app, and packets merged into one.
const MAX_PROMPTS: usize = 256;
const MAX_PROMPTS_PER_APP: usize = 16;
const MAX_PACKETS_PER_PROMPT: usize = 32;
/// Packets held in all prompts together: well below the kernel queue's 4096, which held
/// packets count against (a full queue would let everything pass undecided, or drop it).
const MAX_HELD_PACKETS: usize = 1024;
/// How often the loop looks for answers and expired prompts while prompts are open.
const PROMPT_TICK: Duration = Duration::from_millis(20);

/// What identifies "the same connection attempt" for merging prompts: retries of one
/// connection, and parallel attempts of one app to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MergeKey {
    app: String,
    direction: Direction,
    protocol: Protocol,
    remote: IpAddr,
    port: Option<u16>,
}

/// A prompt and the packets waiting on it.
struct Held {
    key: MergeKey,
    info: PromptInfo,
    local_port: Option<u16>,
    remote_port: Option<u16>,
    packets: Vec<Pending>,
    /// The logged connections waiting on it (and their conntrack tuples), settled with its
    /// outcome.
    connections: Vec<(u64, Option<(FlowKey, SocketAddr)>)>,
    deadline: Instant,
}

/// The verdict thread's state.
struct VerdictLoop {
    queue: Queue,
    attributor: Attributor,
    shared: Shared,
    replies: Receiver<PromptReply>,
    requested: HashSet<String>,
    /// The policy generation `requested` belongs to: a new one (e.g. a profile forgotten to
    /// make room) may need the profile again.
    requested_in: u64,
    held: HashMap<u64, Held>,
    /// The snapshot held prompts were last decided with.
    decided_with: Option<Arc<crate::store::Snapshot>>,
    /// The kernel's decision cache, and the app numbers it stores.
    fast: Option<FastPath>,
    slots: Arc<AppSlots>,
    flows: Arc<LiveFlows>,
}

/// What to do with a packet.
enum Outcome {
    Answer(Verdict),
    /// Ask: the packet waits on this prompt.
    Hold(Box<Ask>),
}

/// A prompt to open (or merge into) for a packet.
struct Ask {
    key: MergeKey,
    info: PromptInfo,
    local_port: Option<u16>,
    remote_port: Option<u16>,
    start_time: Option<u64>,
    /// The logged connection (its verdict still `ask`), and its conntrack tuple with the
    /// local end.
    connection: u64,
    flow: Option<(FlowKey, SocketAddr)>,
}

impl VerdictLoop {
    fn new(
        queue: Queue,
        attributor: Attributor,
        shared: Shared,
        replies: Receiver<PromptReply>,
    ) -> VerdictLoop {
        VerdictLoop {
            queue,
            attributor,
            shared,
            replies,
            requested: HashSet::new(),
            requested_in: 0,
            held: HashMap::new(),
            decided_with: None,
            fast: None,
            slots: Arc::new(AppSlots::default()),
            flows: Arc::new(LiveFlows::default()),
        }
    }

    fn with_kernel_state(
        mut self,
        fast: Option<FastPath>,
        slots: Arc<AppSlots>,
        flows: Arc<LiveFlows>,
    ) -> VerdictLoop {
        self.fast = fast;
        self.slots = slots;
        self.flows = flows;
        self
    }

    /// Hands a decision to the kernel's cache, so the app's next connection to the same
    /// destination is decided at `connect()`: only a plain allow or block (not an answer that
    /// stood in for a prompt nobody could see) of a new outbound connection by a process eBPF
    /// named.
    fn cache_in_kernel(
        &self,
        kernel: Option<KernelProcess>,
        app: &str,
        seen: &Observed<'_>,
        explanation: &Explanation,
        generation: u64,
        valid_for: Option<Duration>,
    ) {
        let (Some(fast), Some(process), Some(port)) = (&self.fast, kernel, seen.remote_port) else {
            return;
        };
        let verdict = match explanation.verdict {
            Verdict::Allow => FastVerdict::Allow,
            Verdict::Block => FastVerdict::Block,
            Verdict::Drop | Verdict::Ask => return,
        };
        if seen.direction != Direction::Outbound
            || matches!(
                explanation.decided_by,
                DecidedBy::Setting {
                    key: SettingKey::PromptFallback,
                    ..
                }
            )
        {
            return;
        }
        let Some(slot) = self.slots.slot(app) else {
            return;
        };
        let remote = SocketAddr::new(seen.remote, port);
        let remembered = fast.remember(&FastDecision {
            process,
            app: slot,
            protocol: seen.protocol,
            remote,
            verdict,
            generation,
            valid_for,
        });
        if let Err(e) = remembered {
            tracing::debug!(error = %e, "cannot cache a decision in the kernel");
        }
    }

    fn run(mut self) {
        loop {
            let wait = if self.held.is_empty() {
                Duration::from_secs(1)
            } else {
                PROMPT_TICK
            };
            match self.queue.recv_timeout(wait) {
                Ok(Some(pending)) => self.take(pending),
                Ok(None) => {}
                Err(InterceptError::Stopped) => {
                    self.release_all();
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the packet queue failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if !self.held.is_empty() {
                self.answers();
                if !self.shared.prompts.can_ask() {
                    // The last client that answers prompts is gone: nobody will answer.
                    self.release_all();
                }
                self.timeouts();
                self.redecide_held();
            }
        }
    }

    fn answer(&mut self, pending: Pending, verdict: Verdict) {
        if let Err(e) = self.queue.verdict(pending, verdict) {
            tracing::debug!(error = %e, "cannot answer a packet");
        }
    }

    fn take(&mut self, pending: Pending) {
        match self.decide(&pending) {
            Outcome::Answer(v) => self.answer(pending, v),
            Outcome::Hold(ask) => self.hold(pending, *ask),
        }
    }

    /// Puts a packet on its prompt: merged with an open one for the same app and destination,
    /// or a new prompt within the bounds; otherwise the fallback decides at once.
    fn hold(&mut self, pending: Pending, ask: Ask) {
        let Ask {
            key,
            info,
            local_port,
            remote_port,
            start_time,
            connection,
            flow,
        } = ask;
        let held_packets: usize = self.held.values().map(|h| h.packets.len()).sum();
        if held_packets >= MAX_HELD_PACKETS {
            tracing::debug!("too many held packets; the fallback decides");
            let fallback = info.fallback;
            self.settle(
                (connection, flow),
                &key,
                fallback,
                "too many connections wait for answers, so prompt_fallback decided",
            );
            return self.answer(pending, fallback);
        }
        if let Some(h) = self.held.values_mut().find(|h| h.key == key) {
            if h.packets.len() < MAX_PACKETS_PER_PROMPT {
                h.packets.push(pending);
                h.connections.push((connection, flow));
                h.info.waiting = u32::try_from(h.packets.len()).unwrap_or(u32::MAX);
                if let Some(mut open) = self.shared.prompts.get(h.info.id) {
                    open.info.waiting = h.info.waiting;
                    self.shared.prompts.put(open);
                }
                return;
            }
            // More retries of a connection that waits: dropped quietly, so neither the
            // fallback nor a reject runs ahead of the user's answer.
            self.settle(
                (connection, flow),
                &key,
                Verdict::Drop,
                "a retry while earlier attempts wait for the answer, dropped",
            );
            return self.answer(pending, Verdict::Drop);
        }
        let per_app = self.held.values().filter(|h| h.key.app == key.app).count();
        if self.held.len() >= MAX_PROMPTS || per_app >= MAX_PROMPTS_PER_APP {
            tracing::debug!("too many open prompts; the fallback decides");
            let fallback = info.fallback;
            self.settle(
                (connection, flow),
                &key,
                fallback,
                "too many prompts are open, so prompt_fallback decided",
            );
            return self.answer(pending, fallback);
        }
        let timeout =
            Duration::from_millis(info.expires_unix_ms.saturating_sub(info.created_unix_ms));
        self.shared.prompts.put(OpenPrompt {
            info: info.clone(),
            start_time,
        });
        let _ = self.shared.events.send(Event::PromptAdded {
            prompt: info.clone(),
        });
        tracing::debug!(prompt = info.id, "asking");
        self.held.insert(
            info.id,
            Held {
                key,
                info,
                local_port,
                remote_port,
                packets: vec![pending],
                connections: vec![(connection, flow)],
                deadline: Instant::now() + timeout,
            },
        );
    }

    /// Ends a prompt: every packet on it gets `verdict`, the board and subscribers are told.
    fn close(&mut self, id: u64, verdict: Verdict, outcome: PromptOutcome) {
        let Some(held) = self.held.remove(&id) else {
            return;
        };
        self.shared.prompts.remove(id);
        for p in held.packets {
            self.answer(p, verdict);
        }
        let how = match outcome {
            PromptOutcome::Answered { .. } => "the prompt was answered",
            PromptOutcome::DecidedByPolicy { .. } => "a policy change decided it while it waited",
            PromptOutcome::TimedOut { .. } => {
                "no answer came in time (or nobody was left to answer), so prompt_fallback decided"
            }
        };
        for c in held.connections {
            self.settle(c, &held.key, verdict, how);
        }
        let _ = self.shared.events.send(Event::PromptClosed { id, outcome });
    }

    /// Records how a connection that was asked about ended, and tells subscribers; an allowed
    /// one joins the live connections that policy changes decide again.
    fn settle(
        &self,
        (connection, flow): (u64, Option<(FlowKey, SocketAddr)>),
        key: &MergeKey,
        verdict: Verdict,
        how: &str,
    ) {
        if let Some(info) = self.shared.log.settle(connection, verdict, how)
            && self.shared.events.receiver_count() > 0
        {
            let _ = self.shared.events.send(Event::Connection {
                connection: Box::new(info),
            });
        }
        // After its record (see `decide`).
        if let (Verdict::Allow, Some((flow, local))) = (verdict, flow) {
            self.flows.insert(flow, &key.app, key.direction, local);
        }
    }

    fn answers(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            let verdict = if reply.allow {
                Verdict::Allow
            } else {
                Verdict::Block
            };
            self.close(
                reply.id,
                verdict,
                PromptOutcome::Answered { allow: reply.allow },
            );
        }
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let due: Vec<(u64, Verdict)> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(id, h)| (*id, h.info.fallback))
            .collect();
        for (id, verdict) in due {
            tracing::debug!(prompt = id, "prompt timed out");
            let allow = verdict == Verdict::Allow;
            self.close(id, verdict, PromptOutcome::TimedOut { allow });
        }
    }

    /// After a policy change (e.g. the rule an answer made), prompts the new policy decides are
    /// closed with its verdict.
    fn redecide_held(&mut self) {
        let snapshot = self.shared.policy.load();
        if self
            .decided_with
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &snapshot))
        {
            return;
        }
        self.decided_with = Some(snapshot.clone());
        let decided: Vec<(u64, Verdict)> = self
            .held
            .iter()
            .filter_map(|(id, h)| {
                let domain = self
                    .shared
                    .domains
                    .lookup(&h.key.app, h.key.remote, Instant::now());
                let seen = Observed {
                    direction: h.key.direction,
                    protocol: h.key.protocol,
                    remote: h.key.remote,
                    remote_port: h.remote_port,
                    local_port: h.local_port,
                    app: &h.key.app,
                    domain: domain.as_ref().map(|(d, _)| &**d),
                    place: Place::of(&self.shared.geo.load(), h.key.remote),
                };
                let (e, _) = decide_observed(&snapshot, &self.shared.lists, &seen, true);
                (e.verdict != Verdict::Ask).then_some((*id, e.verdict))
            })
            .collect();
        for (id, verdict) in decided {
            let allow = verdict == Verdict::Allow;
            self.close(id, verdict, PromptOutcome::DecidedByPolicy { allow });
        }
    }

    /// At stop: held packets get their fallback rather than waiting in a closed queue.
    fn release_all(&mut self) {
        let ids: Vec<(u64, Verdict)> = self
            .held
            .iter()
            .map(|(id, h)| (*id, h.info.fallback))
            .collect();
        for (id, verdict) in ids {
            let allow = verdict == Verdict::Allow;
            self.close(id, verdict, PromptOutcome::TimedOut { allow });
        }
    }

    /// Decides one packet; for `Hold`, also what its prompt is.
    fn decide(&mut self, pending: &Pending) -> Outcome {
        let shared = &self.shared;
        let packet = match pending.packet() {
            Ok(p) => p,
            Err(portcullis_intercept::PacketError::Unsupported(proto)) => {
                // Only TCP, UDP and ICMP are decided; other protocols (SCTP, GRE, …) pass.
                tracing::trace!(proto, "protocol not decided; allowed");
                return Outcome::Answer(Verdict::Allow);
            }
            Err(e) => {
                tracing::debug!(error = %e, "unreadable packet; dropped");
                return Outcome::Answer(Verdict::Drop);
            }
        };
        let hook = pending.direction().unwrap_or(Direction::Outbound);
        // A TCP packet without SYN is the middle of a connection whose tracking entry was
        // deleted (a re-decision). Which side opened it is what the table of live connections
        // says; a connection it does not know (opened before this helper ran) is taken to be
        // one opened the other way round, as the usual first packet after the deletion is the
        // server's data of our download arriving at INPUT.
        let direction = match (
            packet.protocol,
            packet.tcp_syn,
            packet.src_port,
            packet.dst_port,
        ) {
            (Protocol::Tcp, false, Some(sp), Some(dp)) => {
                let (a, b) = (
                    SocketAddr::new(packet.src, sp),
                    SocketAddr::new(packet.dst, dp),
                );
                self.flows
                    .direction_of(Protocol::Tcp, a, b)
                    .unwrap_or(match hook {
                        Direction::Inbound => Direction::Outbound,
                        Direction::Outbound => Direction::Inbound,
                    })
            }
            _ => hook,
        };
        let (local, local_port, remote, remote_port) = match hook {
            Direction::Outbound => (packet.src, packet.src_port, packet.dst, packet.dst_port),
            Direction::Inbound => (packet.dst, packet.dst_port, packet.src, packet.src_port),
        };
        // The conntrack tuple this packet creates: its own addresses, whatever the direction
        // of the connection (a re-decided TCP stream can restart from either end).
        let flow = match (
            packet.protocol,
            packet.src_port,
            packet.dst_port,
            local_port,
        ) {
            (Protocol::Tcp | Protocol::Udp, Some(sp), Some(dp), Some(lp)) => Some((
                FlowKey {
                    protocol: packet.protocol,
                    src: SocketAddr::new(packet.src, sp),
                    dst: SocketAddr::new(packet.dst, dp),
                },
                SocketAddr::new(local, lp),
            )),
            _ => None,
        };
        let (attribution, kernel) = match (local_port, remote_port) {
            (Some(lp), Some(rp)) => {
                let found = self.attributor.attribute_flow(&Flow {
                    protocol: packet.protocol,
                    direction,
                    local: SocketAddr::new(local, lp),
                    remote: SocketAddr::new(remote, rp),
                });
                (found.attribution, found.kernel)
            }
            // An echo request this machine sends: from a ping socket, whose "port" is the echo
            // id (raw sockets stay unattributed, under the kernel profile).
            _ if packet.protocol == Protocol::Icmp && hook == Direction::Outbound => {
                match packet.icmp_id {
                    Some(id) => {
                        let found = self.attributor.attribute_flow(&Flow {
                            protocol: Protocol::Icmp,
                            direction,
                            local: SocketAddr::new(local, id),
                            remote: SocketAddr::new(remote, 0),
                        });
                        (found.attribution, found.kernel)
                    }
                    None => (Attribution::NotFound, None),
                }
            }
            _ => (Attribution::NotFound, None),
        };
        let process: Option<&ProcessInfo> = match &attribution {
            Attribution::Process(p) => Some(p),
            _ => None,
        };
        let app = process.map_or_else(
            || KERNEL_KEY.to_string(),
            |p| crate::verdict::profile_key(p.app.key()),
        );

        let (snapshot, generation) = shared.policy.load_with_generation();
        if generation != self.requested_in {
            self.requested.clear();
            self.requested_in = generation;
        }
        if let Some(p) = process
            && !snapshot.apps.contains_key(&app)
            && !self.requested.contains(&app)
        {
            if self.requested.len() >= REQUESTED_MAX {
                self.requested.clear();
            }
            self.requested.insert(app.clone());
            let new = NewApp {
                key: app.clone(),
                name: app_name(&p.app),
            };
            if shared.new_apps.try_send(new).is_err() {
                tracing::debug!("new-app queue full; the profile is made on a later connection");
                self.requested.remove(&app);
            }
        }
        let domain = shared.domains.lookup(&app, remote, Instant::now());
        let place = Place::of(&shared.geo.load(), remote);
        let seen = Observed {
            direction,
            protocol: packet.protocol,
            remote,
            remote_port,
            local_port,
            app: &app,
            domain: domain.as_ref().map(|(d, _)| &**d),
            place,
        };
        let (mut explanation, scope) =
            decide_observed(&snapshot, &shared.lists, &seen, shared.prompts.can_ask());
        let paused = shared.policy.paused_at(crate::now_ms());
        if let Some(until) = paused {
            // Paused: everything passes, and nothing is cached (the pause ends by itself).
            explanation = Explanation {
                verdict: Verdict::Allow,
                summary: format!(
                    "allowed: protection is paused (the policy would say: {})",
                    explanation.summary
                ),
                decided_by: DecidedBy::Paused {
                    until_unix_ms: until,
                },
            };
        }
        // The helper's own connections (its signed-update downloads; its DNS upstreams carry
        // its mark and never get here) pass whatever the policy says: an update must never
        // wait on a prompt or a default of "block".
        if paused.is_none()
            && direction == Direction::Outbound
            && process.is_some_and(|p| p.pid == std::process::id())
        {
            explanation = Explanation {
                verdict: Verdict::Allow,
                summary: "allowed: the helper's own connection (signed data updates)".into(),
                decided_by: DecidedBy::Rule {
                    profile: ProfileLabel::BuiltIn,
                    rule_id: None,
                    text: "+ the helper's own connections".into(),
                },
            };
        }
        tracing::trace!(verdict = ?explanation.verdict, "connection decided");
        // A first packet of a connection this machine opens (not a re-decided one).
        if paused.is_none()
            && hook == Direction::Outbound
            && direction == Direction::Outbound
            && (packet.protocol != Protocol::Tcp || packet.tcp_syn)
        {
            // A decision that used the app's lookup counts only as long as the lookup does;
            // one made without a name, only until the app might look one up.
            let valid_for = domain
                .as_ref()
                .map(|(_, left)| *left)
                .or(shared.dns.then_some(UNNAMED_DECISION_LIFETIME));
            self.cache_in_kernel(kernel, &app, &seen, &explanation, generation, valid_for);
        }
        let connection_id = shared.log.next_id();
        let held = if explanation.verdict == Verdict::Ask {
            let app_overrides = snapshot.apps.get(&app).map(|p| &p.overrides);
            let now = crate::now_ms();
            let timeout = match resolve(
                SettingKey::PromptTimeoutSecs,
                app_overrides,
                &snapshot.global.overrides,
            )
            .value
            {
                SettingValue::Seconds(n) => u64::from(n),
                _ => 30,
            };
            let fallback = match resolve(
                SettingKey::PromptFallback,
                app_overrides,
                &snapshot.global.overrides,
            )
            .value
            {
                SettingValue::Action(Action::Allow) => Verdict::Allow,
                _ => Verdict::Block,
            };
            let info = PromptInfo {
                id: shared.prompts.next_id(),
                app: app.clone(),
                app_name: process.map_or_else(|| "kernel".to_string(), |p| app_name(&p.app)),
                pid: process.map(|p| p.pid),
                direction,
                protocol: packet.protocol,
                remote,
                remote_port,
                local_port,
                domain: domain.as_ref().map(|(d, _)| d.to_string()),
                scope,
                created_unix_ms: now,
                expires_unix_ms: now.saturating_add(timeout * 1000),
                fallback,
                waiting: 1,
            };
            let port = match direction {
                Direction::Outbound => remote_port,
                Direction::Inbound => local_port,
            };
            let key = MergeKey {
                app: app.clone(),
                direction,
                protocol: packet.protocol,
                remote,
                port,
            };
            let start_time = process.map(|p| p.start_time);
            Some(Ask {
                key,
                info,
                local_port,
                remote_port,
                start_time,
                connection: 0,
                flow: None,
            })
        } else {
            None
        };
        let held = held.map(|ask| Ask {
            connection: connection_id,
            flow,
            ..ask
        });
        let info = ConnectionInfo {
            id: connection_id,
            unix_ms: crate::now_ms(),
            app,
            pid: process.map(|p| p.pid),
            direction,
            protocol: packet.protocol,
            local,
            local_port,
            remote,
            remote_port,
            domain: domain.map(|(d, _)| d.to_string()),
            country: place.country_text(),
            asn: place.asn,
            scope,
            explanation,
            decided_in_kernel: false,
        };
        let verdict = info.explanation.verdict;
        // The record first: what the connection carries is matched through the table, and
        // must find its row already on its way to history.
        let allowed = (verdict == Verdict::Allow).then(|| info.app.clone());
        publish(shared, info);
        if let (Some(app), Some((key, local))) = (allowed, flow) {
            self.flows.insert(key, &app, direction, local);
        }
        match held {
            Some(ask) => Outcome::Hold(Box::new(ask)),
            None => Outcome::Answer(verdict),
        }
    }
}
