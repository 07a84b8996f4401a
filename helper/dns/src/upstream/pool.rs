//! Sending one question to a group of upstreams: connections kept open and reused, failover
//! in configured order, and a short back-off for upstreams that just failed. This module owns
//! the connections and their health; it must not look at what the answers say (caching,
//! blocking and rebinding checks happen in the resolver) and never changes an answer.
//!
//! Why hickory-net's exchanges and not hickory-resolver's `Resolver`/`NameServerPool`: the
//! resolver turns NXDOMAIN and empty answers into errors, may drop records through its answer
//! filter, and keeps its own cache. A local resolver must hand the app the upstream's message
//! as it was — rcode, every section, TTLs, the CNAME chain — and must own its cache. So each
//! upstream address gets one hickory-net [`DnsExchange`] (the same transport code the
//! resolver uses): a multiplexed DoT stream, an HTTP/2 DoH connection, or UDP with TCP when
//! truncated. A connection is made on first use, shared by all queries, and replaced only
//! when it fails, so there is at most one TLS handshake per connection lifetime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::socket::{Provider, SocketHook};
use hickory_net::NetError;
use hickory_net::h2::HttpsClientStream;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message, Query};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tracing::{debug, trace};

use super::spec::{Transport, UpstreamSpec};
use crate::error::{ConfigError, UpstreamError};

/// EDNS payload size we advertise upstream (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// First back-off after a failure; doubled per consecutive failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Concurrent queries on one multiplexed connection.
const MAX_ACTIVE_PER_CONNECTION: usize = 128;

type Exchange = DnsExchange<Provider>;

/// A successful upstream answer.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The upstream's message as received.
    pub message: Message,
    /// Label of the upstream address that answered (`tls://dns.example#192.0.2.1`).
    pub upstream: Arc<str>,
    /// Time from sending to receiving (including a connection set-up, if one was needed).
    pub latency: Duration,
}

/// Counters of one upstream address, for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    /// The label (see [`Answered::upstream`]).
    pub label: String,
    /// Connections opened so far (TCP+TLS or HTTP/2; for plain DNS, TCP fallbacks only).
    pub connections: u64,
    /// Queries answered.
    pub answered: u64,
    /// Queries that failed here.
    pub failed: u64,
    /// Whether it is in back-off after a failure now.
    pub backing_off: bool,
}

enum Kind {
    Plain,
    Tls {
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
    },
    Https {
        name: Arc<str>,
        path: Arc<str>,
        config: Arc<ClientConfig>,
    },
}

#[derive(Default)]
struct Slot {
    exchange: Option<Exchange>,
    generation: u64,
}

#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    retry_after: Option<Instant>,
}

struct Endpoint {
    label: Arc<str>,
    addr: SocketAddr,
    kind: Kind,
    /// Per-request timeout inside a (reused) connection.
    request_timeout: Duration,
    /// The reused connection (for plain DNS: the UDP exchange).
    slot: tokio::sync::Mutex<Slot>,
    /// Plain DNS only: TCP for truncated answers.
    tcp_slot: tokio::sync::Mutex<Slot>,
    health: Mutex<Health>,
    connections: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// An ordered set of upstream addresses queried with failover.
pub struct UpstreamGroup {
    endpoints: Vec<Arc<Endpoint>>,
    provider: Provider,
    attempt_timeout: Duration,
}

impl std::fmt::Debug for UpstreamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamGroup")
            .field("endpoints", &self.endpoints)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

fn endpoint_label(spec: &UpstreamSpec, addr: SocketAddr) -> String {
    match (&spec.tls_name, spec.transport) {
        (Some(name), Transport::Https) => format!(
            "https://{name}{}#{addr}",
            spec.path.as_deref().unwrap_or("/dns-query")
        ),
        (Some(name), t) => format!("{t}://{name}#{addr}"),
        (None, t) => format!("{t}://{addr}"),
    }
}

impl UpstreamGroup {
    /// One endpoint per address of every spec, in order. `tls` is needed if any spec is TLS
    /// or HTTPS; `hook` runs on each new socket. Opens nothing: connections are made on first
    /// use.
    pub fn new(
        specs: &[UpstreamSpec],
        tls: Option<&Arc<ClientConfig>>,
        attempt_timeout: Duration,
        hook: Option<SocketHook>,
    ) -> Result<Self, ConfigError> {
        let mut endpoints = Vec::new();
        for spec in specs {
            if spec.addrs.is_empty() {
                return Err(ConfigError::BadUpstream {
                    text: spec.to_string(),
                    reason: "no address".to_owned(),
                });
            }
            for &addr in &spec.addrs {
                let kind = match spec.transport {
                    Transport::Plain => Kind::Plain,
                    Transport::Tls | Transport::Https => {
                        let name =
                            spec.tls_name
                                .clone()
                                .ok_or_else(|| ConfigError::BadUpstream {
                                    text: spec.to_string(),
                                    reason: "no TLS name".to_owned(),
                                })?;
                        let config = tls.cloned().ok_or_else(|| ConfigError::BadUpstream {
                            text: spec.to_string(),
                            reason: "no TLS configuration".to_owned(),
                        })?;
                        if spec.transport == Transport::Tls {
                            let name = ServerName::try_from(name.clone()).map_err(|_| {
                                ConfigError::BadUpstream {
                                    text: spec.to_string(),
                                    reason: format!("{name:?} is not a valid TLS server name"),
                                }
                            })?;
                            Kind::Tls { name, config }
                        } else {
                            Kind::Https {
                                name: name.into(),
                                path: spec.path.as_deref().unwrap_or("/dns-query").into(),
                                config,
                            }
                        }
                    }
                };
                endpoints.push(Arc::new(Endpoint {
                    label: endpoint_label(spec, addr).into(),
                    addr,
                    kind,
                    request_timeout: attempt_timeout,
                    slot: tokio::sync::Mutex::new(Slot::default()),
                    tcp_slot: tokio::sync::Mutex::new(Slot::default()),
                    health: Mutex::new(Health::default()),
                    connections: AtomicU64::new(0),
                    answered: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                }));
            }
        }
        if endpoints.is_empty() {
            return Err(ConfigError::NoUpstreams);
        }
        Ok(Self {
            endpoints,
            provider: Provider::new(hook),
            attempt_timeout,
        })
    }

