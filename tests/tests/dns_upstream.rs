//! The DNS resolver crate (`portcullis-dns`) against real servers in the lab: `unbound`
//! serving DNS-over-TLS and DNS-over-HTTPS with a test CA in the server namespace, `dnsmasq`
//! as the LAN's resolver. The resolver and its server run in-process on a thread inside the
//! client namespace; queries are real UDP/TCP datagrams to its listeners there.
//!
//! Every test needs root (`require_root!`) and tears its lab down, also on panic.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure stops the test with its message"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_dns::names::{ZoneSet, parse_domain};
use portcullis_dns::policy::{AllowAll, Protocol, ZoneBlocklist};
use portcullis_dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use portcullis_dns::proto::rr::{Name, RData, RecordType};
use portcullis_dns::{
    BlockStyle, DnsConfig, DnsServer, LocalZone, Outcome, QueryPolicy, QuerySource, Resolver,
    Trust, UpstreamSpec,
};
use portcullis_lab::dns::{TestPki, UnboundConfig, start_dnsmasq, start_unbound};
use portcullis_lab::{Lab, LabProcess, require_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const TLS_NAME: &str = "dns.test";

/// The zone every unbound serves; `who.test` says which instance answered.
fn records(who: &str) -> Vec<String> {
    vec![
        "www.test. 300 IN A 192.0.2.10".into(),
        "www.test. 300 IN AAAA 2001:db8::10".into(),
        format!("who.test. 60 IN TXT \"{who}\""),
        "shop.test. 300 IN CNAME edge.tracker.test.".into(),
        "edge.tracker.test. 300 IN A 192.0.2.66".into(),
        "rebind.test. 60 IN A 192.168.7.7".into(),
    ]
}

/// A lab with a PKI for the server's addresses and one unbound serving plain (53), DoT (853)
/// and DoH (443) on both of them.
fn lab_with_unbound(name: &str) -> (Lab, TestPki, LabProcess) {
    let lab = Lab::new(name);
    let server = lab.server();
    let ips = [IpAddr::V4(server.ipv4()), IpAddr::V6(server.ipv6())];
    let pki = TestPki::new(server, TLS_NAME, &ips);
    let unbound = start_unbound(
        server,
        &pki,
        &UnboundConfig {
            addrs: ips.to_vec(),
            plain_port: Some(53),
            tls_port: Some(853),
            https_port: Some(443),
            zone: "test.".into(),
            records: records("a"),
            log_queries: true,
        },
    );
    (lab, pki, unbound)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config(upstreams: Vec<UpstreamSpec>, ca: &std::path::Path) -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        upstreams,
        trust: Trust::CaFile(ca.to_owned()),
        attempt_timeout_ms: 1_500,
        query_timeout_ms: 3_000,
        ..DnsConfig::default()
    }
}

