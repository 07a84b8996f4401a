//! Decides one observed connection with the policy snapshot in force: finds the app's
//! profile, builds the policy facts, calls `portcullis_policy::decide`, and resolves `ask`
//! when nobody can be asked. Pure: no I/O, no clock, so the verdict path's logic is tested
//! without a queue.

use std::net::IpAddr;

use portcullis_policy::scope::connection_scope;
use portcullis_policy::{Facts, ProfileRules, decide, resolve};
use portcullis_protocol::{
    Action, DecidedBy, Direction, Explanation, ProfileLabel, Protocol, Scope, SettingKey,
    SettingValue, Verdict,
};

use crate::store::Snapshot;

/// The system's own DNS clients: their traffic (a caching resolver forwarding for others,
/// refreshing its cache) is decided with the `system:dns` profile, not as an app's.
const SYSTEM_DNS_CLIENTS: &[&str] = &[
    "/usr/lib/systemd/systemd-resolved",
    "/lib/systemd/systemd-resolved",
    "/usr/sbin/dnsmasq",
    "/usr/sbin/unbound",
    "/usr/sbin/named",
    "/usr/bin/stubby",
    "/usr/sbin/dnscrypt-proxy",
];

/// The profile key for a process whose app identity has `key`: `system:dns` for the
/// system's DNS clients, else the app's own key.
pub fn profile_key(key: String) -> String {
    if SYSTEM_DNS_CLIENTS.contains(&key.as_str()) {
        crate::store::SYSTEM_DNS_KEY.to_string()
    } else {
        key
    }
}

/// What the verdict path knows of a new connection.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Who opened it.
    pub direction: Direction,
    /// Its transport protocol.
    pub protocol: Protocol,
    /// The other end.
    pub remote: IpAddr,
    /// The other end's port.
    pub remote_port: Option<u16>,
    /// Our port.
    pub local_port: Option<u16>,
    /// The app's profile key.
    pub app: &'a str,
    /// The name this app looked `remote` up by through the helper's resolver, if it did
    /// (then `remote` is not P2P).
    pub domain: Option<&'a str>,
    /// Where `remote` is, as far as geo-IP knows.
    pub place: Place,
}

/// Country, continent and autonomous system of an address, from the geo-IP data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    /// ISO 3166-1 alpha-2, uppercase.
    pub country: Option<[u8; 2]>,
    /// AF, AN, AS, EU, NA, OC or SA.
    pub continent: Option<[u8; 2]>,
    /// The autonomous system's number.
    pub asn: Option<u32>,
}

impl Place {
    /// Where `ip` is, by `geo` (nothing for private, local and unknown addresses). No
    /// allocation: cheap enough for every decision.
    pub fn of(geo: &portcullis_intel::geo::GeoDb, ip: IpAddr) -> Place {
        let found = geo.lookup(ip);
        let code2 = |s: &str| match s.as_bytes() {
            &[a, b] => Some([a, b]),
            _ => None,
        };
        Place {
            country: found.country.map(portcullis_intel::geo::Country::code),
            continent: found.continent().and_then(|c| code2(c.code())),
            asn: found.asn.map(|a| a.number),
        }
    }

    /// The country as text, for connections and history.
    pub fn country_text(&self) -> Option<String> {
        self.country
            .map(|c| String::from_utf8_lossy(&c).into_owned())
    }
}