    /// Counters of every endpoint, in order.
    pub fn stats(&self) -> Vec<EndpointStats> {
        let now = Instant::now();
        self.endpoints
            .iter()
            .map(|e| EndpointStats {
                label: e.label.to_string(),
                connections: e.connections.load(Ordering::Relaxed),
                answered: e.answered.load(Ordering::Relaxed),
                failed: e.failed.load(Ordering::Relaxed),
                backing_off: e.backing_off(now),
            })
            .collect()
    }

    /// Asks `query` (recursion desired) until an endpoint answers or `deadline` passes.
    ///
    /// Endpoints not in back-off are tried first, in configured order, then the ones in
    /// back-off (better a slow answer than none). A transport failure or timeout moves on to
    /// the next; so do SERVFAIL and REFUSED, whose message is returned only if no other
    /// endpoint answers.
    pub async fn query(&self, query: &Query, deadline: Instant) -> Result<Answered, UpstreamError> {
        let now = Instant::now();
        let (fresh, resting): (Vec<&Arc<Endpoint>>, Vec<&Arc<Endpoint>>) =
            self.endpoints.iter().partition(|e| !e.backing_off(now));
        let mut fallback: Option<Answered> = None;
        let mut last: Option<UpstreamError> = None;
        let mut tried = 0;
        for ep in fresh.into_iter().chain(resting) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tried += 1;
            let started = Instant::now();
            match ep
                .query(query, self.attempt_timeout.min(left), &self.provider)
                .await
            {
                Ok(message) => {
                    let answered = Answered {
                        message,
                        upstream: Arc::clone(&ep.label),
                        latency: started.elapsed(),
                    };
                    use hickory_proto::op::ResponseCode::{Refused, ServFail};
                    if matches!(answered.message.metadata.response_code, ServFail | Refused) {
                        ep.record_failure();
                        debug!(upstream = %ep.label, rcode = %answered.message.metadata.response_code, "upstream could not answer; trying the next");
                        fallback.get_or_insert(answered);
                        continue;
                    }
                    ep.record_success();
                    return Ok(answered);
                }
                Err(e) => {
                    ep.record_failure();
                    debug!(upstream = %ep.label, error = %e, "upstream failed; trying the next");
                    last = Some(e);
                }
            }
        }
        if let Some(answer) = fallback {
            return Ok(answer);
        }
        match last {
            Some(last) => Err(UpstreamError::AllFailed {
                tried,
                last: Box::new(last),
            }),
            None => Err(UpstreamError::OutOfTime),
        }
    }
}

fn request_for(query: &Query) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_payload_len = EDNS_PAYLOAD;
    options.recursion_desired = true;
    options.case_randomization = false;
    DnsRequest::from_query(query.clone(), options)
}

/// Whether `answer` is an answer to `query` (same name, ignoring case, type and class).
fn answers_question(answer: &Message, query: &Query) -> bool {
    match answer.queries.as_slice() {
        [q] => {
            q.query_type() == query.query_type()
                && q.query_class() == query.query_class()
                && q.name().eq_ignore_root(query.name())
        }
        _ => false,
    }
}

impl Endpoint {
    fn backing_off(&self, now: Instant) -> bool {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retry_after
            .is_some_and(|t| now < t)
    }

    fn record_success(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        h.consecutive_failures = 0;
        h.retry_after = None;
    }

