//! Built-in public resolvers: their name, addresses, TLS name and DoH path. This module owns
//! the table; it must not resolve names or open connections (the addresses are written here
//! so that no bootstrap lookup in plain DNS is ever needed).

use std::net::IpAddr;

/// A well-known public resolver that speaks DNS-over-TLS and DNS-over-HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Identifier used in settings and upstream text (`cloudflare`, `quad9`, …).
    pub id: &'static str,
    /// Name shown to people.
    pub name: &'static str,
    /// Anycast addresses, IPv4 first.
    pub addresses: &'static [&'static str],
    /// The name its certificates are issued to.
    pub tls_name: &'static str,
    /// The DoH path on `https://<tls_name>`.
    pub doh_path: &'static str,
}

impl Preset {
    /// The addresses, parsed. The table is checked by a unit test, so nothing is skipped in
    /// practice.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// The DoH URL, e.g. `https://cloudflare-dns.com/dns-query`.
    pub fn doh_url(&self) -> String {
        format!("https://{}{}", self.tls_name, self.doh_path)
    }
}

/// Every built-in preset. Unfiltered variants only: filtering is Portcullis' own job, done
/// per app, and an upstream that filters would hide why a name failed.
pub const PRESETS: &[Preset] = &[
    Preset {
        id: "cloudflare",
        name: "Cloudflare",
        addresses: &[
            "1.1.1.1",
            "1.0.0.1",
            "2606:4700:4700::1111",
            "2606:4700:4700::1001",
        ],
        tls_name: "cloudflare-dns.com",
        doh_path: "/dns-query",
    },
    Preset {
        id: "quad9",
        name: "Quad9",
        addresses: &["9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9"],
        tls_name: "dns.quad9.net",
        doh_path: "/dns-query",
    },
    Preset {
        id: "google",
        name: "Google Public DNS",
        addresses: &[
            "8.8.8.8",
            "8.8.4.4",
            "2001:4860:4860::8888",
            "2001:4860:4860::8844",
        ],
        tls_name: "dns.google",
        doh_path: "/dns-query",
    },
    Preset {
        id: "adguard",
        name: "AdGuard DNS (unfiltered)",
        addresses: &[
            "94.140.14.140",
            "94.140.14.141",
            "2a10:50c0::1:ff",
            "2a10:50c0::2:ff",
        ],
        tls_name: "unfiltered.adguard-dns.com",
        doh_path: "/dns-query",
    },
    Preset {
        id: "mullvad",
        name: "Mullvad DNS",
        addresses: &["194.242.2.2", "2a07:e340::2"],
        tls_name: "dns.mullvad.net",
        doh_path: "/dns-query",
    },
];

/// The preset with this identifier (case-insensitive).
pub fn preset(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id.eq_ignore_ascii_case(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Transport, UpstreamSpec};

    #[test]
    fn every_preset_is_well_formed() {
        let mut ids = std::collections::BTreeSet::new();
        for p in PRESETS {
            assert!(ids.insert(p.id), "duplicate id {}", p.id);
            assert_eq!(p.ips().len(), p.addresses.len(), "{}: bad address", p.id);
            assert!(p.ips().iter().any(IpAddr::is_ipv4), "{}: no IPv4", p.id);
            assert!(p.ips().iter().any(IpAddr::is_ipv6), "{}: no IPv6", p.id);
            assert!(
                rustls_pki_types::ServerName::try_from(p.tls_name).is_ok(),
                "{}: bad TLS name",
                p.id
            );
            assert!(p.doh_path.starts_with('/'));
            for ip in p.ips() {
                assert_eq!(
                    portcullis_policy::classify_ip(ip),
                    portcullis_policy::AddressClass::Internet,
                    "{}: {ip} is not a public address",
                    p.id
                );
            }
        }
    }

    #[test]
    fn presets_parse_as_upstreams_for_each_transport() {
        for p in PRESETS {
            let doh: UpstreamSpec = p.id.parse().unwrap();
            assert_eq!(doh.transport, Transport::Https, "{}", p.id);
            assert_eq!(doh.tls_name.as_deref(), Some(p.tls_name));
            assert_eq!(doh.path.as_deref(), Some(p.doh_path));
            assert_eq!(doh.addrs.len(), p.addresses.len());
            assert!(doh.addrs.iter().all(|a| a.port() == 443));

            let dot: UpstreamSpec = format!("tls://{}", p.id).parse().unwrap();
            assert_eq!(dot.transport, Transport::Tls);
            assert!(dot.addrs.iter().all(|a| a.port() == 853));

            let plain: UpstreamSpec = format!("plain://{}", p.id).parse().unwrap();
            assert_eq!(plain.transport, Transport::Plain);
            assert!(plain.addrs.iter().all(|a| a.port() == 53));
            assert_eq!(plain.tls_name, None);
        }
        assert!(preset("QUAD9").is_some());
        assert!(preset("nope").is_none());
    }
}
