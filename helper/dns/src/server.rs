//! The DNS server: UDP and TCP listeners (IPv4 and IPv6) that decode queries and hand each
//! one, with its peer address, to a [`Resolve`]. This module owns sockets, framing and every
//! limit on them: in-flight queries, TCP connections, per-connection pipelining, idle
//! timeouts. It must not decide anything about names (the resolver does) and must never
//! panic on input: undecodable queries get FORMERR when their header can be read and are
//! dropped otherwise, as are responses sent to us.
//!
//! Dropping the [`DnsServer`] stops the listeners and every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, info, trace};

use crate::error::{ConfigError, ServerError};
use crate::policy::{Protocol, QuerySource};
use crate::reply;
use crate::resolver::Resolve;

/// Largest UDP datagram read; longer queries are cut and so fail to decode (FORMERR).
const UDP_RECV_BUFFER: usize = 4096;
/// How often binding to a port picked by the OS is retried when TCP finds it taken.
const BIND_TRIES: usize = 8;

/// Limits of the listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Queries being resolved at once, UDP and TCP together. A UDP query beyond it is
    /// dropped (the client retries); a TCP connection waits.
    pub max_in_flight: usize,
    /// Open TCP connections; more are closed at once.
    pub max_tcp_connections: usize,
    /// Queries resolved at once on one TCP connection (pipelining).
    pub max_tcp_pipeline: usize,
    /// A TCP connection with nothing to do is closed after this long, milliseconds; it is also
    /// the time a started message may take to arrive.
    pub tcp_idle_timeout_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_tcp_connections: 128,
            max_tcp_pipeline: 16,
            tcp_idle_timeout_ms: 10_000,
        }
    }
}

impl ServerLimits {
    /// Checks that no limit is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (what, zero) in [
            ("server.max_in_flight", self.max_in_flight == 0),
            ("server.max_tcp_connections", self.max_tcp_connections == 0),
            ("server.max_tcp_pipeline", self.max_tcp_pipeline == 0),
            ("server.tcp_idle_timeout_ms", self.tcp_idle_timeout_ms == 0),
        ] {
            if zero {
                return Err(ConfigError::ZeroLimit { what });
            }
        }
        Ok(())
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.tcp_idle_timeout_ms)
    }
}

/// What to do with the bytes of one query: the decoded query, or (if it cannot be decoded)
/// the FORMERR reply to send, or nothing.
#[derive(Debug)]
pub enum Decoded {
    /// A query to resolve.
    Query(Box<Message>),
    /// Undecodable but with a query header: send this FORMERR.
    FormErr(Vec<u8>),
    /// Not a query at all (too short, or a response): ignore.
    Drop,
}

/// Decodes one query's bytes. Never panics.
pub fn decode_query(bytes: &[u8]) -> Decoded {
    match Message::from_vec(bytes) {
        Ok(m) if m.metadata.message_type == MessageType::Query => Decoded::Query(Box::new(m)),
        Ok(_) => Decoded::Drop,
        Err(_) => match reply::formerr_for_bytes(bytes) {
            Some(b) => Decoded::FormErr(b),
            None => Decoded::Drop,
        },
    }
}

/// Decodes, resolves and encodes one query; `limit` is the transport's size limit for the
/// reply (the request's UDP limit is applied on top for UDP). `None`: send nothing.
pub async fn answer_bytes<R: Resolve>(
    resolver: &R,
    source: QuerySource,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let request = match decode_query(bytes) {
        Decoded::Query(m) => *m,
        Decoded::FormErr(b) => return Some(b),
        Decoded::Drop => return None,
    };
    let limit = match source.protocol {
        Protocol::Udp => reply::udp_limit(&request),
        Protocol::Tcp => usize::from(u16::MAX),
    };
    let reply = resolver.resolve(source, request).await;
    reply::encode(&reply, limit)
}