    fn record_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        let shift = h.consecutive_failures.saturating_sub(1).min(5);
        let backoff = FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
        h.retry_after = Some(Instant::now() + backoff);
    }

    async fn query(
        &self,
        query: &Query,
        timeout: Duration,
        provider: &Provider,
    ) -> Result<Message, UpstreamError> {
        let deadline = Instant::now() + timeout;
        let message = self
            .exchange_with_retry(&self.slot, query, deadline, provider, false)
            .await?;
        let message = if message.metadata.truncation && matches!(self.kind, Kind::Plain) {
            trace!(upstream = %self.label, "truncated over UDP; asking over TCP");
            self.exchange_with_retry(&self.tcp_slot, query, deadline, provider, true)
                .await?
        } else {
            message
        };
        if !answers_question(&message, query) {
            return Err(UpstreamError::Mismatch {
                upstream: self.label.to_string(),
            });
        }
        Ok(message)
    }

    /// Sends on the slot's connection; if a *reused* connection fails (the server may have
    /// closed it while idle), replaces it once and sends again.
    async fn exchange_with_retry(
        &self,
        slot: &tokio::sync::Mutex<Slot>,
        query: &Query,
        deadline: Instant,
        provider: &Provider,
        tcp: bool,
    ) -> Result<Message, UpstreamError> {
        for _attempt in 0..2 {
            let (exchange, generation, reused) =
                self.connection(slot, deadline, provider, tcp).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = tokio::time::timeout(left, exchange.send(request_for(query)).first_answer());
            let error = match sent.await {
                Ok(Ok(response)) => return Ok(response.into_message()),
                Ok(Err(e)) => UpstreamError::Exchange {
                    upstream: self.label.to_string(),
                    source: e,
                },
                Err(_elapsed) => UpstreamError::Timeout {
                    upstream: self.label.to_string(),
                    timeout_ms: left.as_millis(),
                },
            };
            // The connection is suspect: closed, broken, or silently dead (which only a timeout
            // reveals), so drop it and let the next query reconnect. hickory reports both a full
            // queue and a closed connection as `Busy`, so that too resets: one new handshake at
            // worst, never a connection stuck dead.
            let mut s = slot.lock().await;
            if s.generation == generation {
                s.exchange = None;
            }
            drop(s);
            let retry = reused && matches!(error, UpstreamError::Exchange { .. });
            if !retry {
                return Err(error);
            }
            debug!(upstream = %self.label, error = %error, "reused connection failed; reconnecting");
        }
        Err(UpstreamError::OutOfTime)
    }

    /// The slot's exchange, connecting if there is none. Holding the slot's lock while
    /// connecting makes concurrent queries wait for one connection instead of each opening
    /// their own.
    async fn connection(
        &self,
        slot: &tokio::sync::Mutex<Slot>,
        deadline: Instant,
        provider: &Provider,
        tcp: bool,
    ) -> Result<(Exchange, u64, bool), UpstreamError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut s = tokio::time::timeout(left, slot.lock())
            .await
            .map_err(|_| self.timeout(left))?;
        if let Some(exchange) = &s.exchange {
            return Ok((exchange.clone(), s.generation, true));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let connect = self.connect(provider.clone(), tcp);
        let exchange = tokio::time::timeout(left, connect)
            .await
            .map_err(|_| self.timeout(left))?
            .map_err(|source| UpstreamError::Connect {
                upstream: self.label.to_string(),
                source,
            })?;
        s.generation = s.generation.wrapping_add(1);
        s.exchange = Some(exchange.clone());
        Ok((exchange, s.generation, false))
    }

    fn timeout(&self, left: Duration) -> UpstreamError {
        UpstreamError::Timeout {
            upstream: self.label.to_string(),
            timeout_ms: left.as_millis(),
        }
    }

    /// Opens a connection (the caller bounds the time it may take). `request_timeout` applies
    /// to each query sent over it later.
    async fn connect(&self, provider: Provider, tcp: bool) -> Result<Exchange, NetError> {
        let timeout = self.request_timeout.max(Duration::from_millis(1));
        match &self.kind {
            Kind::Plain if !tcp => Ok(UdpClientStream::builder(self.addr, provider)
                .with_timeout(Some(timeout))
                .exchange()),
            Kind::Plain => {
                self.connections.fetch_add(1, Ordering::Relaxed);
                TcpClientStream::exchange(
                    self.addr,
                    None,
                    timeout,
                    Some(MAX_ACTIVE_PER_CONNECTION),
                    provider,
                )
                .await
            }
            Kind::Tls { name, config } => {
                self.connections.fetch_add(1, Ordering::Relaxed);
                hickory_net::tls::tls_exchange(
                    self.addr,
                    name.clone(),
                    (**config).clone(),
                    timeout,
                    Some(MAX_ACTIVE_PER_CONNECTION),
                    provider,
                )
                .await
            }
            Kind::Https { name, path, config } => {
                self.connections.fetch_add(1, Ordering::Relaxed);
                let mut builder = HttpsClientStream::builder(Arc::clone(config), provider);
                builder.request_timeout(timeout);
                builder
                    .exchange(self.addr, Arc::clone(name), Arc::clone(path))
                    .await
            }
        }
    }
}