async fn serve(config: &DnsConfig, policy: Arc<dyn QueryPolicy>) -> (Arc<Resolver>, DnsServer) {
    let resolver = Arc::new(Resolver::new(config, policy).unwrap());
    let server = DnsServer::start(&config.listen, config.server, Arc::clone(&resolver))
        .await
        .unwrap();
    (resolver, server)
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Asks the server at `addr` over UDP or TCP, as an app would; 5 s at most.
async fn ask(addr: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Message {
    let id = u16::try_from(name.len() * 31 % 65_000).unwrap() + 7;
    let bytes = query(id, name, qtype);
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        if tcp {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
                .await
                .unwrap();
            s.write_all(&bytes).await.unwrap();
            let len = s.read_u16().await.unwrap();
            let mut buf = vec![0; usize::from(len)];
            s.read_exact(&mut buf).await.unwrap();
            buf
        } else {
            let bind: SocketAddr = if addr.is_ipv4() {
                "127.0.0.1:0"
            } else {
                "[::1]:0"
            }
            .parse()
            .unwrap();
            let sock = UdpSocket::bind(bind).await.unwrap();
            sock.send_to(&bytes, addr).await.unwrap();
            let mut buf = vec![0; 4096];
            let n = sock.recv(&mut buf).await.unwrap();
            buf.truncate(n);
            buf
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no reply for {name} from {addr} within 5 s"));
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

fn addrs_of(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn txt_of(m: &Message) -> String {
    m.answers
        .iter()
        .find_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// A TCP relay on the client's loopback that counts the connections it accepts: each is one
/// TCP connection, hence one TLS handshake, to the upstream behind it.
struct CountingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn counting_proxy(target: SocketAddr) -> CountingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let mut relays = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            relays.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ignored = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    CountingProxy {
        addr,
        accepted,
        task,
    }
}

fn local_source() -> QuerySource {
    QuerySource {
        peer: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:53".parse().unwrap(),
        protocol: Protocol::Udp,
    }
}

/// Resolves over `spec` (pointed at a counting proxy) through the server: A over UDP/IPv4,
/// AAAA over TCP/IPv6, 20 more names sequentially and 10 at once, and checks that all of it
/// used one upstream connection.
async fn resolves_with_one_handshake(
    spec: impl Fn(SocketAddr) -> UpstreamSpec,
    target: SocketAddr,
    ca: &std::path::Path,
) {
    let proxy = counting_proxy(target).await;
    let cfg = config(vec![spec(proxy.addr)], ca);
    let (resolver, server) = serve(&cfg, Arc::new(AllowAll)).await;
    let [v4, v6] = [server.local_addrs()[0], server.local_addrs()[1]];

    let a = ask(v4, "www.test.", RecordType::A, false).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs_of(&a), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    let aaaa = ask(v6, "www.test.", RecordType::AAAA, true).await;
    assert_eq!(
        addrs_of(&aaaa),
        vec!["2001:db8::10".parse::<IpAddr>().unwrap()]
    );

    for i in 0..20 {
        let nx = ask(v4, &format!("n{i}.test."), RecordType::A, i % 2 == 0).await;
        assert_eq!(
            nx.metadata.response_code,
            ResponseCode::NXDomain,
            "n{i}.test"
        );
        // The negative answer carries the zone's SOA (negative caching downstream too).
        assert_eq!(nx.authorities.len(), 1);
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        set.spawn(async move { ask(v4, &format!("p{i}.test."), RecordType::A, false).await });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().metadata.response_code, ResponseCode::NXDomain);
    }
    // Cached now: the TTL counts down from 300, and no new upstream query is needed.
    let again = ask(v4, "www.test.", RecordType::A, false).await;
    assert!(again.answers[0].ttl <= 300);

    assert_eq!(
        proxy.accepted.load(Ordering::SeqCst),
        1,
        "every query must reuse the first connection"
    );
    let stats = resolver.upstream_stats();
    assert_eq!(stats[0].connections, 1, "{stats:?}");
    assert_eq!(stats[0].failed, 0, "{stats:?}");
    server.shutdown().await;
}

#[test]
fn dot_upstream_resolves_through_the_server_on_one_connection() {
    require_root!();
    let (lab, pki, _unbound) = lab_with_unbound("dns-dot");
    let target = SocketAddr::new(lab.server().ipv4().into(), 853);
    lab.client().in_ns(|| {
        runtime().block_on(resolves_with_one_handshake(
            |addr| UpstreamSpec::tls(TLS_NAME, vec![addr]),
            target,
            &pki.ca,
        ));
    });
}

#[test]
fn doh_upstream_resolves_through_the_server_on_one_connection() {
    require_root!();
    let (lab, pki, _unbound) = lab_with_unbound("dns-doh");
    let target = SocketAddr::new(lab.server().ipv4().into(), 443);
    lab.client().in_ns(|| {
        runtime().block_on(resolves_with_one_handshake(
            |addr| UpstreamSpec::https(TLS_NAME, "/dns-query", vec![addr]),
            target,
            &pki.ca,
        ));
    });
}

#[test]
fn a_certificate_of_another_ca_or_for_another_name_is_refused() {
    require_root!();
    let (lab, pki, unbound) = lab_with_unbound("dns-badcert");
    let ip: IpAddr = lab.server().ipv4().into();
    let dot = SocketAddr::new(ip, 853);
    let doh = SocketAddr::new(ip, 443);
    lab.client().in_ns(|| {
        runtime().block_on(async {
            let cases = [
                (
                    UpstreamSpec::tls(TLS_NAME, vec![dot]),
                    &pki.other_ca,
                    "UnknownIssuer",
                ),
                (
                    UpstreamSpec::https(TLS_NAME, "/dns-query", vec![doh]),
                    &pki.other_ca,
                    "UnknownIssuer",
                ),
                (
                    UpstreamSpec::tls("wrong.test", vec![dot]),
                    &pki.ca,
                    "not valid for name",
                ),
                (
                    UpstreamSpec::https("wrong.test", "/dns-query", vec![doh]),
                    &pki.ca,
                    "not valid for name",
                ),
            ];
            for (spec, ca, why) in cases {
                let label = spec.to_string();
                let cfg = config(vec![spec], ca);
                let (resolver, server) = serve(&cfg, Arc::new(AllowAll)).await;
                let reply = ask(server.local_addrs()[0], "www.test.", RecordType::A, false).await;
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::ServFail,
                    "{label}"
                );
                assert!(reply.answers.is_empty());
                // The resolver says why.
                let res = resolver
                    .resolve(
                        &local_source(),
                        &Message::from_vec(&query(1, "www.test.", RecordType::A)).unwrap(),
                    )
                    .await;
                let Outcome::Failed { error } = &res.outcome else {
                    panic!("{label}: {:?}", res.outcome);
                };
                assert!(
                    error.contains("invalid peer certificate") && error.contains(why),
                    "{label}: {error}"
                );
                server.shutdown().await;
            }
        });
    });
    // Nothing reached the server's DNS: no query was ever sent over an unverified channel.
    assert!(
        !unbound.stderr().contains("www.test."),
        "{}",
        unbound.stderr()
    );
}

#[test]
fn a_dead_upstream_fails_over_to_the_next() {
    require_root!();
    let lab = Lab::new("dns-failover");
    let server = lab.server();
    let (v4, v6): (IpAddr, IpAddr) = (server.ipv4().into(), server.ipv6().into());
    let pki = TestPki::new(server, TLS_NAME, &[v4, v6]);
    let first = start_unbound(
        server,
        &pki,
        &UnboundConfig {
            addrs: vec![v6],
            plain_port: None,
            tls_port: Some(853),
            https_port: None,
            zone: "test.".into(),
            records: records("first"),
            log_queries: true,
        },
    );
    let _second = start_unbound(
        server,
        &pki,
        &UnboundConfig {
            addrs: vec![v4],
            plain_port: None,
            tls_port: Some(8853),
            https_port: None,
            zone: "test.".into(),
            records: records("second"),
            log_queries: true,
        },
    );
    let client = lab.client().clone();
    let ca = pki.ca.clone();
    client.in_ns(|| {
        runtime().block_on(async {
            let cfg = config(
                vec![
                    // The first over IPv6: its (untimed) first query also gets past the ~1 s
                    // that the first IPv6 packets on a fresh veth take here.
                    UpstreamSpec::tls(TLS_NAME, vec![SocketAddr::new(v6, 853)]),
                    UpstreamSpec::tls(TLS_NAME, vec![SocketAddr::new(v4, 8853)]),
                ],
                &ca,
            );
            let (resolver, dns) = serve(&cfg, Arc::new(AllowAll)).await;
            let at = dns.local_addrs()[0];
            assert_eq!(
                txt_of(&ask(at, "who.test.", RecordType::TXT, false).await),
                "first"
            );

            first.kill();
            resolver.cache().clear();
            let started = Instant::now();
            let reply = ask(at, "who.test.", RecordType::TXT, false).await;
            assert_eq!(txt_of(&reply), "second");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{:?}",
                started.elapsed()
            );
            let stats = resolver.upstream_stats();
            assert!(stats[0].failed >= 1 && stats[0].backing_off, "{stats:?}");

            // While the first is backing off, it is not waited for.
            resolver.cache().clear();
            let started = Instant::now();
            assert_eq!(
                txt_of(&ask(at, "who.test.", RecordType::TXT, true).await),
                "second"
            );
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{:?}",
                started.elapsed()
            );
            dns.shutdown().await;
        });
    });
}

#[test]
fn split_horizon_rebinding_and_cname_cloaking_against_real_servers() {
    require_root!();
    let (lab, pki, unbound) = lab_with_unbound("dns-split");
    let server = lab.server();
    let lan: IpAddr = server.ipv4().into();
    let dnsmasq = start_dnsmasq(
        server,
        lan,
        5353,
        "home.arpa",
        &["nas.home.arpa,192.168.1.20", "printer.home.arpa,fd00::20"],
        // Six 250-byte strings: too big for UDP, so plain DNS must retry over TCP.
        &[format!(
            "big.home.arpa{}",
            format!(",{}", "x".repeat(250)).repeat(6)
        )],
    );
    let dot = SocketAddr::new(server.ipv4().into(), 853);
    let ca = pki.ca.clone();
    lab.client().in_ns(|| {
        runtime().block_on(async {
            let mut cfg = config(vec![UpstreamSpec::tls(TLS_NAME, vec![dot])], &ca);
            cfg.local_zones = vec![LocalZone {
                zone: "home.arpa".into(),
                servers: vec![UpstreamSpec::plain(SocketAddr::new(lan, 5353))],
            }];
            let trackers = ZoneBlocklist::new(
                ZoneSet::new([parse_domain("tracker.test").unwrap()]),
                BlockStyle::NxDomain,
                "the lab's tracker list",
            );
            let (resolver, dns) = serve(&cfg, Arc::new(trackers)).await;
            let at = dns.local_addrs()[0];

            // Local names: from dnsmasq, private addresses allowed.
            let nas = ask(at, "nas.home.arpa.", RecordType::A, false).await;
            assert_eq!(
                addrs_of(&nas),
                vec!["192.168.1.20".parse::<IpAddr>().unwrap()]
            );
            let printer = ask(at, "printer.home.arpa.", RecordType::AAAA, true).await;
            assert_eq!(
                addrs_of(&printer),
                vec!["fd00::20".parse::<IpAddr>().unwrap()]
            );
            let missing = ask(at, "gone.home.arpa.", RecordType::A, false).await;
            assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

            // An answer too big for UDP: the resolver retries over TCP upstream; the app gets
            // it whole over TCP, and a truncated reply (TC) over UDP without EDNS.
            let big = ask(at, "big.home.arpa.", RecordType::TXT, true).await;
            assert_eq!(txt_of(&big).len(), 6 * 250);
            let cut = ask(at, "big.home.arpa.", RecordType::TXT, false).await;
            assert!(cut.metadata.truncation && cut.answers.is_empty());
            let lan_stats = resolver.local_stats();
            assert_eq!(lan_stats[0].1[0].connections, 1, "{lan_stats:?}");

            // Public names: over DoT.
            let www = ask(at, "www.test.", RecordType::A, false).await;
            assert_eq!(
                addrs_of(&www),
                vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
            );

            // A public name on a private address: refused.
            let rebind = ask(at, "rebind.test.", RecordType::A, false).await;
            assert_eq!(rebind.metadata.response_code, ResponseCode::Refused);
            assert!(rebind.answers.is_empty());

            // A first-party name that is a CNAME of a listed tracker: blocked.
            let shop = ask(at, "shop.test.", RecordType::A, false).await;
            assert_eq!(shop.metadata.response_code, ResponseCode::NXDomain);
            assert!(shop.answers.is_empty());
            let res = resolver
                .resolve(
                    &local_source(),
                    &Message::from_vec(&query(2, "shop.test.", RecordType::A)).unwrap(),
                )
                .await;
            let Outcome::Blocked { name, because, .. } = &res.outcome else {
                panic!("{:?}", res.outcome);
            };
            assert_eq!(name.to_ascii(), "edge.tracker.test.");
            assert!(because.contains("the lab's tracker list"), "{because}");

            // Firefox's canary never leaves the machine.
            let canary = ask(at, "use-application-dns.net.", RecordType::A, false).await;
            assert_eq!(canary.metadata.response_code, ResponseCode::NXDomain);
            dns.shutdown().await;
        });
    });
    // Each server saw only its own names.
    let (lan_log, public_log) = (dnsmasq.stderr(), unbound.stderr());
    assert!(lan_log.contains("nas.home.arpa"), "{lan_log}");
    assert!(!lan_log.contains("www.test"), "{lan_log}");
    assert!(public_log.contains("www.test."), "{public_log}");
    assert!(!public_log.contains("home.arpa"), "{public_log}");
    assert!(!public_log.contains("use-application-dns"), "{public_log}");
}
