//! The text form of an upstream and its parsed shape. This module owns the grammar; it must
//! not open sockets or resolve names (addresses are always given or come from a preset, so
//! no plain-DNS bootstrap lookup ever leaks).
//!
//! Grammar (`SCHEME` is `plain`, `udp` (= plain), `tls` or `https`):
//!
//! ```text
//! PRESET                         cloudflare, quad9, google, adguard, mullvad — over DoH
//! SCHEME://PRESET                the preset over that transport
//! plain://IP[:PORT]              plain DNS (UDP, TCP when truncated), port 53
//! tls://IP[:PORT]                DoT to an IP; its certificate must name that IP
//! tls://NAME[:PORT]#IP[,IP…]     DoT, certificate checked for NAME, port 853
//! https://NAME[:PORT]/PATH#IP[,IP…]   DoH, port 443, path defaults to /dns-query
//! ```
//!
//! An address in the `#` list may carry its own port (`192.0.2.1:8853`, `[2001:db8::1]:8853`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::presets::preset;

/// How queries reach an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Unencrypted DNS over UDP, retried over TCP when truncated.
    Plain,
    /// DNS-over-TLS (RFC 7858).
    Tls,
    /// DNS-over-HTTPS over HTTP/2 (RFC 8484).
    Https,
}

impl Transport {
    /// The port used when none is given.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Plain => 53,
            Transport::Tls => 853,
            Transport::Https => 443,
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
            Transport::Https => "https",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// One configured upstream: a transport, one or more addresses, and for TLS/HTTPS the name
/// the certificate must carry. Parsed from and shown as text (see the module doc), which is
/// also its serde form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamSpec {
    /// How to reach it.
    pub transport: Transport,
    /// Where: tried in order.
    pub addrs: Vec<SocketAddr>,
    /// Name checked against the certificate (TLS and HTTPS only).
    pub tls_name: Option<String>,
    /// DoH path (HTTPS only), e.g. `/dns-query`.
    pub path: Option<String>,
    /// The preset this came from, if any (kept for display).
    pub preset: Option<String>,
}

impl UpstreamSpec {
    /// A plain-DNS upstream at `addr`.
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Plain,
            addrs: vec![addr],
            tls_name: None,
            path: None,
            preset: None,
        }
    }

    /// A DoT upstream at `addrs` whose certificate is issued to `tls_name`.
    pub fn tls(tls_name: &str, addrs: Vec<SocketAddr>) -> Self {
        Self {
            transport: Transport::Tls,
            addrs,
            tls_name: Some(tls_name.to_owned()),
            path: None,
            preset: None,
        }
    }

    /// A DoH upstream at `addrs`, `https://<tls_name><path>`.
    pub fn https(tls_name: &str, path: &str, addrs: Vec<SocketAddr>) -> Self {
        Self {
            transport: Transport::Https,
            addrs,
            tls_name: Some(tls_name.to_owned()),
            path: Some(path.to_owned()),
            preset: None,
        }
    }
}

fn bad(text: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadUpstream {
        text: text.to_owned(),
        reason: reason.into(),
    }
}

/// Splits `host[:port]` where host may be `[v6]`. Returns the host (without brackets) and
/// the port if any.
fn split_host_port<'a>(text: &str, hp: &'a str) -> Result<(&'a str, Option<u16>), ConfigError> {
    let port_of = |p: &str| -> Result<u16, ConfigError> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(text, format!("invalid port {p:?}")))
    };
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(text, "unclosed '[' in address"))?;
        match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(port_of(p)?))),
                None => Err(bad(text, format!("unexpected {after:?} after ']'"))),
            },
        }
    } else if hp.matches(':').count() > 1 {
        // A bare IPv6 address without port.
        Ok((hp, None))
    } else if let Some((h, p)) = hp.split_once(':') {
        Ok((h, Some(port_of(p)?)))
    } else {
        Ok((hp, None))
    }
}

fn parse_addr_list(
    text: &str,
    list: &str,
    default_port: u16,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(bad(text, "empty entry in the address list"));
        }
        let (host, port) = split_host_port(text, item)?;
        let ip: IpAddr = host
            .parse()
            .map_err(|_| bad(text, format!("{host:?} is not an IP address")))?;
        out.push(SocketAddr::new(ip, port.unwrap_or(default_port)));
    }
    Ok(out)
}

