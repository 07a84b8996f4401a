//! The links' own DNS: the search and routing domains each network link (a VPN, the LAN)
//! brings, with that link's resolvers, so that names of those zones keep going to them
//! (split horizon) while everything else goes over the encrypted upstreams.
//!
//! Read from systemd-resolved's D-Bus API (the `DNS` and `Domains` properties of
//! `org.freedesktop.resolve1.Manager`, through `busctl --json`), or, where resolved does not
//! run, from NetworkManager (`nmcli -t device show`). Both outputs are parsed as untrusted
//! text: what does not parse is skipped. Link-local IPv6 servers (they need an interface
//! scope) and the root domain (`~.`, "use this link for everything") are left out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use portcullis_dns::LocalZone;
use serde::Deserialize;

/// The `[dns.links]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksSection {
    /// Follow the links' own DNS (default true).
    pub enabled: bool,
    /// How often to read them again, in seconds (default 15).
    pub refresh_secs: u64,
    /// `busctl`, to ask systemd-resolved.
    pub busctl: PathBuf,
    /// `nmcli`, to ask NetworkManager when resolved does not answer.
    pub nmcli: PathBuf,
}

impl Default for LinksSection {
    fn default() -> Self {
        LinksSection {
            enabled: true,
            refresh_secs: 15,
            busctl: PathBuf::from("/usr/bin/busctl"),
            nmcli: PathBuf::from("/usr/bin/nmcli"),
        }
    }
}

/// Most bytes of a tool's output read, and most zones taken from it.
const MAX_OUTPUT: usize = 1 << 20;
const MAX_ZONES: usize = 256;

/// Runs `program args`, returning its stdout if it succeeded in time.
fn run(program: &std::path::Path, args: &[&str]) -> Option<String> {
    if !program.is_file() {
        return None;
    }
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SYSTEMD_PAGER", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Read while it runs: a full pipe would otherwise stall it until the deadline.
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut out = Vec::new();
        let _ = stdout.take(MAX_OUTPUT as u64).read_to_end(&mut out);
        out
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().ok()?;
    status
        .filter(std::process::ExitStatus::success)
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

/// The links' zones now, and where they came from (`None`: no source answered).
pub fn read(section: &LinksSection) -> Option<(Vec<LocalZone>, &'static str)> {
    let prop = |name: &str| {
        run(
            &section.busctl,
            &[
                "--json=short",
                "get-property",
                "org.freedesktop.resolve1",
                "/org/freedesktop/resolve1",
                "org.freedesktop.resolve1.Manager",
                name,
            ],
        )
    };
    if let (Some(dns), Some(domains)) = (prop("DNS"), prop("Domains")) {
        return Some((from_resolved(&dns, &domains), "systemd-resolved"));
    }
    let nm = run(
        &section.nmcli,
        &[
            "-t",
            "-f",
            "GENERAL.DEVICE,IP4.DNS,IP4.DOMAIN,IP6.DNS,IP6.DOMAIN",
            "device",
            "show",
        ],
    )?;
    Some((from_nmcli(&nm), "NetworkManager"))
}

#[derive(Debug, Deserialize)]
struct Property<T> {
    data: T,
}

/// A server address the links' zones can use (not link-local IPv6: that needs a scope).
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_broadcast(),
        IpAddr::V6(v6) => {
            !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80 // link-local
        }
    }
}

/// A domain as a zone: lowercase, no leading `~` or trailing dot, valid labels; `None` for
/// the root or junk.
fn zone_name(text: &str) -> Option<String> {
    let z = text.trim().trim_start_matches('~').trim_end_matches('.');
    let fine = !z.is_empty()
        && z.len() <= 253
        && z.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && z.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    fine.then(|| z.to_ascii_lowercase())
}

/// Names for private use only: a network may always keep these to itself.
const PRIVATE_SINGLE_LABELS: &[&str] = &[
    "lan",
    "home",
    "internal",
    "intranet",
    "corp",
    "private",
    "localdomain",
];

