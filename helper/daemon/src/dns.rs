//! The helper's DNS side: runs the `portcullis-dns` resolver on its own loopback address and
//! gives it the per-app decision it asks for. For each query it finds the asking process from
//! the query's addresses (sock_diag and `/proc`, like a connection), takes that app's profile
//! from the policy snapshot in force, and lets its domain rules, then the global ones, decide
//! the name (and every name of the answer's CNAME chain: the resolver asks for each).
//!
//! It owns no policy: rules come from the same snapshot the verdict thread reads. It must not
//! wait on the database or the IPC side, and it never logs names or addresses above DEBUG.
//!
//! Not yet here (see the DNS issue): redirecting queries sent to other resolvers, the
//! per-process domain⇄address map that gives connections their domain, and filter lists.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use portcullis_attribution::{Attribution, AttributionConfig, Attributor, Flow};
use portcullis_dns::proto::op::{Message, MessageType, OpCode, Query};
use portcullis_dns::proto::rr::{Name, RData, RecordType};
use portcullis_dns::upstream::{EndpointStats, SocketHook};
use portcullis_dns::{
    AnswerSource, BlockStyle, DnsConfig, DnsServer, Outcome, QueryContext, QueryDecision,
    QueryPolicy, QuerySource, Resolve, Resolver,
};
use portcullis_intercept::{DnsRedirect, InterceptConfig};
use portcullis_policy::{ProfileRules, decide_name};
use portcullis_protocol::{Direction, ProfileLabel, Protocol, Verdict};
use portcullis_protocol::{DnsAnswer, DnsStatus, DnsUpstreamStatus, ErrorCode, ErrorFrame};
use serde::Deserialize;

use crate::live::{DomainMap, SharedPolicy};
use crate::store::KERNEL_KEY;

/// The `[dns]` table of the helper's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// Whether the helper runs its resolver (default false until queries to other resolvers
    /// are redirected to it: without that, only what is configured to ask it does).
    pub enabled: bool,
    /// How a name a rule blocks is answered: `nx_domain` (default), `zero_ip`, `refused`.
    pub block_style: BlockStyle,
    /// Whether DNS this machine sends to any other resolver on port 53 (systemd-resolved's
    /// stub included) is redirected to this one (default true; needs interception).
    pub redirect: bool,
    /// The resolver: listen addresses, upstreams, trust, local zones, cache, rebinding
    /// (`[dns.resolver]`; see `portcullis_dns::DnsConfig`).
    pub resolver: DnsConfig,
    /// The links' own DNS (`[dns.links]`): their domains stay with their resolvers.
    pub links: crate::link_dns::LinksSection,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            enabled: false,
            block_style: BlockStyle::NxDomain,
            redirect: true,
            resolver: DnsConfig::default(),
            links: crate::link_dns::LinksSection::default(),
        }
    }
}

/// Where the firewall sends astray queries: the resolver's first IPv4 and first IPv6 listen
/// addresses; `None` without redirect or without an IPv4 address to send them to.
pub fn redirect_target(section: &DnsSection) -> Option<DnsRedirect> {
    if !section.redirect {
        return None;
    }
    let v4 = section.resolver.listen.iter().find_map(|a| match a {
        SocketAddr::V4(v4) => Some(*v4),
        SocketAddr::V6(_) => None,
    });
    let v6 = section.resolver.listen.iter().find_map(|a| match a {
        SocketAddr::V6(v6) => Some(*v6),
        SocketAddr::V4(_) => None,
    });
    if v4.is_none() {
        tracing::warn!("the resolver has no IPv4 address: astray DNS is not redirected");
    }
    Some(DnsRedirect { v4: v4?, v6 })
}

/// How long the asker of one query address is remembered (the resolver asks for the
/// question and again for each CNAME name of the same query).
const ASKER_TTL: Duration = Duration::from_secs(2);
/// Most askers remembered.
const MAX_ASKERS: usize = 4096;

/// The daemon's [`QueryPolicy`]: the asking app's domain rules, then the global ones.
#[derive(Debug)]
pub struct AppQueryPolicy {
    policy: Arc<SharedPolicy>,
    lists: Arc<crate::lists::Lists>,
    style: BlockStyle,
    attributor: Mutex<Attributor>,
    askers: Mutex<HashMap<QuerySource, (Instant, String)>>,
}

