//! Records for tests: varied, deterministic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_history::{Direction, Kind, Protocol, Record, Scope, Verdict};

/// Test base time: 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;

/// Record number `i` of app `app`, decided at `T0 + i` seconds.
pub fn record(i: u32, app: &str) -> Record {
    let blocked = i.is_multiple_of(5);
    Record {
        kind: if i.is_multiple_of(7) {
            Kind::Dns
        } else {
            Kind::Connection
        },
        unix_ms: T0 + i64::from(i) * 1_000,
        app: app.to_owned(),
        pid: Some(1_000 + i % 13),
        exe: Some(app.to_owned()),
        direction: if i.is_multiple_of(11) {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        protocol: if i.is_multiple_of(3) {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        local_port: Some(40_000 + (i % 1000) as u16),
        remote: if i.is_multiple_of(4) {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (i % 50) as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 200) as u8))
        },
        remote_port: Some(443),
        domain: (!i.is_multiple_of(6)).then(|| format!("host{}.example{}.com", i % 17, i % 3)),
        country: i.is_multiple_of(2).then(|| {
            match i % 3 {
                0 => "DE",
                1 => "US",
                _ => "FR",
            }
            .to_owned()
        }),
        asn: (i.is_multiple_of(2)).then_some(64_496 + i % 4),
        scope: Scope::Internet,
        verdict: if blocked {
            Verdict::Block
        } else {
            Verdict::Allow
        },
        explanation: if blocked {
            "blocked by rule `- 192.0.2.0/24` of global settings".to_owned()
        } else {
            "allowed by default_action of built-in defaults".to_owned()
        },
        bytes_out: if blocked { 0 } else { 100 + u64::from(i) },
        bytes_in: if blocked { 0 } else { 1_000 + u64::from(i) },
        packets_out: if blocked { 1 } else { 3 },
        packets_in: if blocked { 0 } else { 4 },
        start_ms: Some(T0 + i64::from(i) * 1_000),
        end_ms: (!blocked).then_some(T0 + i64::from(i) * 1_000 + 500),
    }
}