fn is_private_use(zone: &str) -> bool {
    let under = |suffix: &str| zone == suffix || zone.ends_with(&format!(".{suffix}"));
    let private_reverse = under("10.in-addr.arpa")
        || under("168.192.in-addr.arpa")
        || (16..=31).any(|n| under(&format!("{n}.172.in-addr.arpa")))
        || under("d.f.ip6.arpa");
    PRIVATE_SINGLE_LABELS.contains(&zone) || under("home.arpa") || private_reverse
}

/// Whether a link may keep `zone` to its own resolvers. Private-use names always; other names
/// only as routing domains (`~corp.example`, what VPNs set, not what any network's DHCP hands
/// out as a search domain), with at least two labels and never a reverse-lookup tree as a
/// whole. A café's network can thus never take `com` or `google.com` off the encrypted
/// upstreams.
fn acceptable(zone: &str, routing_only: bool) -> bool {
    if is_private_use(zone) {
        return true;
    }
    routing_only
        && zone.contains('.')
        && !matches!(zone, "in-addr.arpa" | "ip6.arpa" | "arpa")
        && !zone.ends_with(".in-addr.arpa")
        && !zone.ends_with(".ip6.arpa")
}

/// Zones from per-link servers and domains.
fn zones(
    servers: BTreeMap<String, Vec<IpAddr>>,
    domains: BTreeMap<String, Vec<String>>,
) -> Vec<LocalZone> {
    let mut out = Vec::new();
    for (link, names) in domains {
        let Some(addrs) = servers.get(&link).filter(|a| !a.is_empty()) else {
            continue;
        };
        let specs: Vec<_> = addrs
            .iter()
            .filter_map(|ip| {
                let text = match ip {
                    IpAddr::V4(v4) => format!("plain://{v4}"),
                    IpAddr::V6(v6) => format!("plain://[{v6}]"),
                };
                text.parse().ok()
            })
            .collect();
        if specs.is_empty() {
            continue;
        }
        for zone in names {
            if out.len() >= MAX_ZONES {
                return out;
            }
            out.push(LocalZone {
                zone,
                servers: specs.clone(),
            });
        }
    }
    out
}

/// Parses `busctl --json=short get-property … DNS` (`a(iiay)`: link, family, address) and
/// `… Domains` (`a(isb)`: link, domain, routing-only). Link 0 is the global setting, which is
/// not a link's zone.
fn from_resolved(dns: &str, domains: &str) -> Vec<LocalZone> {
    let dns: Vec<(i64, i64, Vec<u8>)> = serde_json::from_str::<Property<_>>(dns)
        .map(|p| p.data)
        .unwrap_or_default();
    let names: Vec<(i64, String, bool)> = serde_json::from_str::<Property<_>>(domains)
        .map(|p| p.data)
        .unwrap_or_default();
    let mut servers: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (link, family, bytes) in dns {
        let ip = match (family, bytes.as_slice()) {
            (2, &[a, b, c, d]) => IpAddr::from([a, b, c, d]),
            (10, b) if b.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::from(a)
            }
            _ => continue,
        };
        if link > 0 && usable(ip) {
            servers.entry(link.to_string()).or_default().push(ip);
        }
    }
    let mut by_link: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (link, name, routing_only) in names {
        if let (true, Some(z)) = (link > 0, zone_name(&name))
            && acceptable(&z, routing_only)
        {
            by_link.entry(link.to_string()).or_default().push(z);
        }
    }
    zones(servers, by_link)
}