fn valid_tls_name(text: &str, name: &str) -> Result<(), ConfigError> {
    rustls_pki_types::ServerName::try_from(name)
        .map(|_| ())
        .map_err(|_| bad(text, format!("{name:?} is not a valid TLS server name")))
}

impl FromStr for UpstreamSpec {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad(text, "empty"));
        }
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            // A bare preset name: DoH, which blends in with other HTTPS traffic.
            return preset_spec(text, trimmed, Transport::Https);
        };
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "plain" | "udp" | "dns" => Transport::Plain,
            "tls" | "dot" => Transport::Tls,
            "https" | "doh" => Transport::Https,
            other => {
                return Err(bad(
                    text,
                    format!("unknown scheme {other:?} (use plain, tls or https)"),
                ));
            }
        };
        let (main, addr_list) = match rest.split_once('#') {
            Some((m, a)) => (m, Some(a)),
            None => (rest, None),
        };
        let (authority, path) = match main.find('/') {
            Some(i) => (main.get(..i).unwrap_or(main), main.get(i..)),
            None => (main, None),
        };
        if authority.is_empty() {
            return Err(bad(text, "no host"));
        }
        if transport != Transport::Https && path.is_some_and(|p| p != "/") {
            return Err(bad(text, "only https upstreams have a path"));
        }
        let (host, port) = split_host_port(text, authority)?;
        let default_port = port.unwrap_or(transport.default_port());
        let host_ip: Option<IpAddr> = host.parse().ok();

        if host_ip.is_none()
            && addr_list.is_none()
            && port.is_none()
            && path.is_none()
            && preset(host).is_some()
        {
            return preset_spec(text, host, transport);
        }
        let addrs = match (addr_list, host_ip) {
            (Some(list), _) => parse_addr_list(text, list, default_port)?,
            (None, Some(ip)) => vec![SocketAddr::new(ip, default_port)],
            (None, None) => {
                return Err(bad(
                    text,
                    format!(
                        "{host:?} is neither an IP address nor a preset: give its addresses \
                         after '#' (e.g. tls://{host}#192.0.2.1)"
                    ),
                ));
            }
        };
        let (tls_name, path) = match transport {
            Transport::Plain => {
                if addr_list.is_some() && host_ip.is_none() {
                    return Err(bad(text, "plain upstreams are given by address only"));
                }
                (None, None)
            }
            Transport::Tls => {
                valid_tls_name(text, host)?;
                (Some(host.to_owned()), None)
            }
            Transport::Https => {
                valid_tls_name(text, host)?;
                let path = match path {
                    None | Some("/") => "/dns-query".to_owned(),
                    Some(p) if p.contains(['?', ' ', '#']) => {
                        return Err(bad(text, format!("invalid path {p:?}")));
                    }
                    Some(p) => p.to_owned(),
                };
                (Some(host.to_owned()), Some(path))
            }
        };
        Ok(Self {
            transport,
            addrs,
            tls_name,
            path,
            preset: None,
        })
    }
}

fn preset_spec(text: &str, id: &str, transport: Transport) -> Result<UpstreamSpec, ConfigError> {
    let p = preset(id).ok_or_else(|| {
        let known: Vec<&str> = crate::presets::PRESETS.iter().map(|p| p.id).collect();
        bad(
            text,
            format!(
                "not a preset (known: {}) and not SCHEME://…",
                known.join(", ")
            ),
        )
    })?;
    let port = transport.default_port();
    let addrs = p
        .ips()
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    let (tls_name, path) = match transport {
        Transport::Plain => (None, None),
        Transport::Tls => (Some(p.tls_name.to_owned()), None),
        Transport::Https => (Some(p.tls_name.to_owned()), Some(p.doh_path.to_owned())),
    };
    Ok(UpstreamSpec {
        transport,
        addrs,
        tls_name,
        path,
        preset: Some(p.id.to_owned()),
    })
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.preset {
            return match self.transport {
                Transport::Https => f.write_str(id),
                t => write!(f, "{t}://{id}"),
            };
        }
        let port = self.transport.default_port();
        let addr_text = |a: &SocketAddr| -> String {
            match (a.ip(), a.port() == port) {
                (IpAddr::V4(ip), true) => ip.to_string(),
                (IpAddr::V6(ip), true) => ip.to_string(),
                _ => a.to_string(),
            }
        };
        let list: Vec<String> = self.addrs.iter().map(addr_text).collect();
        match (&self.tls_name, self.transport) {
            (None, _) | (_, Transport::Plain) => {
                write!(f, "{}://{}", self.transport, list.join(","))
            }
            (Some(name), t) => {
                write!(f, "{t}://{name}{}", self.path.as_deref().unwrap_or(""))?;
                write!(f, "#{}", list.join(","))
            }
        }
    }
}

