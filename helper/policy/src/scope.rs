//! Address classification: which class (Localhost, LAN, Internet) an IP address belongs to,
//! and which scope a connection has. This module owns the list of ranges; it must not look
//! at interfaces, routes or anything else on the machine (it is pure), and it does not decide
//! verdicts.
//!
//! The ranges are deliberately few and fixed, so that users and the UI can predict them:
//! - Localhost: 127.0.0.0/8, ::1, and the unspecified addresses 0.0.0.0 and :: (which
//!   connect to this host).
//! - LAN: 0.0.0.0/8 ("this network", RFC 1122) apart from 0.0.0.0; RFC 1918 10/8,
//!   172.16/12, 192.168/16; link-local 169.254/16 and fe80::/10; unique-local fc00::/7;
//!   multicast 224/4 and ff00::/8; broadcast 255.255.255.255.
//! - Internet: everything else. That includes CGNAT's shared address space 100.64.0.0/10
//!   (RFC 6598): it is the carrier's network, shared with other customers, not the user's
//!   own LAN, so treating it as LAN would open the user's machine to strangers.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified as the IPv4 address they
//! carry, since that is the traffic they are.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_protocol::Scope;

use crate::decide::Facts;
use crate::rule::Direction;

/// The class of an address, independent of the connection's direction or DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// This machine.
    Localhost,
    /// The local network: private, link-local, unique-local, multicast, broadcast.
    Lan,
    /// Everything else.
    Internet,
}

/// Classifies one address (see the module doc for the ranges).
pub fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, ..] = ip.octets();
    if ip.is_loopback() || ip.is_unspecified() {
        AddressClass::Localhost
    } else if a == 0
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
    {
        AddressClass::Lan
    } else {
        // Includes CGNAT's 100.64.0.0/10 on purpose: see the module doc.
        AddressClass::Internet
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments().first().copied().unwrap_or_default();
    if ip.is_loopback() || ip.is_unspecified() {
        AddressClass::Localhost
    } else if first & 0xffc0 == 0xfe80 // link-local fe80::/10
        || first & 0xfe00 == 0xfc00 // unique-local fc00::/7
        || ip.is_multicast()
    {
        AddressClass::Lan
    } else {
        AddressClass::Internet
    }
}

/// The scope of a connection, as `block_scopes` sees it: `Inbound` for every inbound
/// connection; otherwise the remote address's class, with Internet addresses the app did not
/// look up through Portcullis' DNS reported as `P2p`.
pub fn connection_scope(facts: &Facts<'_>) -> Scope {
    if facts.direction == Direction::Inbound {
        return Scope::Inbound;
    }
    match classify_ip(facts.remote) {
        AddressClass::Localhost => Scope::Localhost,
        AddressClass::Lan => Scope::Lan,
        AddressClass::Internet if facts.looked_up => Scope::Internet,
        AddressClass::Internet => Scope::P2p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Protocol;

    fn class(text: &str) -> AddressClass {
        classify_ip(text.parse().unwrap())
    }

    #[test]
    fn localhost_ranges() {
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(class(a), AddressClass::Localhost, "{a}");
        }
    }

    #[test]
    fn lan_ranges_and_their_edges() {
        for a in [
            "0.0.0.1",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.168.0.0",
            "192.168.255.255",
            "169.254.0.1",
            "169.254.255.255",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "fe80::1",
            "febf:ffff::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::fb",
            "ff0e::1",
            "::ffff:192.168.1.1",
        ] {
            assert_eq!(class(a), AddressClass::Lan, "{a}");
        }
    }

    #[test]
    fn internet_ranges_including_just_outside_the_lan_ones() {
        for a in [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "223.255.255.255",
            "240.0.0.1",
            "255.255.255.254",
            "100.64.0.1",
            "100.127.255.255",
            "2001:db8::1",
            "2606:4700::1111",
            "fec0::1",
            "fe00::1",
            "fbff::1",
            "::2",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(class(a), AddressClass::Internet, "{a}");
        }
    }

    fn facts(direction: Direction, remote: &str, looked_up: bool) -> Facts<'static> {
        Facts {
            direction,
            protocol: Protocol::Tcp,
            remote: remote.parse().unwrap(),
            remote_port: Some(443),
            local_port: Some(50000),
            domain: None,
            looked_up,
            country: None,
            asn: None,
            continent: None,
            listed: None,
        }
    }

    #[test]
    fn connection_scope_separates_inbound_p2p_and_looked_up_internet() {
        use Direction::{Inbound, Outbound};
        assert_eq!(
            connection_scope(&facts(Inbound, "8.8.8.8", false)),
            Scope::Inbound
        );
        assert_eq!(
            connection_scope(&facts(Inbound, "127.0.0.1", false)),
            Scope::Inbound
        );
        assert_eq!(
            connection_scope(&facts(Outbound, "127.0.0.1", false)),
            Scope::Localhost
        );
        assert_eq!(
            connection_scope(&facts(Outbound, "192.168.1.1", false)),
            Scope::Lan
        );
        assert_eq!(
            connection_scope(&facts(Outbound, "192.168.1.1", true)),
            Scope::Lan
        );
        assert_eq!(
            connection_scope(&facts(Outbound, "8.8.8.8", true)),
            Scope::Internet
        );
        assert_eq!(
            connection_scope(&facts(Outbound, "8.8.8.8", false)),
            Scope::P2p
        );
    }
}