/// Parses `nmcli -t -f GENERAL.DEVICE,IP4.DNS,IP4.DOMAIN,IP6.DNS,IP6.DOMAIN device show`.
fn from_nmcli(text: &str) -> Vec<LocalZone> {
    let mut servers: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut domains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut device = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        // Terse mode escapes the colons of values (IPv6 addresses).
        let value = value.replace("\\:", ":");
        let field = key.split('[').next().unwrap_or(key);
        match field {
            "GENERAL.DEVICE" => value.clone_into(&mut device),
            "IP4.DNS" | "IP6.DNS" => {
                if let Ok(ip) = value.trim().parse::<IpAddr>()
                    && usable(ip)
                {
                    servers.entry(device.clone()).or_default().push(ip);
                }
            }
            "IP4.DOMAIN" | "IP6.DOMAIN" => {
                // NetworkManager writes routing domains with a leading `~`.
                let routing = value.trim().starts_with('~');
                if let Some(z) = zone_name(&value).filter(|z| acceptable(z, routing)) {
                    let list = domains.entry(device.clone()).or_default();
                    if !list.contains(&z) {
                        list.push(z);
                    }
                }
            }
            _ => {}
        }
    }
    zones(servers, domains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(z: &[LocalZone]) -> Vec<(String, Vec<String>)> {
        z.iter()
            .map(|z| {
                (
                    z.zone.clone(),
                    z.servers.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn resolved_links_give_their_domains_and_servers() {
        let dns = r#"{"type":"a(iiay)","data":[[0,2,[1,1,1,1]],[3,2,[10,8,0,1]],[3,10,[253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]],[2,2,[192,168,1,1]],[2,10,[254,128,0,0,0,0,0,0,0,0,0,0,0,0,0,1]],[4,2,[1,2]]]}"#;
        let domains = r#"{"type":"a(isb)","data":[[0,"example.org",false],[3,"corp.example",true],[3,"Internal.Corp.",true],[2,"lan",false],[2,".",true],[2,"com",true],[2,"google.com",false],[2,"in-addr.arpa",true],[2,"168.192.in-addr.arpa",false],[5,"nolink.example",false]]}"#;
        let z = from_resolved(dns, domains);
        let p = pairs(&z);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|(zone, s)| zone == "lan" && s.len() == 1));
        assert!(p.iter().any(|(zone, _)| zone == "168.192.in-addr.arpa"));
        let corp = p.iter().find(|(zone, _)| zone == "corp.example").unwrap();
        assert_eq!(corp.1.len(), 2, "IPv4 and a ULA IPv6 server: {corp:?}");
        assert!(p.iter().any(|(zone, _)| zone == "internal.corp"));
        // A network may not take public names: not a TLD, not a search domain, not all reverse.
        for taken in ["com", "google.com", "in-addr.arpa"] {
            assert!(!p.iter().any(|(zone, _)| zone == taken), "{taken}: {p:?}");
        }
        // Junk does not parse, and is no zone.
        assert!(from_resolved("not json", "{}").is_empty());
        assert!(
            from_resolved(
                r#"{"data":[[1,2,[1,2,3,4]]]}"#,
                r#"{"data":[[1,"bad name!",false]]}"#
            )
            .is_empty()
        );
    }

    #[test]
    fn network_manager_devices_give_their_domains_and_servers() {
        let text = "GENERAL.DEVICE:wlan0\nIP4.DNS[1]:192.168.1.1\nIP4.DOMAIN[1]:home.arpa\n\
                    IP4.DOMAIN[2]:cafe-wifi.example\nIP4.DOMAIN[3]:a..b\n\
                    IP6.DNS[1]:fd00\\:\\:1\nIP6.DNS[2]:fe80\\:\\:1\n\n\
                    GENERAL.DEVICE:tun0\nIP4.DNS[1]:10.8.0.1\nIP4.DOMAIN[1]:~corp.example\n\
                    IP4.DOMAIN[2]:~.\n\nGENERAL.DEVICE:lo\n";
        let p = pairs(&from_nmcli(text));
        assert_eq!(p.len(), 2, "{p:?}");
        let home = p.iter().find(|(zone, _)| zone == "home.arpa").unwrap();
        assert_eq!(home.1.len(), 2, "{home:?}");
        assert!(
            p.iter()
                .any(|(zone, s)| zone == "corp.example" && s.len() == 1)
        );
    }

    #[test]
    fn a_missing_tool_is_no_source() {
        let section = LinksSection {
            busctl: PathBuf::from("/nonexistent/busctl"),
            nmcli: PathBuf::from("/nonexistent/nmcli"),
            ..LinksSection::default()
        };
        assert!(read(&section).is_none());
    }
}
