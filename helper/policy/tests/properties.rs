//! Property tests for rule text and rule matching: every rule survives a trip through its
//! canonical text, no input makes the parser panic, and domain and network entities match
//! exactly the connections they describe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use portcullis_policy::{Direction, Entity, Facts, PortSpec, Protocol, Rule, RuleAction};
use portcullis_protocol::Scope;
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9_]([a-z0-9_-]{0,8}[a-z0-9_])?"
}

/// A top-level label: never all digits (that would read as a mistyped IP address).
fn tld() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,5}"
}

/// A valid domain with at least `min_labels + 1` labels.
fn domain(min_labels: usize) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(label(), min_labels..min_labels + 3),
        tld(),
    )
        .prop_map(|(mut labels, tld)| {
            labels.push(tld);
            labels.join(".")
        })
}

fn v4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_filter_map("valid prefix", |(addr, prefix)| {
        Ipv4Net::new(Ipv4Addr::from(addr), prefix)
            .ok()
            .map(|n| n.trunc())
    })
}

fn v6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128).prop_filter_map("valid prefix", |(addr, prefix)| {
        Ipv6Net::new(Ipv6Addr::from(addr), prefix)
            .ok()
            .map(|n| n.trunc())
    })
}

fn entity() -> impl Strategy<Value = Entity> {
    prop_oneof![
        Just(Entity::Any),
        domain(1).prop_map(Entity::Domain),
        domain(0).prop_map(Entity::Subdomains),
        domain(0).prop_map(Entity::DomainTree),
        any::<u32>().prop_map(|a| Entity::ip(IpAddr::V4(a.into()))),
        any::<u128>().prop_map(|a| Entity::ip(IpAddr::V6(a.into()))),
        v4_net().prop_map(|n| Entity::net(IpNet::V4(n))),
        v6_net().prop_map(|n| Entity::net(IpNet::V6(n))),
        "[A-Z]{2}".prop_map(|c| {
            let mut code = [b'A'; 2];
            for (slot, b) in code.iter_mut().zip(c.bytes()) {
                *slot = b;
            }
            Entity::Country(code)
        }),
        any::<u32>().prop_map(Entity::Asn),
        prop::sample::select(vec![
            Scope::Localhost,
            Scope::Lan,
            Scope::Internet,
            Scope::P2p
        ])
        .prop_map(Entity::Scope),
    ]
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    (1u16..=u16::MAX, 1u16..=u16::MAX).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn portspec() -> impl Strategy<Value = PortSpec> {
    prop_oneof![
        (
            prop::sample::select(vec![Protocol::Tcp, Protocol::Udp]),
            prop::option::of(port_range())
        )
            .prop_map(|(p, ports)| PortSpec {
                protocol: Some(p),
                ports
            }),
        Just(PortSpec {
            protocol: Some(Protocol::Icmp),
            ports: None
        }),
        port_range().prop_map(|r| PortSpec {
            protocol: None,
            ports: Some(r)
        }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(vec![RuleAction::Allow, RuleAction::Block]),
        prop::sample::select(vec![Direction::Outbound, Direction::Inbound]),
        entity(),
        prop::option::of(portspec()),
    )
        .prop_map(|(action, direction, entity, portspec)| Rule {
            action,
            direction,
            entity,
            portspec,
        })
}

/// Rule-like token soup: real pieces, near misses and junk, so the parser's branches get
/// exercised far more often than by uniformly random strings.
fn soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "+",
            "-",
            "*",
            "Inbound",
            "inbound",
            "#",
            "tcp",
            "udp",
            "icmp",
            "tcp/443",
            "*/53",
            "udp/1-2",
            "tcp/0",
            "icmp/1",
            "10.0.0.0/8",
            "::1",
            "::ffff:1.2.3.4/120",
            "AS",
            "AS1",
            "de",
            "LAN",
            "P2P",
            "*.",
            ".",
            "..",
            "/",
            "-",
            "*.*",
            "xn--bcher-kva.de",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9.*:/#_-]{0,12}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(
        (
            piece,
            prop::sample::select(vec![" ", "  ", "\t", "\u{3000}", ""]),
        ),
        0..6,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(p, s)| [p, s.to_owned()])
            .collect()
    })
}

fn facts_for(remote: IpAddr, domain: Option<&str>) -> Facts<'_> {
    Facts {
        direction: Direction::Outbound,
        protocol: Protocol::Tcp,
        remote,
        remote_port: Some(443),
        local_port: Some(50000),
        domain,
        looked_up: true,
        country: None,
        asn: None,
        continent: None,
        listed: None,
    }
}

