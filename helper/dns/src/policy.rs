//! The per-query decision seam: who asked ([`QuerySource`]), which name is being decided
//! ([`QueryContext`]), and the [`QueryPolicy`] trait the daemon implements with its per-app
//! rules and filter lists. This module also owns the CNAME walk that makes a blocked name
//! stay blocked behind a first-party alias. It must not do I/O or keep state: a policy is
//! asked, synchronously, on the query path.

use std::net::SocketAddr;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};

use crate::names::ZoneSet;

/// How a query reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A UDP datagram.
    Udp,
    /// A TCP connection (length-framed).
    Tcp,
}

/// Who asked: the daemon attributes the asking process from these addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuerySource {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// Our address the query was sent to.
    pub local: SocketAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
}

/// One name to decide for one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryContext<'a> {
    /// Who asked.
    pub source: &'a QuerySource,
    /// The question's name (as asked, any case).
    pub question: &'a Name,
    /// The question's type.
    pub qtype: RecordType,
    /// The name being decided: the question itself, or a name of its CNAME chain.
    pub name: &'a Name,
    /// `Some(alias)` when `name` was reached through a CNAME from `alias`.
    pub via_cname: Option<&'a Name>,
}

/// What a blocked name is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStyle {
    /// NXDOMAIN: the name does not exist.
    #[default]
    NxDomain,
    /// A and AAAA answered with 0.0.0.0 and :: (other types: no data). Apps fail fast
    /// without retrying other resolvers.
    ZeroIp,
    /// REFUSED.
    Refused,
}

/// The decision for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryDecision {
    /// Resolve it.
    Allow,
    /// Answer with `style`; `because` says which rule or list decided (shown to the user).
    Block {
        /// The answer to give.
        style: BlockStyle,
        /// The explanation.
        because: String,
    },
}

/// Decides queries. Called for the question's name and, once an answer is known, for every
/// name of its CNAME chain; the first block wins. Must be fast and must not block.
pub trait QueryPolicy: Send + Sync + std::fmt::Debug {
    /// The decision for `query.name`.
    fn decide(&self, query: &QueryContext<'_>) -> QueryDecision;
}

/// Allows everything (the daemon's policy replaces it).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl QueryPolicy for AllowAll {
    fn decide(&self, _query: &QueryContext<'_>) -> QueryDecision {
        QueryDecision::Allow
    }
}

/// Blocks a fixed set of zones (each name and everything under it) for every asker. Useful
/// on its own for a global list and as the simplest example of a policy.
#[derive(Debug, Clone)]
pub struct ZoneBlocklist {
    zones: ZoneSet,
    style: BlockStyle,
    list_name: String,
}

impl ZoneBlocklist {
    /// Blocks `zones` with `style`; explanations name `list_name`.
    pub fn new(zones: ZoneSet, style: BlockStyle, list_name: &str) -> Self {
        Self {
            zones,
            style,
            list_name: list_name.to_owned(),
        }
    }
}

impl QueryPolicy for ZoneBlocklist {
    fn decide(&self, query: &QueryContext<'_>) -> QueryDecision {
        match self.zones.find(query.name) {
            None => QueryDecision::Allow,
            Some((_, zone)) => {
                let because = match query.via_cname {
                    None => format!("{} is on {} ({zone})", query.name, self.list_name),
                    Some(alias) => format!(
                        "{} is an alias (CNAME) of {}, which is on {} ({zone})",
                        alias, query.name, self.list_name
                    ),
                };
                QueryDecision::Block {
                    style: self.style,
                    because,
                }
            }
        }
    }
}

/// Longest CNAME chain followed; longer ones are cut (resolvers stop at ~8–16).
pub const MAX_CHAIN: usize = 16;

