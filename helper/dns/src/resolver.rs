//! The query pipeline: validate → canary → policy on the question → local zone or public
//! upstreams → cache → rebinding check → policy on the CNAME chain → reply. This module owns
//! the order of those steps and what each outcome is answered with. It must not parse wire
//! bytes or own sockets (the server does), and it keeps no per-app state: who asked is handed
//! to the policy, and the [`Outcome`] tells the daemon what happened.
//!
//! The pipeline is split sans-IO style: [`Resolver::begin`] does every step that needs no
//! network and either answers or returns a [`Forward`]; [`Resolver::finish`] takes the
//! upstream's result and completes it. [`Resolver::resolve`] joins them with the upstream
//! I/O. Tests and the fuzz target drive `begin`/`finish` directly with forged answers.
//!
//! Checks run after the cache, on every answer, so a rule change applies to cached names at
//! once, and answers are cached as the upstream sent them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use tracing::{debug, trace};

use crate::cache::{Cache, CacheKey};
use crate::config::DnsConfig;
use crate::error::{ConfigError, UpstreamError};
use crate::names::{ZoneSet, parse_domain};
use crate::policy::{
    BlockStyle, QueryContext, QueryDecision, QueryPolicy, QuerySource, cname_names,
};
use crate::rebinding::{Rebinding, RebindingGuard};
use crate::reply;
use crate::upstream::{Answered, EndpointStats, SocketHook, Transport, UpstreamGroup, tls};

/// Firefox asks for this name to learn whether it may use its own DoH; NXDOMAIN says no.
pub const FIREFOX_CANARY: &str = "use-application-dns.net.";

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerSource {
    /// The cache.
    Cache,
    /// An upstream, with its label and the time it took.
    Upstream {
        /// The upstream address's label.
        upstream: Arc<str>,
        /// Round trip, connection set-up included.
        latency: Duration,
    },
}

/// What happened to a query, for the daemon (history, status, the domain⇄IP map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with the upstream's (or cache's) answer.
    Answered {
        /// From where.
        source: AnswerSource,
        /// The local (split-horizon) zone it was resolved in, if any.
        local_zone: Option<Name>,
    },
    /// Blocked by the policy.
    Blocked {
        /// The name that was blocked: the question, or a name of its CNAME chain.
        name: Name,
        /// How it was answered.
        style: BlockStyle,
        /// Why (from the policy).
        because: String,
    },
    /// Firefox's canary domain, answered so that Firefox keeps using us.
    Canary,
    /// Refused by rebinding protection.
    Rebinding(Rebinding),
    /// No upstream could answer: SERVFAIL.
    Failed {
        /// The error, for logs and status.
        error: String,
    },
    /// The query itself was not acceptable (FORMERR, NOTIMP, REFUSED).
    Invalid {
        /// The rcode sent.
        rcode: ResponseCode,
        /// Why.
        reason: &'static str,
    },
}

/// A reply and what happened.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The reply to send.
    pub response: Message,
    /// What happened.
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Route {
    Public,
    /// A local zone, and its resolvers (held: the zones may be replaced meanwhile).
    Local(Name, Arc<UpstreamGroup>),
}

/// A question that needs an upstream, from [`Resolver::begin`].
#[derive(Debug, Clone)]
pub struct Forward {
    query: Query,
    key: CacheKey,
    route: Route,
    /// The cache's generation when the question was asked.
    generation: u64,
}

impl Forward {
    /// The question to send upstream.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Whether it goes to a local zone's resolver (not the public upstreams).
    pub fn is_local(&self) -> bool {
        matches!(self.route, Route::Local(..))
    }
}

/// The next step for a query.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answered without the network.
    Done(Resolution),
    /// Needs an upstream: do [`Resolver::forward`], then [`Resolver::finish`].
    Forward(Forward),
}

