//! The DNS query path with hostile input on both sides: bytes an app (or anyone who can reach
//! the listener) sends as a query, and bytes an upstream sends back as its answer. Input
//! layout: a big-endian u16 length, that many bytes of query, the rest is the upstream's
//! answer. Nothing may panic; a FORMERR is a 12-byte header echoing the query's id; every
//! reply encodes and fits the client's UDP limit; a blocked or rebinding answer carries no
//! records. The resolver (with its cache, policy, split horizon and rebinding check) is shared
//! across runs, so cached state from earlier inputs is exercised too; it never does I/O here.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use portcullis_dns::names::{ZoneSet, parse_domain};
use portcullis_dns::policy::{Protocol, ZoneBlocklist};
use portcullis_dns::proto::op::Message;
use portcullis_dns::reply::{encode, udp_limit};
use portcullis_dns::resolver::Step;
use portcullis_dns::server::{Decoded, decode_query};
use portcullis_dns::upstream::Answered;
use portcullis_dns::{
    BlockStyle, DnsConfig, LocalZone, Outcome, QuerySource, Resolver, UpstreamError, UpstreamSpec,
};

static RESOLVER: LazyLock<Resolver> = LazyLock::new(|| {
    let plain = |s: &str| s.parse::<UpstreamSpec>().expect("valid upstream");
    let config = DnsConfig {
        upstreams: vec![plain("plain://192.0.2.53")],
        local_zones: vec![LocalZone {
            zone: "home.arpa".into(),
            servers: vec![plain("plain://192.168.1.1")],
        }],
        ..DnsConfig::default()
    };
    let zones = ["tracker.example", "ads.example"].map(|z| parse_domain(z).expect("valid zone"));
    let policy = ZoneBlocklist::new(ZoneSet::new(zones), BlockStyle::ZeroIp, "the fuzz list");
    Resolver::new(&config, Arc::new(policy)).expect("valid config")
});

fuzz_target!(|data: &[u8]| {
    let (query, answer) = match data {
        [hi, lo, rest @ ..] => {
            rest.split_at(usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len()))
        }
        _ => (data, &[][..]),
    };
    let source = QuerySource {
        peer: "127.0.0.1:40000".parse().expect("addr"),
        local: "127.0.0.153:53".parse().expect("addr"),
        protocol: Protocol::Udp,
    };
    let request = match decode_query(query) {
        Decoded::Query(m) => *m,
        Decoded::FormErr(reply) => {
            assert_eq!(reply.len(), 12);
            assert_eq!(reply.get(..2), query.get(..2));
            return;
        }
        Decoded::Drop => return,
    };
    let now = Instant::now();
    let resolution = match RESOLVER.begin(&source, &request, now) {
        Step::Done(r) => r,
        Step::Forward(forward) => {
            let upstream = match Message::from_vec(answer) {
                Ok(message) => Ok(Answered {
                    message,
                    upstream: "plain://192.0.2.53:53".into(),
                    latency: Duration::from_millis(1),
                }),
                Err(_) => Err(UpstreamError::OutOfTime),
            };
            RESOLVER.finish(&source, &request, forward, upstream, now)
        }
    };
    let reply = &resolution.response;
    assert_eq!(reply.metadata.id, request.metadata.id);
    if matches!(
        resolution.outcome,
        Outcome::Blocked { .. } | Outcome::Rebinding(_)
    ) {
        let question = request.queries.first().map(|q| q.name());
        assert!(reply.answers.iter().all(|r| Some(&r.name) == question));
    }
    let limit = udp_limit(&request);
    let bytes = encode(reply, limit).expect("every reply encodes");
    assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
});