proptest! {
    #[test]
    fn display_then_parse_is_identity(rule in rule()) {
        let text = rule.to_string();
        let parsed: Rule = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(parsed, rule, "{}", text);
    }

    #[test]
    fn arbitrary_strings_never_panic_the_parser(text in any::<String>()) {
        let _ = text.parse::<Rule>();
    }

    #[test]
    fn token_soup_never_panics_and_accepted_rules_are_canonical(text in soup()) {
        match text.parse::<Rule>() {
            Ok(rule) => {
                let canonical = rule.to_string();
                prop_assert_eq!(canonical.parse::<Rule>().ok(), Some(rule), "{}", text);
            }
            Err(e) => {
                // The token is really in the input, at the column the error reports.
                let at: String = text.chars().skip(e.column.saturating_sub(1)).collect();
                prop_assert!(at.starts_with(&e.token), "{:?}: {}", text, e);
            }
        }
    }

    #[test]
    fn domain_tree_matches_the_domain_and_its_subdomains_only(
        d in domain(0),
        sub in prop::collection::vec(label(), 1..4),
        sibling in "[a-z0-9-]{1,6}",
    ) {
        let tree: Rule = format!("- .{d}").parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let strict: Rule = format!("- *.{d}").parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
        let subdomain = format!("{}.{d}", sub.join("."));
        let sibling = format!("{sibling}{d}");
        // `d` with labels appended is outside the tree, unless it happens to end in `.d`
        // (`h.h` for `d = h`).
        let outside = format!("{d}.{}", sub.join("."));
        prop_assume!(!outside.ends_with(&format!(".{d}")));

        prop_assert!(tree.matches(&facts_for(ip, Some(&d))));
        prop_assert!(tree.matches(&facts_for(ip, Some(&subdomain))));
        prop_assert!(!tree.matches(&facts_for(ip, Some(&sibling))));
        prop_assert!(!tree.matches(&facts_for(ip, Some(&outside))));
        prop_assert!(!tree.matches(&facts_for(ip, None)));

        prop_assert!(!strict.matches(&facts_for(ip, Some(&d))));
        prop_assert!(strict.matches(&facts_for(ip, Some(&subdomain))));
        prop_assert!(!strict.matches(&facts_for(ip, Some(&sibling))));
    }

    #[test]
    fn v4_cidr_matches_exactly_its_addresses(net in v4_net(), bits in any::<u32>(), inside in any::<bool>()) {
        // Half the time pick an address inside the network, so both outcomes are common.
        let addr = if inside {
            Ipv4Addr::from((u32::from(net.network()) & u32::from(net.netmask())) | (bits & u32::from(net.hostmask())))
        } else {
            Ipv4Addr::from(bits)
        };
        let rule = Rule {
            action: RuleAction::Block,
            direction: Direction::Outbound,
            entity: Entity::net(IpNet::V4(net)),
            portspec: None,
        };
        let expected = net.contains(&addr);
        prop_assert_eq!(rule.matches(&facts_for(IpAddr::V4(addr), None)), expected);
        // The same address seen as IPv4-mapped IPv6 is the same traffic.
        prop_assert_eq!(rule.matches(&facts_for(IpAddr::V6(addr.to_ipv6_mapped()), None)), expected);
        // A different family never matches.
        prop_assert!(!rule.matches(&facts_for(IpAddr::V6(Ipv6Addr::from(u128::from(bits) | 1 << 127)), None)));
    }

    #[test]
    fn v6_cidr_matches_exactly_its_addresses(net in v6_net(), bits in any::<u128>(), inside in any::<bool>()) {
        let addr = if inside {
            Ipv6Addr::from(u128::from(net.network()) | (bits & u128::from(net.hostmask())))
        } else {
            Ipv6Addr::from(bits)
        };
        // IPv4-mapped addresses are IPv4 traffic and are compared as such; see the v4 test.
        prop_assume!(addr.to_ipv4_mapped().is_none());
        let entity = Entity::net(IpNet::V6(net));
        prop_assume!(matches!(entity, Entity::Net(IpNet::V6(_))));
        let rule = Rule {
            action: RuleAction::Block,
            direction: Direction::Outbound,
            entity,
            portspec: None,
        };
        prop_assert_eq!(rule.matches(&facts_for(IpAddr::V6(addr), None)), net.contains(&addr));
    }
}
