//! DNS rebinding protection: a public name that an Internet resolver puts on a private,
//! loopback, link-local or unspecified address lets a web page reach the user's own machine
//! or LAN under the page's origin. This module owns that check; it must not change answers
//! (the resolver decides what to send instead) and does not apply to answers of local zones.
//!
//! Choice: the whole answer is refused, not stripped of the offending records. A stripped
//! answer would look like a complete one to the app, and an answer that mixes public and
//! private addresses is itself the attack pattern. The ranges are the ones the firewall's
//! scopes use (`portcullis_policy::classify_ip`), so "LAN" means the same everywhere: any
//! address that is not Internet is refused, 0.0.0.0 and :: included (on Linux they connect
//! to this host).

use std::net::IpAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record};
use portcullis_policy::{AddressClass, classify_ip};

use crate::names::ZoneSet;

/// A rebinding attempt found in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebinding {
    /// The record's owner name.
    pub name: Name,
    /// The non-public address it was put on.
    pub addr: IpAddr,
    /// Which kind of address it is (Localhost or Lan).
    pub class: AddressClass,
}

impl Rebinding {
    /// One line for logs and explanations.
    pub fn explain(&self) -> String {
        let kind = match self.class {
            AddressClass::Localhost => "this machine (loopback/unspecified)",
            AddressClass::Lan => "the local network (private/link-local)",
            AddressClass::Internet => "the Internet",
        };
        format!(
            "DNS rebinding protection: the public resolver put {} on {}, an address of {kind}",
            self.name, self.addr
        )
    }
}

/// The rebinding check with its exceptions.
#[derive(Debug, Clone, Default)]
pub struct RebindingGuard {
    enabled: bool,
    /// Names (and their subdomains) that may resolve to non-public addresses: local zones
    /// and the user's allow list.
    allowed: ZoneSet,
}

impl RebindingGuard {
    /// A guard; `allowed` holds the local zones and the allow list.
    pub fn new(enabled: bool, allowed: ZoneSet) -> Self {
        Self { enabled, allowed }
    }

    /// Checks an answer to `question` from a public upstream. Every A/AAAA record in the
    /// answer and additional sections is looked at; a record is fine if its address is an
    /// Internet address, or if the question or the record's owner is an allowed name.
    pub fn check(&self, question: &Name, answer: &Message) -> Result<(), Rebinding> {
        self.check_records(question, answer.answers.iter().chain(&answer.additionals))
    }

    /// [`RebindingGuard::check`] on records from wherever they come (e.g. the cache).
    pub fn check_records<'a>(
        &self,
        question: &Name,
        records: impl IntoIterator<Item = &'a Record>,
    ) -> Result<(), Rebinding> {
        if !self.enabled || self.allowed.contains(question) {
            return Ok(());
        }
        for record in records {
            let addr = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                _ => continue,
            };
            let class = classify_ip(addr);
            if class != AddressClass::Internet && !self.allowed.contains(&record.name) {
                return Err(Rebinding {
                    name: record.name.clone(),
                    addr,
                    class,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, AAAA, TXT};

    use super::*;
    use crate::names::parse_domain;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn with(records: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.answers = records;
        m
    }

    fn a(name: &str, ip: &str) -> Record {
        let data = match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(n(name), 60, data)
    }

    fn guard(allowed: &[&str]) -> RebindingGuard {
        RebindingGuard::new(
            true,
            ZoneSet::new(allowed.iter().map(|z| parse_domain(z).unwrap())),
        )
    }

    #[test]
    fn non_public_addresses_are_classified_and_refused() {
        let g = guard(&[]);
        for (ip, class) in [
            ("10.1.2.3", AddressClass::Lan),
            ("172.16.0.1", AddressClass::Lan),
            ("192.168.1.1", AddressClass::Lan),
            ("169.254.1.1", AddressClass::Lan),
            ("127.0.0.1", AddressClass::Localhost),
            ("0.0.0.0", AddressClass::Localhost),
            ("::1", AddressClass::Localhost),
            ("::", AddressClass::Localhost),
            ("fe80::1", AddressClass::Lan),
            ("fd00::1", AddressClass::Lan),
            ("::ffff:192.168.0.1", AddressClass::Lan),
        ] {
            let q = n("evil.example.");
            let err = g
                .check(&q, &with(vec![a("evil.example.", ip)]))
                .unwrap_err();
            assert_eq!(err.class, class, "{ip}");
            assert!(
                err.explain().contains(ip.trim_start_matches("::ffff:")),
                "{}",
                err.explain()
            );
        }
        for ip in ["1.1.1.1", "2606:4700::1111", "100.64.0.1"] {
            assert!(
                g.check(&n("ok.example."), &with(vec![a("ok.example.", ip)]))
                    .is_ok(),
                "{ip}"
            );
        }
    }

    #[test]
    fn one_private_record_refuses_the_whole_answer_also_behind_a_cname() {
        let g = guard(&[]);
        let msg = with(vec![
            a("cdn.example.", "192.0.2.1"),
            a("cdn.example.", "192.168.0.10"),
        ]);
        assert!(g.check(&n("www.example."), &msg).is_err());
        let mut extra = with(vec![a("www.example.", "192.0.2.1")]);
        extra.additionals = vec![a("ns.example.", "127.0.0.1")];
        assert!(g.check(&n("www.example."), &extra).is_err());
    }

    #[test]
    fn allowed_names_local_zones_and_a_disabled_guard_pass() {
        let g = guard(&["home.arpa", "router.example.com"]);
        let nas = with(vec![a("nas.home.arpa.", "192.168.1.20")]);
        assert!(g.check(&n("nas.home.arpa."), &nas).is_ok());
        // Allowed by the question…
        let r = with(vec![a(
            "lb.example.net.",
            Ipv4Addr::new(10, 0, 0, 1).to_string().as_str(),
        )]);
        assert!(g.check(&n("admin.router.example.com."), &r).is_ok());
        // …or by the record's owner.
        assert!(
            g.check(
                &n("alias.example.net."),
                &with(vec![a("x.router.example.com.", "10.0.0.1")])
            )
            .is_ok()
        );
        assert!(
            g.check(
                &n("other.example.com."),
                &with(vec![a("other.example.com.", "10.0.0.1")])
            )
            .is_err()
        );

        let off = RebindingGuard::new(false, ZoneSet::default());
        assert!(
            off.check(
                &n("evil.example."),
                &with(vec![a("evil.example.", "127.0.0.1")])
            )
            .is_ok()
        );
    }

    #[test]
    fn other_record_types_are_ignored() {
        let g = guard(&[]);
        let txt = Record::from_rdata(
            n("t.example."),
            60,
            RData::TXT(TXT::new(vec!["10.0.0.1".into()])),
        );
        assert!(g.check(&n("t.example."), &with(vec![txt])).is_ok());
        let _ = Ipv6Addr::LOCALHOST;
    }
}