/// The names an answer's CNAME records lead to, in the order a client follows them, each
/// with the alias that pointed to it: first the chain from `question`, then any other CNAME
/// owner or target in the section (an upstream could list more than the client follows;
/// deciding them too costs little and hides nothing). Loops and chains longer than
/// [`MAX_CHAIN`] stop the walk.
pub fn cname_names<'a>(question: &'a Name, answers: &'a [Record]) -> Vec<(&'a Name, &'a Name)> {
    let mut out: Vec<(&Name, &Name)> = Vec::new();
    let mut current = question;
    for _ in 0..MAX_CHAIN {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == *current => Some(&target.0),
            _ => None,
        });
        match next {
            Some(target) if target != question && !out.iter().any(|(t, _)| *t == target) => {
                out.push((target, current));
                current = target;
            }
            _ => break,
        }
    }
    for r in answers {
        if let RData::CNAME(target) = &r.data {
            for (name, alias) in [(&r.name, question), (&target.0, &r.name)] {
                if name != question
                    && !out.iter().any(|(t, _)| *t == name)
                    && out.len() < 4 * MAX_CHAIN
                {
                    out.push((name, alias));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, CNAME};

    use super::*;
    use crate::names::parse_domain;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn cname(from: &str, to: &str) -> Record {
        Record::from_rdata(n(from), 60, RData::CNAME(CNAME(n(to))))
    }

    fn a(name: &str) -> Record {
        Record::from_rdata(n(name), 60, RData::A(A::new(192, 0, 2, 1)))
    }

    fn names(list: &[(&Name, &Name)]) -> Vec<String> {
        list.iter().map(|(t, _)| t.to_ascii()).collect()
    }

    #[test]
    fn the_chain_is_followed_in_order_whatever_the_record_order() {
        let q = n("www.shop.example.");
        let answers = vec![
            a("t.tracker.example."),
            cname("edge.shop.example.", "t.tracker.example."),
            cname("www.shop.example.", "edge.shop.example."),
        ];
        let chain = cname_names(&q, &answers);
        assert_eq!(
            names(&chain),
            vec!["edge.shop.example.", "t.tracker.example."]
        );
        assert_eq!(chain[1].1.to_ascii(), "edge.shop.example.");
    }

    #[test]
    fn loops_and_unrelated_cnames_end_well() {
        let q = n("a.example.");
        let looped = vec![
            cname("a.example.", "b.example."),
            cname("b.example.", "a.example."),
        ];
        assert_eq!(names(&cname_names(&q, &looped)), vec!["b.example."]);
        let stray = vec![a("a.example."), cname("x.example.", "y.example.")];
        assert_eq!(
            names(&cname_names(&q, &stray)),
            vec!["x.example.", "y.example."]
        );
        let long: Vec<Record> = (0..100)
            .map(|i| cname(&format!("c{i}.example."), &format!("c{}.example.", i + 1)))
            .collect();
        let c0 = n("c0.example.");
        let chain = cname_names(&c0, &long);
        assert!(chain.len() <= 4 * MAX_CHAIN);
    }

    #[test]
    fn the_blocklist_explains_direct_and_cname_blocks() {
        let list = ZoneBlocklist::new(
            ZoneSet::new([parse_domain("tracker.example").unwrap()]),
            BlockStyle::ZeroIp,
            "the test list",
        );
        let source = QuerySource {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:53".parse().unwrap(),
            protocol: Protocol::Udp,
        };
        let q = n("www.shop.example.");
        let target = n("t.tracker.example.");
        let direct = QueryContext {
            source: &source,
            question: &target,
            qtype: RecordType::A,
            name: &target,
            via_cname: None,
        };
        let QueryDecision::Block { style, because } = list.decide(&direct) else {
            panic!("not blocked");
        };
        assert_eq!(style, BlockStyle::ZeroIp);
        assert_eq!(
            because,
            "t.tracker.example. is on the test list (tracker.example.)"
        );
        let alias = n("edge.shop.example.");
        let via = QueryContext {
            via_cname: Some(&alias),
            question: &q,
            ..direct
        };
        let QueryDecision::Block { because, .. } = list.decide(&via) else {
            panic!("not blocked");
        };
        assert!(
            because.contains("alias (CNAME) of t.tracker.example."),
            "{because}"
        );
        let ok = QueryContext { name: &q, ..direct };
        assert_eq!(list.decide(&ok), QueryDecision::Allow);
    }
}