/// The resolver: policy, cache, upstreams, split horizon and rebinding protection.
#[derive(Debug)]
pub struct Resolver {
    policy: Arc<dyn QueryPolicy>,
    cache: Cache,
    public: UpstreamGroup,
    /// The local zones (configured, and the links' own), their resolvers, and the rebinding
    /// guard that knows them; replaced whole when the links' zones change.
    split: std::sync::RwLock<Arc<Split>>,
    /// The configured local zones, kept to rebuild `split` with the links' zones.
    configured: Vec<crate::config::LocalZone>,
    /// Names the user allows to resolve to private addresses through public resolvers.
    rebinding_allow: Vec<Name>,
    rebinding_enabled: bool,
    attempt: Duration,
    hook: Hook,
    canary: Name,
    canary_style: BlockStyle,
    block_ttl: u32,
    query_timeout: Duration,
}

/// The upstream socket hook, kept to build the links' resolvers.
#[derive(Clone, Default)]
struct Hook(Option<SocketHook>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

/// Split horizon: which names go to which local resolvers.
#[derive(Debug)]
struct Split {
    zones: ZoneSet,
    /// Same order as `zones.zones()`.
    groups: Vec<Arc<UpstreamGroup>>,
    rebinding: RebindingGuard,
}

impl Split {
    /// `zones_in` starts with the `configured` zones the user wrote; only those (and `allow`)
    /// may resolve to private addresses through public resolvers.
    fn build(
        zones_in: &[crate::config::LocalZone],
        configured: usize,
        allow: &[Name],
        rebinding_enabled: bool,
        attempt: Duration,
        hook: Option<&SocketHook>,
    ) -> Result<Split, ConfigError> {
        let mut zones = Vec::new();
        for z in zones_in {
            zones.push((parse_domain(&z.zone)?, &z.servers));
        }
        let set = ZoneSet::new(zones.iter().map(|(n, _)| n.clone()));
        let mut groups = Vec::new();
        for zone in set.zones() {
            // Servers of a zone listed twice are joined, in the order given.
            let servers: Vec<_> = zones
                .iter()
                .filter(|(n, _)| n == zone)
                .flat_map(|(_, s)| s.iter().cloned())
                .collect();
            groups.push(Arc::new(UpstreamGroup::new(
                &servers,
                None,
                attempt,
                hook.cloned(),
            )?));
        }
        let mut allowed: Vec<Name> = Vec::new();
        for z in zones_in.iter().take(configured) {
            allowed.push(parse_domain(&z.zone)?);
        }
        allowed.extend(allow.iter().cloned());
        Ok(Split {
            zones: set,
            groups,
            rebinding: RebindingGuard::new(rebinding_enabled, ZoneSet::new(allowed)),
        })
    }
}

/// The pieces of an answer, whether from the cache or an upstream.
struct Sections {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Resolver {
    /// Builds a resolver from `config` (validated here), deciding with `policy`. Reads the CA
    /// file or the system's roots if an upstream is encrypted; opens no socket.
    pub fn new(config: &DnsConfig, policy: Arc<dyn QueryPolicy>) -> Result<Self, ConfigError> {
        Self::with_socket_hook(config, policy, None)
    }

    /// [`new`](Self::new), with `hook` run on every upstream socket before it connects or
    /// sends (the daemon marks its own traffic with it).
    pub fn with_socket_hook(
        config: &DnsConfig,
        policy: Arc<dyn QueryPolicy>,
        hook: Option<SocketHook>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let needs_tls = config
            .upstreams
            .iter()
            .any(|u| u.transport != Transport::Plain);
        let tls = if needs_tls {
            Some(tls::client_config(tls::root_store(&config.trust)?)?)
        } else {
            None
        };
        let attempt = config.attempt_timeout();
        let public = UpstreamGroup::new(&config.upstreams, tls.as_ref(), attempt, hook.clone())?;

        let mut rebinding_allow = Vec::new();
        for name in &config.rebinding.allow {
            rebinding_allow.push(parse_domain(name)?);
        }
        let split = Split::build(
            &config.local_zones,
            config.local_zones.len(),
            &rebinding_allow,
            config.rebinding.enabled,
            attempt,
            hook.as_ref(),
        )?;
        Ok(Self {
            policy,
            cache: Cache::new(config.cache),
            public,
            split: std::sync::RwLock::new(Arc::new(split)),
            configured: config.local_zones.clone(),
            rebinding_allow,
            rebinding_enabled: config.rebinding.enabled,
            attempt,
            hook: Hook(hook),
            canary: parse_domain(FIREFOX_CANARY)?,
            canary_style: config.canary_style,
            block_ttl: config.block_ttl,
            query_timeout: config.query_timeout(),
        })
    }

    /// The cache (for status and flushing).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Counters of the public upstreams.
    pub fn upstream_stats(&self) -> Vec<EndpointStats> {
        self.public.stats()
    }

    fn split(&self) -> Arc<Split> {
        Arc::clone(
            &self
                .split
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Counters of each local zone's resolvers.
    pub fn local_stats(&self) -> Vec<(Name, Vec<EndpointStats>)> {
        let split = self.split();
        split
            .zones
            .zones()
            .iter()
            .cloned()
            .zip(split.groups.iter().map(|g| g.stats()))
            .collect()
    }

    /// Adds the links' own zones (a VPN's or the LAN's search and routing domains, with the
    /// link's resolvers) to the configured local zones, replacing the links' zones given
    /// before. Queries already under way finish with the zones they started with. A bad zone
    /// or server is refused whole: the zones in force stay.
    pub fn set_link_zones(&self, links: &[crate::config::LocalZone]) -> Result<(), ConfigError> {
        let mut all = self.configured.clone();
        all.extend(links.iter().cloned());
        let split = Split::build(
            &all,
            self.configured.len(),
            &self.rebinding_allow,
            self.rebinding_enabled,
            self.attempt,
            self.hook.0.as_ref(),
        )?;
        *self
            .split
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(split);
        // Answers cached under the old routes (a public NXDOMAIN for a VPN's name, a VPN's
        // answer after it went down) would outlive the change.
        self.cache.clear();
        Ok(())
    }

    /// Answers `request` from `source`, asking an upstream if needed.
    pub async fn resolve(&self, source: &QuerySource, request: &Message) -> Resolution {
        match self.begin(source, request, Instant::now()) {
            Step::Done(r) => r,
            Step::Forward(f) => {
                let result = self.forward(&f).await;
                self.finish(source, request, f, result, Instant::now())
            }
        }
    }

    /// Sends a forward's question to its upstreams (local zone or public).
    pub async fn forward(&self, forward: &Forward) -> Result<Answered, UpstreamError> {
        let group = match &forward.route {
            Route::Public => &self.public,
            // Never the public upstreams instead: a local name must not leave the link.
            Route::Local(_, group) => &**group,
        };
        group
            .query(&forward.query, Instant::now() + self.query_timeout)
            .await
    }

    /// Every step that needs no network, as of `now`.
    pub fn begin(&self, source: &QuerySource, request: &Message, now: Instant) -> Step {
        let invalid = |rcode, reason| {
            Step::Done(Resolution {
                response: reply::error_reply(request, rcode),
                outcome: Outcome::Invalid { rcode, reason },
            })
        };
        if request.metadata.message_type != MessageType::Query {
            return invalid(ResponseCode::FormErr, "not a query");
        }
        if !reply::is_standard_query(request) {
            return invalid(ResponseCode::NotImp, "opcode other than QUERY");
        }
        let [query] = request.queries.as_slice() else {
            return invalid(ResponseCode::FormErr, "not exactly one question");
        };
        if query.query_class() != DNSClass::IN {
            return invalid(ResponseCode::Refused, "class other than IN");
        }
        if matches!(
            query.query_type(),
            RecordType::AXFR | RecordType::IXFR | RecordType::OPT
        ) {
            return invalid(
                ResponseCode::Refused,
                "zone transfers and OPT are not served",
            );
        }
        let qname = query.name();
        trace!(name = %qname, qtype = %query.query_type(), peer = %source.peer, "query");

        if self.canary.zone_of(qname) {
            return Step::Done(Resolution {
                response: reply::blocked_reply(request, self.canary_style, self.block_ttl),
                outcome: Outcome::Canary,
            });
        }
        let ctx = QueryContext {
            source,
            question: qname,
            qtype: query.query_type(),
            name: qname,
            via_cname: None,
        };
        if let QueryDecision::Block { style, because } = self.policy.decide(&ctx) {
            return Step::Done(self.blocked(request, qname, style, because));
        }

        // Taken before the routes: an answer on its way while they change is not cached.
        let generation = self.cache.generation();
        let split = self.split();
        let route = match split.zones.find(qname) {
            Some((i, zone)) => match split.groups.get(i) {
                Some(group) => Route::Local(zone.clone(), Arc::clone(group)),
                None => Route::Public,
            },
            None => Route::Public,
        };
        let key = CacheKey::new(qname, query.query_type(), query.query_class());
        if let Some(hit) = self.cache.get(&key, now) {
            let sections = Sections {
                rcode: hit.response_code,
                answers: hit.answers,
                authorities: hit.authorities,
                additionals: hit.additionals,
            };
            return Step::Done(self.complete(
                source,
                request,
                route,
                sections,
                AnswerSource::Cache,
            ));
        }
        Step::Forward(Forward {
            query: query.clone(),
            key,
            route,
            generation,
        })
    }

    /// Completes a forwarded query with the upstream's result, as of `now`.
    pub fn finish(
        &self,
        source: &QuerySource,
        request: &Message,
        forward: Forward,
        result: Result<Answered, UpstreamError>,
        now: Instant,
    ) -> Resolution {
        match result {
            Err(e) => {
                debug!(error = %e, "no upstream answered");
                Resolution {
                    response: reply::error_reply(request, ResponseCode::ServFail),
                    outcome: Outcome::Failed {
                        error: e.to_string(),
                    },
                }
            }
            Ok(answered) => {
                self.cache
                    .insert_from(forward.generation, forward.key, &answered.message, now);
                let message = answered.message;
                let sections = Sections {
                    rcode: message.metadata.response_code,
                    answers: message.answers,
                    authorities: message.authorities,
                    additionals: message.additionals,
                };
                let from = AnswerSource::Upstream {
                    upstream: answered.upstream,
                    latency: answered.latency,
                };
                self.complete(source, request, forward.route, sections, from)
            }
        }
    }

    fn blocked(
        &self,
        request: &Message,
        name: &Name,
        style: BlockStyle,
        because: String,
    ) -> Resolution {
        debug!(name = %name, because = %because, "blocked");
        Resolution {
            response: reply::blocked_reply(request, style, self.block_ttl),
            outcome: Outcome::Blocked {
                name: name.clone(),
                style,
                because,
            },
        }
    }

    /// The checks every answer passes, then the reply.
    fn complete(
        &self,
        source: &QuerySource,
        request: &Message,
        route: Route,
        sections: Sections,
        from: AnswerSource,
    ) -> Resolution {
        let Some(query) = request.queries.first() else {
            return Resolution {
                response: reply::error_reply(request, ResponseCode::FormErr),
                outcome: Outcome::Invalid {
                    rcode: ResponseCode::FormErr,
                    reason: "not exactly one question",
                },
            };
        };
        let qname = query.name();
        if matches!(route, Route::Public) {
            let records = sections.answers.iter().chain(&sections.additionals);
            if let Err(r) = self.split().rebinding.check_records(qname, records) {
                debug!(name = %qname, why = %r.explain(), "rebinding refused");
                return Resolution {
                    response: reply::error_reply(request, ResponseCode::Refused),
                    outcome: Outcome::Rebinding(r),
                };
            }
        }
        for (name, alias) in cname_names(qname, &sections.answers) {
            let ctx = QueryContext {
                source,
                question: qname,
                qtype: query.query_type(),
                name,
                via_cname: Some(alias),
            };
            if let QueryDecision::Block { style, because } = self.policy.decide(&ctx) {
                return self.blocked(request, name, style, because);
            }
        }
        let local_zone = match route {
            Route::Local(zone, _) => Some(zone),
            Route::Public => None,
        };
        Resolution {
            response: reply::answer_reply(
                request,
                sections.rcode,
                sections.answers,
                sections.authorities,
                sections.additionals,
            ),
            outcome: Outcome::Answered {
                source: from,
                local_zone,
            },
        }
    }
}

/// What the server calls for each decoded query.
pub trait Resolve: Send + Sync + 'static {
    /// The reply to `request` from `source`.
    fn resolve(
        &self,
        source: QuerySource,
        request: Message,
    ) -> impl Future<Output = Message> + Send;
}

impl Resolve for Resolver {
    async fn resolve(&self, source: QuerySource, request: Message) -> Message {
        Resolver::resolve(self, &source, &request).await.response
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};

    use super::*;
    use crate::config::LocalZone;
    use crate::policy::{Protocol, ZoneBlocklist};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn source() -> QuerySource {
        QuerySource {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.153:53".parse().unwrap(),
            protocol: Protocol::Udp,
        }
    }

    fn request(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.queries.push(Query::query(n(name), qtype));
        m
    }

    fn resolver(block: &[&str]) -> Resolver {
        let config = DnsConfig {
            upstreams: vec!["plain://192.0.2.53".parse().unwrap()],
            local_zones: vec![LocalZone {
                zone: "home.arpa".into(),
                servers: vec!["plain://192.168.1.1".parse().unwrap()],
            }],
            ..DnsConfig::default()
        };
        let list = ZoneBlocklist::new(
            ZoneSet::new(block.iter().map(|b| parse_domain(b).unwrap())),
            BlockStyle::NxDomain,
            "the test list",
        );
        Resolver::new(&config, Arc::new(list)).unwrap()
    }

    fn upstream_answer(req: &Message, records: Vec<Record>) -> Answered {
        let mut m = Message::new(99, MessageType::Response, OpCode::Query);
        m.queries = req.queries.clone();
        m.answers = records;
        Answered {
            message: m,
            upstream: "plain://192.0.2.53:53".into(),
            latency: Duration::from_millis(3),
        }
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(n(name), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn cname(from: &str, to: &str) -> Record {
        Record::from_rdata(n(from), 300, RData::CNAME(CNAME(n(to))))
    }

    fn forward(step: Step) -> Forward {
        match step {
            Step::Forward(f) => f,
            Step::Done(r) => panic!("answered without upstream: {:?}", r.outcome),
        }
    }

    fn done(step: Step) -> Resolution {
        match step {
            Step::Done(r) => r,
            Step::Forward(f) => panic!("forwarded: {f:?}"),
        }
    }

    #[test]
    fn the_canary_is_nxdomain() {
        let r = resolver(&[]);
        let res = done(r.begin(
            &source(),
            &request("use-application-dns.net.", RecordType::A),
            Instant::now(),
        ));
        assert_eq!(res.outcome, Outcome::Canary);
        assert_eq!(res.response.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(res.response.metadata.id, 7);
    }

    #[test]
    fn a_blocked_question_never_leaves() {
        let r = resolver(&["tracker.example"]);
        let res = done(r.begin(
            &source(),
            &request("x.Tracker.example.", RecordType::A),
            Instant::now(),
        ));
        assert_eq!(res.response.metadata.response_code, ResponseCode::NXDomain);
        let Outcome::Blocked { because, .. } = res.outcome else {
            panic!()
        };
        assert!(because.contains("the test list"));
    }

    #[test]
    fn cname_cloaking_is_blocked_and_the_chain_is_cached_unblocked() {
        let r = resolver(&["tracker.example"]);
        let req = request("metrics.shop.example.", RecordType::A);
        let f = forward(r.begin(&source(), &req, Instant::now()));
        assert!(!f.is_local());
        let ans = upstream_answer(
            &req,
            vec![
                cname("metrics.shop.example.", "shop.tracker.example."),
                a("shop.tracker.example.", 60, [192, 0, 2, 80]),
            ],
        );
        let now = Instant::now();
        let res = r.finish(&source(), &req, f, Ok(ans), now);
        let Outcome::Blocked { name, because, .. } = &res.outcome else {
            panic!("{:?}", res.outcome)
        };
        assert_eq!(name.to_ascii(), "shop.tracker.example.");
        assert!(because.contains("alias (CNAME)"), "{because}");
        assert!(res.response.answers.is_empty());
        // Cached as received; still blocked when served from the cache.
        let again = done(r.begin(&source(), &req, now));
        assert!(matches!(again.outcome, Outcome::Blocked { .. }));
    }

    #[test]
    fn answers_keep_sections_and_come_from_the_cache_counted_down() {
        let r = resolver(&[]);
        let req = request("www.example.", RecordType::A);
        let f = forward(r.begin(&source(), &req, Instant::now()));
        let ans = upstream_answer(
            &req,
            vec![
                cname("www.example.", "cdn.example."),
                a("cdn.example.", 120, [192, 0, 2, 7]),
            ],
        );
        let t0 = Instant::now();
        let res = r.finish(&source(), &req, f, Ok(ans), t0);
        assert!(matches!(
            res.outcome,
            Outcome::Answered {
                source: AnswerSource::Upstream { .. },
                local_zone: None
            }
        ));
        assert_eq!(res.response.answers.len(), 2);
        assert_eq!(res.response.metadata.id, 7);
        assert!(res.response.metadata.recursion_available);
        let later = done(r.begin(&source(), &req, t0 + Duration::from_secs(20)));
        assert!(matches!(
            later.outcome,
            Outcome::Answered {
                source: AnswerSource::Cache,
                ..
            }
        ));
        assert_eq!(later.response.answers[1].ttl, 100);
    }

    #[test]
    fn public_rebinding_is_refused_local_zones_are_not() {
        let r = resolver(&[]);
        let req = request("evil.example.", RecordType::A);
        let f = forward(r.begin(&source(), &req, Instant::now()));
        let ans = upstream_answer(&req, vec![a("evil.example.", 60, [192, 168, 0, 1])]);
        let res = r.finish(&source(), &req, f, Ok(ans), Instant::now());
        assert_eq!(res.response.metadata.response_code, ResponseCode::Refused);
        assert!(matches!(res.outcome, Outcome::Rebinding(_)));

        let req = request("nas.home.arpa.", RecordType::A);
        let f = forward(r.begin(&source(), &req, Instant::now()));
        assert!(f.is_local());
        let ans = upstream_answer(&req, vec![a("nas.home.arpa.", 60, [192, 168, 1, 20])]);
        let res = r.finish(&source(), &req, f, Ok(ans), Instant::now());
        let Outcome::Answered { local_zone, .. } = res.outcome else {
            panic!()
        };
        assert_eq!(local_zone.unwrap().to_ascii(), "home.arpa.");
    }

    #[test]
    fn negative_answers_are_cached_and_failures_are_servfail() {
        let r = resolver(&[]);
        let req = request("nope.example.", RecordType::A);
        let f = forward(r.begin(&source(), &req, Instant::now()));
        let mut ans = upstream_answer(&req, vec![]);
        ans.message.metadata.response_code = ResponseCode::NXDomain;
        ans.message.authorities.push(Record::from_rdata(
            n("example."),
            900,
            RData::SOA(SOA::new(n("ns.example."), n("h.example."), 1, 1, 1, 1, 60)),
        ));
        let t0 = Instant::now();
        r.finish(&source(), &req, f, Ok(ans), t0);
        let hit = done(r.begin(&source(), &req, t0 + Duration::from_secs(1)));
        assert_eq!(hit.response.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(hit.response.authorities[0].ttl, 59);

        let req = request("down.example.", RecordType::A);
        let f = forward(r.begin(&source(), &req, Instant::now()));
        let res = r.finish(
            &source(),
            &req,
            f,
            Err(UpstreamError::OutOfTime),
            Instant::now(),
        );
        assert_eq!(res.response.metadata.response_code, ResponseCode::ServFail);
        assert!(
            matches!(forward(r.begin(&source(), &req, Instant::now())).query().name(), n if n == &req.queries[0].name)
        );
    }

    #[test]
    fn unacceptable_queries_get_the_right_rcode() {
        let r = resolver(&[]);
        let mut two = request("a.example.", RecordType::A);
        two.queries
            .push(Query::query(n("b.example."), RecordType::A));
        let none = {
            let mut m = request("a.example.", RecordType::A);
            m.queries.clear();
            m
        };
        let mut chaos = request("version.bind.", RecordType::TXT);
        chaos.queries[0].set_query_class(DNSClass::CH);
        let mut notify = request("a.example.", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        let axfr = request("example.", RecordType::AXFR);
        for (req, rcode) in [
            (two, ResponseCode::FormErr),
            (none, ResponseCode::FormErr),
            (chaos, ResponseCode::Refused),
            (notify, ResponseCode::NotImp),
            (axfr, ResponseCode::Refused),
        ] {
            let res = done(r.begin(&source(), &req, Instant::now()));
            assert_eq!(
                res.response.metadata.response_code, rcode,
                "{:?}",
                res.outcome
            );
        }
    }
}
