//! The resolver's settings as the daemon stores them (serde, every field defaulted), and
//! their validation. This module owns defaults and checks; it must not read files (the CA
//! file is read when the resolver is built) or open sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::CacheLimits;
use crate::error::ConfigError;
use crate::names::parse_domain;
use crate::policy::BlockStyle;
use crate::server::ServerLimits;
use crate::upstream::{Transport, Trust, UpstreamSpec};

/// Where the resolver listens by default: a loopback address of its own, so it coexists with
/// systemd-resolved (127.0.0.53/54) and a dnsmasq on 127.0.0.1.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 153)), 53);

/// A zone whose names are resolved by the link's own plain resolver (split horizon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalZone {
    /// The zone, e.g. `home.arpa`, `lan`, `corp.example.com`, `168.192.in-addr.arpa`.
    pub zone: String,
    /// Its resolvers, plain DNS (`plain://192.168.1.1`), tried in order.
    pub servers: Vec<UpstreamSpec>,
}

/// DNS rebinding protection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebindingConfig {
    /// On by default.
    pub enabled: bool,
    /// Names (and their subdomains) allowed to resolve to private addresses through public
    /// resolvers.
    pub allow: Vec<String>,
}

impl Default for RebindingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
        }
    }
}

/// Everything the resolver and its server are configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to serve on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Upstreams for everything outside local zones, tried in order.
    pub upstreams: Vec<UpstreamSpec>,
    /// Certificate trust for DoT/DoH upstreams.
    pub trust: Trust,
    /// Split-horizon zones.
    pub local_zones: Vec<LocalZone>,
    /// Cache bounds.
    pub cache: CacheLimits,
    /// Rebinding protection.
    pub rebinding: RebindingConfig,
    /// Time one upstream address gets to answer before the next is tried, milliseconds.
    pub attempt_timeout_ms: u64,
    /// Time a query may take in all, milliseconds (below the usual 5 s client timeout).
    pub query_timeout_ms: u64,
    /// TTL of 0.0.0.0/:: block answers, seconds (short, so an unblock applies soon).
    pub block_ttl: u32,
    /// Answer for Firefox's canary domain (`use-application-dns.net`): NXDOMAIN tells it to
    /// keep using the system resolver, i.e. Portcullis.
    pub canary_style: BlockStyle,
    /// Listener limits.
    pub server: ServerLimits,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![DEFAULT_LISTEN],
            upstreams: vec![
                // Cannot fail: the preset table is checked by a unit test.
                "quad9"
                    .parse()
                    .unwrap_or_else(|_| UpstreamSpec::plain(DEFAULT_LISTEN)),
                "cloudflare"
                    .parse()
                    .unwrap_or_else(|_| UpstreamSpec::plain(DEFAULT_LISTEN)),
            ],
            trust: Trust::System,
            local_zones: Vec::new(),
            cache: CacheLimits::default(),
            rebinding: RebindingConfig::default(),
            attempt_timeout_ms: 2_000,
            query_timeout_ms: 4_000,
            block_ttl: 10,
            canary_style: BlockStyle::NxDomain,
            server: ServerLimits::default(),
        }
    }
}

impl DnsConfig {
    /// Checks everything that can be checked without I/O, naming the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return Err(ConfigError::NoUpstreams);
        }
        for u in &self.upstreams {
            if u.addrs.is_empty() {
                return Err(ConfigError::BadUpstream {
                    text: u.to_string(),
                    reason: "no address".to_owned(),
                });
            }
        }
        for z in &self.local_zones {
            parse_domain(&z.zone)?;
            if z.servers.is_empty() {
                return Err(ConfigError::ZoneWithoutServers {
                    zone: z.zone.clone(),
                });
            }
            if let Some(s) = z.servers.iter().find(|s| s.transport != Transport::Plain) {
                return Err(ConfigError::ZoneServerNotPlain {
                    zone: z.zone.clone(),
                    server: s.to_string(),
                });
            }
        }
        for name in &self.rebinding.allow {
            parse_domain(name)?;
        }
        self.cache.validate()?;
        for (what, v) in [
            ("attempt_timeout_ms", self.attempt_timeout_ms),
            ("query_timeout_ms", self.query_timeout_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::ZeroLimit { what });
            }
        }
        self.server.validate()
    }

    /// [`DnsConfig::attempt_timeout_ms`] as a duration.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    /// [`DnsConfig::query_timeout_ms`] as a duration.
    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_encrypted() {
        let c = DnsConfig::default();
        c.validate().unwrap();
        assert!(c.upstreams.iter().all(|u| u.transport == Transport::Https));
        assert_eq!(c.listen, vec![DEFAULT_LISTEN]);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let mut c = DnsConfig {
            upstreams: vec![],
            ..DnsConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::NoUpstreams)));
        c = DnsConfig::default();
        c.local_zones.push(LocalZone {
            zone: "lan".into(),
            servers: vec![],
        });
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("\"lan\" has no server")
        );
        c.local_zones = vec![LocalZone {
            zone: "lan".into(),
            servers: vec!["tls://quad9".parse().unwrap()],
        }];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("must be plain DNS")
        );
        c.local_zones = vec![LocalZone {
            zone: "*.lan".into(),
            servers: vec!["plain://192.168.1.1".parse().unwrap()],
        }];
        assert!(c.validate().unwrap_err().to_string().contains("*.lan"));
        c = DnsConfig::default();
        c.cache.min_ttl = 100_000;
        assert!(c.validate().unwrap_err().to_string().contains("min_ttl"));
        c = DnsConfig::default();
        c.attempt_timeout_ms = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("attempt_timeout_ms")
        );
    }

    #[test]
    fn round_trips_through_json_with_text_upstreams() {
        let mut c = DnsConfig::default();
        c.local_zones.push(LocalZone {
            zone: "home.arpa".into(),
            servers: vec!["plain://192.168.1.1".parse().unwrap()],
        });
        c.trust = Trust::CaFile("/tmp/ca.pem".into());
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.contains("\"upstreams\":[\"quad9\",\"cloudflare\"]"),
            "{json}"
        );
        assert!(json.contains("\"plain://192.168.1.1\""), "{json}");
        let back: DnsConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);

        let partial: DnsConfig =
            serde_json::from_str(r#"{"upstreams":["tls://dns.example#192.0.2.1"]}"#).unwrap();
        assert_eq!(partial.block_ttl, 10);
        let err = serde_json::from_str::<DnsConfig>(r#"{"upstreams":["tls://dns.example"]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("give its addresses"), "{err}");
        assert!(serde_json::from_str::<DnsConfig>(r#"{"typo":1}"#).is_err());
    }
}