/// Running listeners. Dropping it stops them.
#[derive(Debug)]
pub struct DnsServer {
    addrs: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

impl DnsServer {
    /// Listens on every address over UDP and TCP (the same port for both; port 0 picks one)
    /// and serves queries with `resolver`. Must run inside a tokio runtime.
    pub async fn start<R: Resolve>(
        listen: &[SocketAddr],
        limits: ServerLimits,
        resolver: Arc<R>,
    ) -> Result<Self, ServerError> {
        if listen.is_empty() {
            return Err(ServerError::NoListenAddress);
        }
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
        let connections = Arc::new(Semaphore::new(limits.max_tcp_connections));
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for &addr in listen {
            let (udp, tcp) = bind_pair(addr).await?;
            let local = udp.local_addr().map_err(|source| ServerError::Bind {
                addr,
                proto: "udp",
                source,
            })?;
            info!(%local, "DNS server listening (UDP and TCP)");
            addrs.push(local);
            tasks.spawn(serve_udp(
                Arc::new(udp),
                local,
                Arc::clone(&resolver),
                Arc::clone(&in_flight),
            ));
            tasks.spawn(serve_tcp(
                tcp,
                local,
                Arc::clone(&resolver),
                Arc::clone(&in_flight),
                Arc::clone(&connections),
                limits,
            ));
        }
        Ok(Self { addrs, tasks })
    }

    /// The addresses served, with the ports actually bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops the listeners and every connection and waits for them to end.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Binds UDP, then TCP on the same port. With port 0 the OS picks the UDP port, which may be
/// taken for TCP: then it tries again, a few times.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ServerError> {
    let mut last = None;
    for _ in 0..BIND_TRIES {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr,
                proto: "udp",
                source,
            })?;
        let bound = udp.local_addr().map_err(|source| ServerError::Bind {
            addr,
            proto: "udp",
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if addr.port() == 0 => last = Some(source),
            Err(source) => {
                return Err(ServerError::Bind {
                    addr,
                    proto: "tcp",
                    source,
                });
            }
        }
    }
    Err(ServerError::Bind {
        addr,
        proto: "tcp",
        source: last.unwrap_or_else(|| std::io::Error::other("no port found")),
    })
}

async fn serve_udp<R: Resolve>(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    resolver: Arc<R>,
    in_flight: Arc<Semaphore>,
) {
    let mut queries = JoinSet::new();
    let mut buf = vec![0_u8; UDP_RECV_BUFFER];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            Some(_) = queries.join_next(), if !queries.is_empty() => continue,
        };
        let (len, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier replies surface here on some systems: not fatal.
                // A short pause keeps a persistent error from spinning the CPU.
                trace!(error = %e, "UDP receive error");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            trace!(%peer, "too many queries in flight; UDP query dropped");
            continue;
        };
        let bytes = buf.get(..len).unwrap_or_default().to_vec();
        let source = QuerySource {
            peer,
            local,
            protocol: Protocol::Udp,
        };
        let socket = Arc::clone(&socket);
        let resolver = Arc::clone(&resolver);
        queries.spawn(async move {
            if let Some(reply) = answer_bytes(&*resolver, source, &bytes).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                trace!(%peer, error = %e, "UDP send failed");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp<R: Resolve>(
    listener: TcpListener,
    local: SocketAddr,
    resolver: Arc<R>,
    in_flight: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    limits: ServerLimits,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: wait a moment instead of spinning.
                debug!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            trace!(%peer, "too many TCP connections; closed");
            drop(stream);
            continue;
        };
        let _ignored = stream.set_nodelay(true);
        let source = QuerySource {
            peer,
            local,
            protocol: Protocol::Tcp,
        };
        conns.spawn(serve_connection(
            stream,
            source,
            Arc::clone(&resolver),
            Arc::clone(&in_flight),
            limits,
            permit,
        ));
    }
}