impl TryFrom<String> for UpstreamSpec {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UpstreamSpec> for String {
    fn from(s: UpstreamSpec) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn custom_forms_parse() {
        let u: UpstreamSpec = "tls://dns.example#192.0.2.1,[2001:db8::1]:8853"
            .parse()
            .unwrap();
        assert_eq!(u.transport, Transport::Tls);
        assert_eq!(u.tls_name.as_deref(), Some("dns.example"));
        assert_eq!(u.addrs, vec![sa("192.0.2.1:853"), sa("[2001:db8::1]:8853")]);

        let u: UpstreamSpec = "https://dns.example:8443/q#192.0.2.1".parse().unwrap();
        assert_eq!(u.transport, Transport::Https);
        assert_eq!(u.path.as_deref(), Some("/q"));
        assert_eq!(u.addrs, vec![sa("192.0.2.1:8443")]);

        let u: UpstreamSpec = "https://dns.example#192.0.2.1".parse().unwrap();
        assert_eq!(u.path.as_deref(), Some("/dns-query"));

        let u: UpstreamSpec = "plain://192.168.1.1".parse().unwrap();
        assert_eq!(u, UpstreamSpec::plain(sa("192.168.1.1:53")));
        let u: UpstreamSpec = "udp://[fd00::1]:5353".parse().unwrap();
        assert_eq!(u.addrs, vec![sa("[fd00::1]:5353")]);
        let u: UpstreamSpec = "plain://fd00::1".parse().unwrap();
        assert_eq!(u.addrs, vec![sa("[fd00::1]:53")]);

        let u: UpstreamSpec = "tls://192.0.2.7".parse().unwrap();
        assert_eq!(u.tls_name.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn bad_forms_name_the_problem() {
        for (text, needle) in [
            ("", "empty"),
            ("ftp://x", "unknown scheme"),
            ("tls://dns.example", "neither an IP"),
            ("nonsense", "not a preset"),
            ("plain://1.2.3.4:0", "invalid port"),
            ("plain://1.2.3.4:99999", "invalid port"),
            ("tls://dns.example#1.2.3", "not an IP"),
            ("tls://dns.example#", "empty entry"),
            ("tls://[::1", "unclosed"),
            ("tls://1.2.3.4/path", "only https"),
            ("plain://router.lan#10.0.0.1", "by address only"),
            ("https://bad name#1.2.3.4", "TLS server name"),
        ] {
            let err = text.parse::<UpstreamSpec>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "cloudflare",
            "tls://quad9",
            "plain://google",
            "tls://dns.example#192.0.2.1,[2001:db8::1]:8853",
            "https://dns.example/q#192.0.2.1",
            "plain://192.168.1.1",
            "plain://[fd00::1]:5353",
        ] {
            let u: UpstreamSpec = text.parse().unwrap();
            assert_eq!(u.to_string(), text);
            let again: UpstreamSpec = u.to_string().parse().unwrap();
            assert_eq!(again, u);
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<UpstreamSpec>();
        }

        #[test]
        fn parsed_specs_round_trip(s in "(plain|tls|https)://[a-z0-9.:\\[\\]/#,-]{1,40}") {
            if let Ok(u) = s.parse::<UpstreamSpec>() {
                let again: UpstreamSpec = u.to_string().parse().unwrap();
                proptest::prop_assert_eq!(again, u);
            }
        }
    }
}