impl AppQueryPolicy {
    /// Attributes queries with sock_diag and `/proc` in the calling thread's network
    /// namespace.
    pub fn new(
        policy: Arc<SharedPolicy>,
        lists: Arc<crate::lists::Lists>,
        style: BlockStyle,
    ) -> anyhow::Result<AppQueryPolicy> {
        let attributor = Attributor::new(AttributionConfig::default())
            .context("cannot start attribution for DNS queries")?;
        Ok(AppQueryPolicy {
            policy,
            lists,
            style,
            attributor: Mutex::new(attributor),
            askers: Mutex::new(HashMap::new()),
        })
    }

    /// Makes `app` the asker of queries from `source` for a while (for `dns query`).
    fn pin(&self, source: &QuerySource, app: &str) {
        let mut askers = self.askers.lock().unwrap_or_else(PoisonError::into_inner);
        if askers.len() >= MAX_ASKERS {
            askers.clear();
        }
        askers.insert(*source, (Instant::now(), app.to_string()));
    }

    /// Why `name` is blocked for `app`: the rule, as an explanation.
    fn explain(&self, app: &str, name: &str) -> Option<portcullis_protocol::Explanation> {
        let snapshot = self.policy.load();
        let profile = snapshot.apps.get(app);
        let app_rules = profile.map(|p| ProfileRules {
            label: ProfileLabel::App(app.to_string()),
            settings: &p.overrides,
            rules: &p.compiled,
        });
        let global = ProfileRules {
            label: ProfileLabel::Global,
            settings: &snapshot.global.overrides,
            rules: &snapshot.global.compiled,
        };
        let listed = self.lists.check(
            profile.map(|p| &p.overrides),
            &snapshot.global.overrides,
            name,
        );
        decide_name(
            app_rules.as_ref(),
            &global,
            name,
            listed.as_ref().map(crate::lists::Listed::hit).as_ref(),
        )
    }

    /// The profile key of the app that sent the query from `source`.
    pub fn asker(&self, source: &QuerySource) -> String {
        let now = Instant::now();
        {
            let askers = self.askers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, app)) = askers.get(source)
                && now.duration_since(*at) < ASKER_TTL
            {
                return app.clone();
            }
        }
        let flow = Flow {
            protocol: match source.protocol {
                portcullis_dns::policy::Protocol::Udp => Protocol::Udp,
                portcullis_dns::policy::Protocol::Tcp => Protocol::Tcp,
            },
            // The app's socket sent it: from the app's side, its own address is local.
            direction: Direction::Outbound,
            local: source.peer,
            remote: source.local,
        };
        let mut attributor = self
            .attributor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut found = attributor.attribute(&flow);
        if !matches!(found, Attribution::Process(_)) {
            // A query the firewall redirected here: the app's socket names the server it
            // meant, which conntrack still knows.
            match portcullis_intercept::original_destination(
                flow.protocol,
                source.peer,
                source.local,
            ) {
                Ok(Some(original)) if original != source.local => {
                    found = attributor.attribute(&Flow {
                        remote: original,
                        ..flow
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "no original destination for a query"),
            }
        }
        drop(attributor);
        let app = match found {
            Attribution::Process(p) => crate::verdict::profile_key(p.app.key()),
            _ => KERNEL_KEY.to_string(),
        };
        let mut askers = self.askers.lock().unwrap_or_else(PoisonError::into_inner);
        if askers.len() >= MAX_ASKERS {
            askers.retain(|_, (at, _)| now.duration_since(*at) < ASKER_TTL);
            if askers.len() >= MAX_ASKERS {
                askers.clear();
            }
        }
        askers.insert(*source, (now, app.clone()));
        app
    }
}

impl QueryPolicy for AppQueryPolicy {
    fn decide(&self, query: &QueryContext<'_>) -> QueryDecision {
        let app = self.asker(query.source);
        let name = query.name.to_ascii().to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        let snapshot = self.policy.load();
        let profile = snapshot.apps.get(&app);
        let app_rules = profile.map(|p| ProfileRules {
            label: ProfileLabel::App(app.clone()),
            settings: &p.overrides,
            rules: &p.compiled,
        });
        let global = ProfileRules {
            label: ProfileLabel::Global,
            settings: &snapshot.global.overrides,
            rules: &snapshot.global.compiled,
        };
        let listed = self.lists.check(
            profile.map(|p| &p.overrides),
            &snapshot.global.overrides,
            name,
        );
        let hit = listed.as_ref().map(crate::lists::Listed::hit);
        match decide_name(app_rules.as_ref(), &global, name, hit.as_ref()) {
            Some(e) if e.verdict != Verdict::Allow => {
                tracing::debug!(app = %app, name, because = %e.summary, "name blocked");
                let because = match query.via_cname {
                    Some(alias) => format!(
                        "{} (reached through the alias {})",
                        e.summary,
                        alias.to_ascii().trim_end_matches('.')
                    ),
                    None => e.summary,
                };
                QueryDecision::Block {
                    style: self.style,
                    because,
                }
            }
            _ => QueryDecision::Allow,
        }
    }
}

