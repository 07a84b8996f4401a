//! Well-known DNS-over-HTTPS and DNS-over-TLS services, which `block_doh` refuses so that apps
//! with a resolver of their own (browsers, some apps' SDKs) fall back to the system's DNS — that
//! is, to Portcullis' resolver, where per-app rules and lists apply. By name (what an app looks
//! up to find its DoH server) and by address on ports 443 and 853 (for apps with addresses
//! built in). Pure data and lookups; no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Host names of public DoH/DoT services (each also covers its subdomains).
const NAMES: &[&str] = &[
    "dns.google",
    "dns.google.com",
    "dns64.dns.google",
    "cloudflare-dns.com",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "dns.cloudflare.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "dns.opendns.com",
    "dns.adguard.com",
    "dns.adguard-dns.com",
    "unfiltered.adguard-dns.com",
    "family.adguard-dns.com",
    "dns.nextdns.io",
    "doh.mullvad.net",
    "dns.mullvad.net",
    "doh.cleanbrowsing.org",
    "doh.dns.sb",
    "dns.twnic.tw",
    "doh.libredns.gr",
    "dns.controld.com",
];

/// Addresses of the same services.
const V4: &[[u8; 4]] = &[
    [8, 8, 8, 8],
    [8, 8, 4, 4],
    [1, 1, 1, 1],
    [1, 0, 0, 1],
    [1, 1, 1, 2],
    [1, 0, 0, 2],
    [1, 1, 1, 3],
    [1, 0, 0, 3],
    [9, 9, 9, 9],
    [149, 112, 112, 112],
    [9, 9, 9, 10],
    [149, 112, 112, 10],
    [9, 9, 9, 11],
    [149, 112, 112, 11],
    [208, 67, 222, 222],
    [208, 67, 220, 220],
    [94, 140, 14, 14],
    [94, 140, 15, 15],
    [94, 140, 14, 140],
    [94, 140, 14, 141],
    [194, 242, 2, 2],
    [185, 228, 168, 9],
    [185, 228, 169, 9],
    [45, 90, 28, 0],
    [45, 90, 30, 0],
    [76, 76, 2, 0],
    [76, 76, 10, 0],
];

const V6: &[[u16; 8]] = &[
    [0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888],
    [0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8844],
    [0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111],
    [0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1001],
    [0x2620, 0xfe, 0, 0, 0, 0, 0, 0xfe],
    [0x2620, 0xfe, 0, 0, 0, 0, 0, 0x9],
    [0x2620, 0x119, 0x35, 0, 0, 0, 0, 0x35],
    [0x2620, 0x119, 0x53, 0, 0, 0, 0, 0x53],
    [0x2a10, 0x50c0, 0, 0, 0, 0, 0xad1, 0xff],
    [0x2a10, 0x50c0, 0, 0, 0, 0, 0xad2, 0xff],
    [0x2a07, 0xe340, 0, 0, 0, 0, 0, 0x2],
];

/// Whether `name` (lowercase, no trailing dot) is a well-known DoH/DoT service or under one.
pub fn is_doh_name(name: &str) -> bool {
    NAMES.iter().any(|known| {
        name == *known
            || name
                .strip_suffix(known)
                .is_some_and(|head| head.ends_with('.'))
    })
}

/// Whether a connection to `ip` on `port` goes to a well-known DoH (443) or DoT (853) service.
pub fn is_doh_endpoint(ip: IpAddr, port: Option<u16>) -> bool {
    if !matches!(port, Some(443 | 853)) {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => V4.iter().any(|a| Ipv4Addr::from(*a) == v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => V4.iter().any(|a| Ipv4Addr::from(*a) == v4),
            None => V6.iter().any(|s| Ipv6Addr::from(*s) == v6),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_their_subdomains_only() {
        assert!(is_doh_name("dns.google"));
        assert!(is_doh_name("mozilla.cloudflare-dns.com"));
        assert!(!is_doh_name("notcloudflare-dns.com"));
        assert!(!is_doh_name("google"));
        assert!(!is_doh_name("example.com"));
    }

    #[test]
    fn addresses_on_the_doh_and_dot_ports_only() {
        let google: IpAddr = [8, 8, 8, 8].into();
        assert!(is_doh_endpoint(google, Some(443)));
        assert!(is_doh_endpoint(google, Some(853)));
        assert!(
            !is_doh_endpoint(google, Some(53)),
            "plain DNS is redirected instead"
        );
        assert!(!is_doh_endpoint([8, 8, 8, 9].into(), Some(443)));
        let mapped: IpAddr = "::ffff:1.1.1.1".parse().unwrap();
        assert!(is_doh_endpoint(mapped, Some(443)));
        assert!(is_doh_endpoint(
            "2606:4700:4700::1111".parse().unwrap(),
            Some(443)
        ));
        assert!(!is_doh_endpoint(
            "2606:4700:4700::1112".parse().unwrap(),
            Some(443)
        ));
    }
}