/// Decides `seen` with `snapshot`, and gives its scope. `can_ask` says whether someone could
/// answer a prompt now; when nobody can, `ask` becomes the `prompt_fallback` verdict at once,
/// and the explanation says so.
pub fn decide_observed(
    snapshot: &Snapshot,
    lists: &crate::lists::Lists,
    seen: &Observed<'_>,
    can_ask: bool,
) -> (Explanation, Scope) {
    let app = snapshot.apps.get(seen.app);
    let listed = lists.check_connection(
        app.map(|p| &p.overrides),
        &snapshot.global.overrides,
        seen.domain,
        seen.remote,
    );
    let facts = Facts {
        direction: seen.direction,
        protocol: seen.protocol,
        remote: seen.remote,
        remote_port: seen.remote_port,
        local_port: seen.local_port,
        domain: seen.domain,
        looked_up: seen.domain.is_some(),
        country: seen.place.country,
        asn: seen.place.asn,
        continent: seen.place.continent,
        listed: listed.as_ref().map(crate::lists::Listed::hit),
    };
    let app_rules = app.map(|p| ProfileRules {
        label: ProfileLabel::App(seen.app.to_string()),
        settings: &p.overrides,
        rules: &p.compiled,
    });
    let global = ProfileRules {
        label: ProfileLabel::Global,
        settings: &snapshot.global.overrides,
        rules: &snapshot.global.compiled,
    };
    let scope = connection_scope(&facts);
    let decided = decide(app_rules.as_ref(), &global, &facts);
    if decided.verdict != Verdict::Ask || can_ask {
        return (decided, scope);
    }
    let fallback = resolve(
        SettingKey::PromptFallback,
        app.map(|p| &p.overrides),
        &snapshot.global.overrides,
    );
    let verdict = match fallback.value {
        SettingValue::Action(Action::Allow) => Verdict::Allow,
        _ => Verdict::Block,
    };
    let fallback = Explanation {
        verdict,
        summary: format!(
            "{}; nobody is connected to answer, so prompt_fallback={} ({}) decided",
            decided.summary, fallback.value, fallback.source
        ),
        decided_by: DecidedBy::Setting {
            key: SettingKey::PromptFallback,
            value: fallback.value,
            source: fallback.source,
        },
    };
    (fallback, scope)
}

#[cfg(test)]
mod tests {
    use portcullis_protocol::{AppKind, RuleLifetime, RuleOwner, SettingSource};

    use super::*;
    use crate::store::Store;

    const APP: &str = "/usr/bin/app";

    fn snapshot(setup: impl FnOnce(&mut Store)) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .ensure_app(APP, AppKind::Executable, "app", 1)
            .unwrap();
        setup(&mut store);
        store.load().unwrap()
    }

    fn out_tcp(ip: [u8; 4], port: u16, app: &str) -> Observed<'_> {
        Observed {
            direction: Direction::Outbound,
            protocol: Protocol::Tcp,
            remote: IpAddr::from(ip),
            remote_port: Some(port),
            local_port: Some(40000),
            app,
            domain: None,
            place: Place::default(),
        }
    }

    #[test]
    fn an_app_rule_blocks_only_that_app() {
        let snap = snapshot(|s| {
            let rule = "- 10.0.0.0/8".parse().unwrap();
            s.add_rule(
                &RuleOwner::App(APP.into()),
                &rule,
                None,
                RuleLifetime::Forever,
                1,
            )
            .unwrap();
        });
        let (e, _) = decide_observed(
            &snap,
            &crate::lists::Lists::default(),
            &out_tcp([10, 1, 1, 1], 80, APP),
            false,
        );
        assert_eq!(e.verdict, Verdict::Block);
        let (e, _) = decide_observed(
            &snap,
            &crate::lists::Lists::default(),
            &out_tcp([10, 1, 1, 1], 80, "/usr/bin/other"),
            false,
        );
        assert_eq!(e.verdict, Verdict::Allow);
    }

    #[test]
    fn the_system_dns_clients_share_their_profile() {
        assert_eq!(
            profile_key("/usr/lib/systemd/systemd-resolved".into()),
            "system:dns"
        );
        assert_eq!(profile_key("/usr/sbin/dnsmasq".into()), "system:dns");
        assert_eq!(profile_key("/usr/bin/curl".into()), "/usr/bin/curl");
        assert_eq!(
            profile_key("/home/u/systemd-resolved".into()),
            "/home/u/systemd-resolved",
            "only the installed programs"
        );
    }

    #[test]
    fn ask_with_nobody_to_answer_falls_back_at_once_and_says_so() {
        let snap = snapshot(|s| {
            let ask = SettingValue::Action(Action::Ask);
            s.set_setting(&RuleOwner::Global, SettingKey::DefaultAction, Some(&ask))
                .unwrap();
        });
        let (e, _) = decide_observed(
            &snap,
            &crate::lists::Lists::default(),
            &out_tcp([192, 0, 2, 1], 443, APP),
            false,
        );
        assert_eq!(e.verdict, Verdict::Block);
        assert!(matches!(
            e.decided_by,
            DecidedBy::Setting {
                key: SettingKey::PromptFallback,
                source: SettingSource::Default,
                ..
            }
        ));
        assert!(e.summary.contains("nobody is connected"), "{}", e.summary);
        let (e, _) = decide_observed(
            &snap,
            &crate::lists::Lists::default(),
            &out_tcp([192, 0, 2, 1], 443, APP),
            true,
        );
        assert_eq!(e.verdict, Verdict::Ask);
    }
}