/// The server's view of the resolver: resolves, then records which names the asking app
/// looked its answer's addresses up by (for its connections' domain and the P2P scope).
#[derive(Debug)]
struct Handler {
    resolver: Resolver,
    policy: Arc<AppQueryPolicy>,
    domains: Arc<DomainMap>,
    history: Arc<crate::history::Recorder>,
    /// Identical queries close together: one history row for the lot.
    coalescer: crate::history::DnsCoalescer,
}

impl Resolve for Handler {
    async fn resolve(&self, source: QuerySource, request: Message) -> Message {
        let resolution = self.resolver.resolve(&source, &request).await;
        if let Outcome::Answered { .. } = resolution.outcome {
            self.record(&source, &request, &resolution.response);
        }
        if self.history.is_on() {
            self.record_history(&source, &request, &resolution.outcome);
        }
        resolution.response
    }
}

impl Handler {
    /// Puts the query in the network history, with what became of it.
    fn record_history(&self, source: &QuerySource, request: &Message, outcome: &Outcome) {
        let Some(question) = request.queries.first() else {
            return;
        };
        let name = question.name().to_ascii().to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        let app = self.policy.asker(source);
        let (blocked, why) = match outcome {
            Outcome::Answered {
                local_zone: Some(zone),
                ..
            } => (
                false,
                format!(
                    "answered by the local network's DNS ({})",
                    zone.to_ascii().trim_end_matches('.')
                ),
            ),
            Outcome::Answered { .. } => (false, "answered".to_string()),
            Outcome::Blocked { because, .. } => (true, because.clone()),
            Outcome::Canary => (
                false,
                "answered: the canary tells apps to use the system's DNS".to_string(),
            ),
            Outcome::Rebinding(_) => (
                true,
                "refused: a public name pointed at a private address (DNS rebinding)".to_string(),
            ),
            Outcome::Failed { .. } => (false, "no upstream resolver answered".to_string()),
            // Malformed or unsupported queries name nothing worth keeping.
            Outcome::Invalid { .. } => return,
        };
        let record =
            crate::history::dns_record(&app, source, name, (blocked, why), crate::now_ms());
        for row in self.coalescer.offer(record) {
            self.history.record(row);
        }
    }

    /// Records the counts of identical queries whose window has passed (`all`: every one).
    fn record_coalesced(&self, all: bool) {
        let rows = if all {
            self.coalescer.drain()
        } else {
            self.coalescer
                .expired(i64::try_from(crate::now_ms()).unwrap_or(i64::MAX))
        };
        for row in rows {
            self.history.record(row);
        }
    }

    fn record(&self, source: &QuerySource, request: &Message, response: &Message) {
        let Some(question) = request.queries.first() else {
            return;
        };
        let name = question.name().to_ascii().to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        let app = self.policy.asker(source);
        let now = Instant::now();
        for record in &response.answers {
            let addr: IpAddr = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            let ttl = Duration::from_secs(u64::from(record.ttl));
            self.domains.record(&app, addr, name, ttl, now);
        }
    }
}