/// Reads length-framed queries, resolves up to `max_tcp_pipeline` at once and writes each
/// reply as it is ready (RFC 7766 allows out-of-order replies). Ends on EOF, a read error,
/// a zero length, or `tcp_idle_timeout` without a complete message; replies still being
/// resolved are written before the connection closes.
async fn serve_connection<R: Resolve>(
    stream: TcpStream,
    source: QuerySource,
    resolver: Arc<R>,
    in_flight: Arc<Semaphore>,
    limits: ServerLimits,
    _connection: tokio::sync::OwnedSemaphorePermit,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits.max_tcp_pipeline);
    let write_task = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let Ok(len) = u16::try_from(reply.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            if writer.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ignored = writer.shutdown().await;
    });
    let mut pending = JoinSet::new();
    let idle = limits.idle();
    loop {
        while pending.len() >= limits.max_tcp_pipeline {
            let _done = pending.join_next().await;
        }
        let len = match tokio::time::timeout(idle, reader.read_u16()).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(len)) => usize::from(len),
        };
        let mut bytes = vec![0_u8; len];
        match tokio::time::timeout(idle, reader.read_exact(&mut bytes)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout(idle, Arc::clone(&in_flight).acquire_owned()).await
        else {
            break;
        };
        let resolver = Arc::clone(&resolver);
        let tx = tx.clone();
        pending.spawn(async move {
            match answer_bytes(&*resolver, source, &bytes).await {
                Some(reply) => {
                    let _ignored = tx.send(reply).await;
                }
                // Nothing to say to a non-query on a stream: close, as for garbage.
                None => trace!(peer = %source.peer, "dropped a non-query on TCP"),
            }
            drop(permit);
        });
    }
    while pending.join_next().await.is_some() {}
    drop(tx);
    let _ignored = write_task.await;
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    /// Answers every query with NOERROR and no records, after `delay`.
    #[derive(Debug)]
    struct Echo {
        delay: Duration,
    }

    impl Resolve for Echo {
        async fn resolve(&self, _source: QuerySource, request: Message) -> Message {
            tokio::time::sleep(self.delay).await;
            reply::error_reply(&request, ResponseCode::NoError)
        }
    }

    fn query_bytes(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.queries
            .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    async fn start(limits: ServerLimits, delay: Duration) -> DnsServer {
        DnsServer::start(
            &["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
            limits,
            Arc::new(Echo { delay }),
        )
        .await
        .unwrap()
    }

    async fn udp_ask(server: SocketAddr, bytes: &[u8]) -> Option<Message> {
        let bind: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        }
        .parse()
        .unwrap();
        let sock = UdpSocket::bind(bind).await.unwrap();
        sock.send_to(bytes, server).await.unwrap();
        let mut buf = vec![0; 4096];
        match tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(Message::from_vec(&buf[..n]).unwrap()),
            _ => None,
        }
    }

    async fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(bytes).await.unwrap();
    }

    async fn tcp_read(stream: &mut TcpStream) -> Option<Message> {
        let len = tokio::time::timeout(Duration::from_secs(2), stream.read_u16())
            .await
            .ok()?
            .ok()?;
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await.ok()?;
        Some(Message::from_vec(&buf).unwrap())
    }

    #[tokio::test]
    async fn udp_and_tcp_over_ipv4_and_ipv6() {
        let server = start(ServerLimits::default(), Duration::ZERO).await;
        assert_eq!(server.local_addrs().len(), 2);
        for &addr in server.local_addrs() {
            let m = udp_ask(addr, &query_bytes(11, "a.example.")).await.unwrap();
            assert_eq!(m.metadata.id, 11);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            let mut s = TcpStream::connect(addr).await.unwrap();
            tcp_send(&mut s, &query_bytes(12, "b.example.")).await;
            assert_eq!(tcp_read(&mut s).await.unwrap().metadata.id, 12);
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn malformed_queries_get_formerr_or_nothing() {
        let server = start(ServerLimits::default(), Duration::ZERO).await;
        let addr = server.local_addrs()[0];
        let mut garbage = query_bytes(0x4242, "x.example.");
        garbage.truncate(15);
        let m = udp_ask(addr, &garbage).await.unwrap();
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Too short for a header, or a response: silence.
        assert!(udp_ask(addr, &[1, 2, 3]).await.is_none());
        assert!(udp_ask(addr, &[]).await.is_none());
        let mut response = query_bytes(5, "x.example.");
        response[2] |= 0x80;
        assert!(udp_ask(addr, &response).await.is_none());
        // Count fields that promise more than is there.
        let mut liar = query_bytes(6, "x.example.");
        liar[5] = 200;
        assert_eq!(
            udp_ask(addr, &liar).await.unwrap().metadata.response_code,
            ResponseCode::FormErr
        );

        // TCP: FORMERR too, and the connection goes on.
        let mut s = TcpStream::connect(addr).await.unwrap();
        tcp_send(&mut s, &garbage).await;
        assert_eq!(
            tcp_read(&mut s).await.unwrap().metadata.response_code,
            ResponseCode::FormErr
        );
        tcp_send(&mut s, &query_bytes(7, "ok.example.")).await;
        assert_eq!(tcp_read(&mut s).await.unwrap().metadata.id, 7);
        // A zero length ends the connection.
        s.write_all(&[0, 0]).await.unwrap();
        assert!(tcp_read(&mut s).await.is_none());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn tcp_pipelines_and_closes_idle_connections() {
        let limits = ServerLimits {
            tcp_idle_timeout_ms: 200,
            ..ServerLimits::default()
        };
        let server = start(limits, Duration::from_millis(20)).await;
        let addr = server.local_addrs()[0];
        let mut s = TcpStream::connect(addr).await.unwrap();
        for id in 1..=5 {
            tcp_send(&mut s, &query_bytes(id, "p.example.")).await;
        }
        let mut ids: Vec<u16> = Vec::new();
        for _ in 0..5 {
            ids.push(tcp_read(&mut s).await.unwrap().metadata.id);
        }
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        // Idle: closed by the server after ~200 ms.
        let started = std::time::Instant::now();
        assert!(tcp_read(&mut s).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        // A half-sent message is given up on too.
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(&[0, 40, 1, 2]).await.unwrap();
        assert!(tcp_read(&mut half).await.is_none());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn connection_limit_closes_extra_connections() {
        let limits = ServerLimits {
            max_tcp_connections: 2,
            ..ServerLimits::default()
        };
        let server = start(limits, Duration::ZERO).await;
        let addr = server.local_addrs()[0];
        let mut held = Vec::new();
        for id in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            tcp_send(&mut s, &query_bytes(id, "h.example.")).await;
            assert!(tcp_read(&mut s).await.is_some());
            held.push(s);
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        tcp_send(&mut extra, &query_bytes(9, "h.example.")).await;
        assert!(tcp_read(&mut extra).await.is_none());
        drop(held);
        // Freed: a new connection is served again (the server notices the close first).
        let mut served = false;
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            tcp_send(&mut s, &query_bytes(10, "h.example.")).await;
            if tcp_read(&mut s).await.is_some() {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn udp_beyond_the_in_flight_limit_is_dropped_not_queued() {
        let limits = ServerLimits {
            max_in_flight: 1,
            ..ServerLimits::default()
        };
        let server = start(limits, Duration::from_millis(300)).await;
        let addr = server.local_addrs()[0];
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&query_bytes(1, "slow.example."), addr)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        sock.send_to(&query_bytes(2, "slow.example."), addr)
            .await
            .unwrap();
        let mut buf = vec![0; 512];
        let mut ids = Vec::new();
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(600), sock.recv(&mut buf)).await
        {
            ids.push(Message::from_vec(&buf[..n]).unwrap().metadata.id);
        }
        assert_eq!(ids, vec![1]);
        server.shutdown().await;
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            match decode_query(&bytes) {
                Decoded::FormErr(reply) => {
                    let m = Message::from_vec(&reply).unwrap();
                    proptest::prop_assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
                    proptest::prop_assert_eq!(&reply[..2], &bytes[..2]);
                }
                Decoded::Query(m) => proptest::prop_assert_eq!(m.metadata.message_type, MessageType::Query),
                Decoded::Drop => {}
            }
        }
    }
}