/// Keeps the resolver's split horizon in step with the links' own DNS (a VPN coming up, a
/// new Wi-Fi network), reading it now and every `refresh_secs`.
async fn follow_links(
    handler: Arc<Handler>,
    section: crate::link_dns::LinksSection,
    configured: Vec<String>,
) {
    let mut current: Option<Vec<portcullis_dns::LocalZone>> = None;
    let every = Duration::from_secs(section.refresh_secs.clamp(1, 3600));
    // A link never takes a configured zone, or a part of one, from its configured servers.
    let configured: Vec<String> = configured
        .iter()
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let taken = |zone: &str| {
        configured
            .iter()
            .any(|c| zone == c || zone.ends_with(&format!(".{c}")))
    };
    loop {
        let read_section = section.clone();
        let found = tokio::task::spawn_blocking(move || crate::link_dns::read(&read_section))
            .await
            .ok()
            .flatten();
        // No answer (a tool timed out, D-Bus restarting) is not "no links": keep what is known.
        if let Some((mut zones, source)) = found {
            zones.retain(|z| !taken(&z.zone));
            if current.as_ref() != Some(&zones) {
                match handler.resolver.set_link_zones(&zones) {
                    Ok(()) => {
                        tracing::info!(
                            zones = zones.len(),
                            source,
                            "the links' own DNS zones changed"
                        );
                        tracing::debug!(
                            zones = ?zones.iter().map(|z| z.zone.as_str()).collect::<Vec<_>>(),
                            "links' zones"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the links' own DNS zones were not taken");
                    }
                }
                current = Some(zones);
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The running resolver. It serves on a thread and runtime of its own, so that a flood of
/// queries (each attributed with system calls) can never starve the IPC side or the prompts.
#[derive(Debug)]
pub struct Dns {
    control: Arc<DnsControl>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What clients may ask of the running resolver (`portcullisctl dns …`).
#[derive(Debug)]
pub struct DnsControl {
    handler: Arc<Handler>,
    listen: Vec<SocketAddr>,
    redirect: bool,
    /// Source ports for `query`'s pinned askers (never a real peer: 0.0.0.0 is no client).
    next_port: std::sync::atomic::AtomicU16,
}

impl DnsControl {
    /// The resolver's state and counters.
    pub fn status(&self) -> DnsStatus {
        let r = &self.handler.resolver;
        let mut upstreams: Vec<DnsUpstreamStatus> = r
            .upstream_stats()
            .into_iter()
            .map(|s| upstream_status(s, None))
            .collect();
        for (zone, stats) in r.local_stats() {
            let zone = zone.to_ascii();
            let zone = zone.trim_end_matches('.');
            upstreams.extend(stats.into_iter().map(|s| upstream_status(s, Some(zone))));
        }
        DnsStatus {
            enabled: true,
            redirect: self.redirect,
            listen: self.listen.clone(),
            upstreams,
            cache_entries: u64::try_from(r.cache().len()).unwrap_or(u64::MAX),
            cache_bytes: u64::try_from(r.cache().bytes()).unwrap_or(u64::MAX),
        }
    }

    /// Empties the cache; returns how many answers it held.
    pub fn flush(&self) -> u64 {
        let cache = self.handler.resolver.cache();
        let n = u64::try_from(cache.len()).unwrap_or(u64::MAX);
        cache.clear();
        n
    }

    /// Resolves `name` (A and AAAA) as `app` would be answered: the same policy, cache and
    /// upstreams, but the lookup is not recorded for the app's connections.
    pub async fn query(&self, name: &str, app: Option<&str>) -> Result<DnsAnswer, ErrorFrame> {
        let invalid = || {
            ErrorFrame::new(
                ErrorCode::InvalidInput,
                format!("not a domain name: {name:?}"),
            )
        };
        if name.is_empty() || name.len() > 253 {
            return Err(invalid());
        }
        let parsed = Name::from_ascii(name).map_err(|_| invalid())?;
        let lower = parsed.to_ascii().to_ascii_lowercase();
        let lower = lower.trim_end_matches('.').to_string();
        if lower.is_empty() {
            return Err(invalid());
        }
        let key = app.unwrap_or(KERNEL_KEY);
        let port = self
            .next_port
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .max(1);
        let source = QuerySource {
            peer: SocketAddr::from(([0, 0, 0, 0], port)),
            local: self
                .listen
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 153], 53))),
            protocol: portcullis_dns::policy::Protocol::Udp,
        };
        self.handler.policy.pin(&source, key);
        let mut addresses = Vec::new();
        let mut last = None;
        for qtype in [RecordType::A, RecordType::AAAA] {
            let mut request = Message::new(1, MessageType::Query, OpCode::Query);
            request.metadata.recursion_desired = true;
            request.queries.push(Query::query(parsed.clone(), qtype));
            let resolution = self.handler.resolver.resolve(&source, &request).await;
            addresses.extend(
                resolution
                    .response
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    }),
            );
            let done = !matches!(resolution.outcome, Outcome::Answered { .. });
            last = Some(resolution);
            if done {
                break;
            }
        }
        let Some(resolution) = last else {
            return Err(ErrorFrame::new(ErrorCode::Internal, "no query was made"));
        };
        let rcode = rcode_name(u16::from(resolution.response.metadata.response_code));
        let (outcome, explanation, detail) = match resolution.outcome {
            Outcome::Answered { source, local_zone } => {
                let from = match source {
                    AnswerSource::Cache => "cache".to_string(),
                    AnswerSource::Upstream { upstream, latency } => {
                        format!("{upstream} in {:.1} ms", latency.as_secs_f64() * 1000.0)
                    }
                };
                let zone = local_zone
                    .map(|z| format!(" (local zone {})", z.to_ascii().trim_end_matches('.')))
                    .unwrap_or_default();
                ("answered", None, format!("{from}{zone}"))
            }
            Outcome::Blocked { name, because, .. } => {
                let blocked = name.to_ascii();
                let blocked = blocked.trim_end_matches('.').to_string();
                let explanation = self.handler.policy.explain(key, &blocked);
                (
                    "blocked",
                    explanation,
                    format!("{blocked} is blocked: {because}"),
                )
            }
            Outcome::Canary => (
                "canary",
                None,
                "Firefox's canary name: answered so that Firefox keeps using this resolver"
                    .to_string(),
            ),
            Outcome::Rebinding(r) => ("refused", None, format!("rebinding protection: {r:?}")),
            Outcome::Failed { error } => ("failed", None, error),
            Outcome::Invalid { reason, .. } => ("invalid", None, reason.to_string()),
        };
        Ok(DnsAnswer {
            name: lower,
            app: app.map(str::to_string),
            outcome: outcome.to_string(),
            rcode,
            addresses,
            explanation,
            detail,
        })
    }
}

/// The usual mnemonic of a DNS response code.
fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn upstream_status(s: EndpointStats, zone: Option<&str>) -> DnsUpstreamStatus {
    DnsUpstreamStatus {
        label: s.label,
        zone: zone.map(str::to_string),
        connections: s.connections,
        answered: s.answered,
        failed: s.failed,
        backing_off: s.backing_off,
    }
}

impl Dns {
    /// Starts the resolver on its listen addresses, deciding with `policy` and recording the
    /// names apps look addresses up by in `domains`. With `firewall` (the interception's
    /// configuration), its upstream sockets carry our allow mark, so the helper's own queries
    /// never wait in its queue.
    pub async fn start(
        section: &DnsSection,
        policy: Arc<SharedPolicy>,
        domains: Arc<DomainMap>,
        firewall: Option<InterceptConfig>,
        history: Arc<crate::history::Recorder>,
        lists: Arc<crate::lists::Lists>,
    ) -> anyhow::Result<Dns> {
        section
            .resolver
            .validate()
            .context("invalid [dns.resolver] configuration")?;
        let decide = Arc::new(AppQueryPolicy::new(policy, lists, section.block_style)?);
        let hook = firewall.map(|config| -> SocketHook {
            Arc::new(move |socket| {
                portcullis_intercept::exclude_socket(socket, &config).map_err(std::io::Error::other)
            })
        });
        let resolver = Resolver::with_socket_hook(&section.resolver, decide.clone(), hook)
            .context("cannot set up the resolver")?;
        let resolver = Arc::new(Handler {
            resolver,
            policy: decide,
            domains,
            history,
            coalescer: crate::history::DnsCoalescer::default(),
        });
        let control = Arc::new(DnsControl {
            handler: Arc::clone(&resolver),
            listen: section.resolver.listen.clone(),
            redirect: section.redirect,
            next_port: std::sync::atomic::AtomicU16::new(1),
        });
        let (ready_tx, ready_rx) =
            tokio::sync::oneshot::channel::<anyhow::Result<Vec<SocketAddr>>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listen = section.resolver.listen.clone();
        let limits = section.resolver.server;
        let links = section.links.clone();
        let configured: Vec<String> = section
            .resolver
            .local_zones
            .iter()
            .map(|z| z.zone.clone())
            .collect();
        let follow = Arc::clone(&resolver);
        let sweep = Arc::clone(&resolver);
        let thread = std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("dns-worker")
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::Error::new(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match DnsServer::start(&listen, limits, resolver).await {
                        Ok(server) => {
                            let _ = ready_tx.send(Ok(server.local_addrs().to_vec()));
                            let links = links
                                .enabled
                                .then(|| tokio::spawn(follow_links(follow, links, configured)));
                            let counts = {
                                let sweep = Arc::clone(&sweep);
                                tokio::spawn(async move {
                                    let mut every =
                                        tokio::time::interval(Duration::from_millis(500));
                                    loop {
                                        every.tick().await;
                                        sweep.record_coalesced(false);
                                    }
                                })
                            };
                            let _ = stop_rx.await;
                            if let Some(task) = links {
                                task.abort();
                            }
                            counts.abort();
                            server.shutdown().await;
                            sweep.record_coalesced(true);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::Error::new(e)));
                        }
                    }
                });
            })
            .context("cannot start the DNS thread")?;
        let addrs = ready_rx
            .await
            .context("the DNS thread ended early")?
            .context("cannot start the DNS server")?;
        tracing::info!(addresses = addrs.len(), "DNS resolver serving");
        tracing::debug!(?addrs, "DNS resolver addresses");
        Ok(Dns {
            control,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// What clients may ask of it.
    pub fn control(&self) -> Arc<DnsControl> {
        Arc::clone(&self.control)
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
