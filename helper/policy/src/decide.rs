//! The decision function: given what is known about one connection and the rules and settings
//! of the app's profile and the global profile, it returns a verdict and the explanation the
//! UI and CLI show. This module owns the order below; it must not do I/O, keep state between
//! calls, or know how profiles are stored (the daemon looks them up and passes them in).
//!
//! The order is the contract that explanations describe; the first step that decides wins:
//!
//! 1. **The app's rules**, in order, first match wins (only rules of the connection's
//!    direction).
//! 2. **The app's own blocking settings** (only values set on the app itself):
//!    `block_inbound` blocks inbound connections except from localhost; `block_scopes` blocks
//!    the connection's scope (`Internet` also covers `P2P`; `Inbound` blocks inbound
//!    connections except from localhost).
//! 3. **The global rules**, in order, first match wins.
//!    Then **filter lists** (`filter_lists`, found by the caller as [`Facts::listed`]): a
//!    domain entry naming the connection's domain (or a parent), else an IP/CIDR entry holding
//!    its remote address (never a loopback address).
//! 4. **The same blocking settings when they come from the global profile or the built-in
//!    defaults.** An app value replaces the global one: an app with `block_inbound=false` is
//!    an exception, and inbound connections to it are not blocked here.
//! 5. **`default_action`**, resolved app → global → built-in default (`ask` asks the user).
//!
//! So an app's own rules and settings beat everything global, and any rule beats the
//! settings of its own level: a global `+` rule lets a connection through even when the
//! global `block_scopes` would block its scope.

use std::net::IpAddr;

use portcullis_protocol::{
    Action, DecidedBy, Explanation, ProfileLabel, Scope, SettingEntry, SettingKey, SettingSource,
    SettingValue, Verdict,
};

use crate::rule::{Direction, Protocol, Rule, RuleAction};
use crate::scope::{AddressClass, classify_ip, connection_scope};
use crate::settings::{Overrides, resolve};

/// What is known about one connection when it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    /// Whether we opened it or a peer opened it to us.
    pub direction: Direction,
    /// Its transport protocol.
    pub protocol: Protocol,
    /// The other end's address.
    pub remote: IpAddr,
    /// The other end's port (`None` for ICMP).
    pub remote_port: Option<u16>,
    /// Our port (`None` for ICMP).
    pub local_port: Option<u16>,
    /// The name this process looked `remote` up by: lowercase, no trailing dot; from this
    /// process's own DNS answers only, so another app's lookups cannot lend it a name.
    pub domain: Option<&'a str>,
    /// Whether this app resolved `remote` through Portcullis' DNS (if not, Internet traffic
    /// to it counts as P2P).
    pub looked_up: bool,
    /// The remote's country (ISO 3166 alpha-2, uppercase), when geo-IP knows it.
    pub country: Option<[u8; 2]>,
    /// The remote's autonomous system, when known.
    pub asn: Option<u32>,
    /// The continent of `country` (AF, AN, AS, EU, NA, OC, SA), when known.
    pub continent: Option<[u8; 2]>,
    /// The filter-list entry that blocks `domain` (a domain entry) or `remote` (an IP/CIDR
    /// entry) among the lists this app uses (`filter_lists`), found by the caller; `None` when
    /// no enabled list blocks either.
    pub listed: Option<ListHit<'a>>,
}

/// What a filter-list entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTarget {
    /// A domain (and its subdomains): it decides names, and connections that carry the name.
    Name,
    /// An IP address or network: it decides connections to and from its addresses, whatever
    /// name they were looked up by. Never the machine's own loopback addresses (a list cannot
    /// know this machine, and local IPC must not break).
    Address,
}

/// A filter-list entry that blocks a name or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListHit<'a> {
    /// The list's id, e.g. `easyprivacy`.
    pub list: &'a str,
    /// The list's name, e.g. `EasyPrivacy`.
    pub name: &'a str,
    /// What the list blocks.
    pub category: portcullis_protocol::ListCategory,
    /// The listed name that matched (the name itself or a parent), or the listed address or
    /// network as the list wrote it.
    pub entry: &'a str,
    /// The entry's line in the list file.
    pub line: u32,
    /// Whether the entry names a domain or addresses.
    pub target: ListTarget,
}

impl ListHit<'_> {
    /// The block this entry makes, as an explanation; `name` is what was decided (the domain,
    /// or the remote address as text).
    pub fn explanation(&self, name: &str) -> Explanation {
        let how = if self.entry == name {
            String::new()
        } else {
            match self.target {
                ListTarget::Name => format!(" under {}", self.entry),
                ListTarget::Address => format!(" (in {})", self.entry),
            }
        };
        Explanation {
            verdict: Verdict::Block,
            summary: format!(
                "blocked: {name}{how} is on the {} list {} (line {}; filter_lists)",
                self.category, self.name, self.line
            ),
            decided_by: DecidedBy::List {
                list: self.list.to_owned(),
                name: self.name.to_owned(),
                category: self.category,
                entry: self.entry.to_owned(),
                line: self.line,
            },
        }
    }
}

/// A rule as stored in a profile's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    /// The database id, reported in explanations; `None` for rules that are not stored.
    pub id: Option<i64>,
    /// The rule.
    pub rule: Rule,
}

/// One profile's part in a decision: its label, the settings it sets itself, and its rules
/// in order.
#[derive(Debug, Clone)]
pub struct ProfileRules<'a> {
    /// How explanations name this profile.
    pub label: ProfileLabel,
    /// Only the settings this profile sets (resolution happens here).
    pub settings: &'a Overrides,
    /// The ordered rule list: the first match wins.
    pub rules: &'a [StoredRule],
}

/// Decides one connection: see the module doc for the order. `app` is `None` for traffic no
/// app profile applies to; then only the global profile and the defaults decide.
pub fn decide(
    app: Option<&ProfileRules<'_>>,
    global: &ProfileRules<'_>,
    facts: &Facts<'_>,
) -> Explanation {
    let app_settings = app.map(|a| a.settings);
    let blocking = [
        resolve(SettingKey::BlockInbound, app_settings, global.settings),
        resolve(SettingKey::BlockScopes, app_settings, global.settings),
        resolve(SettingKey::BlockDoh, app_settings, global.settings),
    ];
    let app_label = app.map(|a| &a.label);

    // 1. The app's rules.
    if let Some(found) = app.and_then(|a| first_match(a, facts)) {
        return found;
    }
    // 2. The app's own blocking settings.
    for entry in blocking.iter().filter(|e| e.source == SettingSource::App) {
        if let Some(found) = blocked_by_setting(entry, app_label, facts) {
            return found;
        }
    }
    // 3. The global rules.
    if let Some(found) = first_match(global, facts) {
        return found;
    }
    // 3½. Filter lists: after every rule, so that the user's allow rules win over them.
    if let Some(hit) = facts.listed {
        match (hit.target, facts.domain) {
            (ListTarget::Name, Some(domain)) => return hit.explanation(domain),
            (ListTarget::Address, _) if classify_ip(facts.remote) != AddressClass::Localhost => {
                return hit.explanation(&facts.remote.to_canonical().to_string());
            }
            _ => {}
        }
    }
    // 4. Blocking settings from the global profile or the defaults.
    for entry in blocking.iter().filter(|e| e.source != SettingSource::App) {
        if let Some(found) = blocked_by_setting(entry, app_label, facts) {
            return found;
        }
    }
    // 5. The default action.
    default_action(
        resolve(SettingKey::DefaultAction, app_settings, global.settings),
        app_label,
    )
}

/// Decides a DNS name an app asks for: the first outbound rule without a port spec whose
/// entity is a domain (`example.com`, `*.example.com`, `.example.com`) matching `name`, in the
/// app's rules, then the global rules. `None` when no such rule matches: the name resolves,
/// and the connections to its addresses are decided as connections (with the name as their
/// domain). Rules on addresses, networks, countries or ports never decide names, and neither
/// do `default_action` and the blocking settings: they apply to connections. `name` is
/// lowercase ASCII without a trailing dot.
pub fn decide_name(
    app: Option<&ProfileRules<'_>>,
    global: &ProfileRules<'_>,
    name: &str,
    listed: Option<&ListHit<'_>>,
) -> Option<Explanation> {
    let domain_rule = |rule: &Rule| {
        rule.direction == Direction::Outbound
            && rule.portspec.is_none()
            && matches!(
                rule.entity,
                crate::rule::Entity::Domain(_)
                    | crate::rule::Entity::Subdomains(_)
                    | crate::rule::Entity::DomainTree(_)
            )
    };
    // Facts that only a domain entity can match: the address is never looked at.
    let facts = Facts {
        direction: Direction::Outbound,
        protocol: Protocol::Udp,
        remote: IpAddr::from([0, 0, 0, 0]),
        remote_port: None,
        local_port: None,
        domain: Some(name),
        looked_up: true,
        country: None,
        asn: None,
        continent: None,
        listed: None,
    };
    let by_rule = [app, Some(global)]
        .into_iter()
        .flatten()
        .find_map(|profile| {
            let stored = profile
                .rules
                .iter()
                .find(|s| domain_rule(&s.rule) && s.rule.matches(&facts))?;
            first_match(
                &ProfileRules {
                    label: profile.label.clone(),
                    settings: profile.settings,
                    rules: std::slice::from_ref(stored),
                },
                &facts,
            )
        });
    if by_rule.is_some() {
        return by_rule;
    }
    // No rule names it: a filter list the app uses may.
    if let Some(hit) = listed {
        return Some(hit.explanation(name));
    }
    if !crate::doh::is_doh_name(name) {
        return None;
    }
    // No rule names it: a DoH/DoT service's name is refused while `block_doh` is on.
    let entry = resolve(
        SettingKey::BlockDoh,
        app.map(|a| a.settings),
        global.settings,
    );
    if entry.value != SettingValue::Bool(true) {
        return None;
    }
    let origin = match entry.source {
        SettingSource::App => format!("set on {}", label_or_app(app.map(|a| &a.label))),
        SettingSource::Global => "global settings".to_owned(),
        SettingSource::Default => "built-in default".to_owned(),
    };
    Some(Explanation {
        verdict: Verdict::Block,
        summary: format!(
            "blocked: {name} is a DNS-over-HTTPS/TLS service, so the app uses the system's DNS (block_doh, {origin})"
        ),
        decided_by: DecidedBy::Setting {
            key: SettingKey::BlockDoh,
            value: entry.value,
            source: entry.source,
        },
    })
}

/// The first rule of `profile` that matches, as an explanation.
fn first_match(profile: &ProfileRules<'_>, facts: &Facts<'_>) -> Option<Explanation> {
    let stored = profile.rules.iter().find(|s| s.rule.matches(facts))?;
    let text = stored.rule.to_string();
    let (verdict, verb) = match stored.rule.action {
        RuleAction::Allow => (Verdict::Allow, "allowed"),
        RuleAction::Block => (Verdict::Block, "blocked"),
    };
    let owner = match &profile.label {
        ProfileLabel::Global => "the global rules".to_owned(),
        other => other.to_string(),
    };
    Some(Explanation {
        verdict,
        summary: format!("{verb} by rule `{text}` of {owner}"),
        decided_by: DecidedBy::Rule {
            profile: profile.label.clone(),
            rule_id: stored.id,
            text,
        },
    })
}

/// Whether a `block_inbound` or `block_scopes` entry blocks this connection.
fn blocked_by_setting(
    entry: &SettingEntry,
    app_label: Option<&ProfileLabel>,
    facts: &Facts<'_>,
) -> Option<Explanation> {
    // Localhost peers are this machine; blocking them as "inbound" would break local IPC.
    let foreign_inbound = facts.direction == Direction::Inbound
        && classify_ip(facts.remote) != AddressClass::Localhost;
    let summary = match (&entry.key, &entry.value) {
        (SettingKey::BlockDoh, SettingValue::Bool(true))
            if facts.direction == Direction::Outbound
                && crate::doh::is_doh_endpoint(facts.remote, facts.remote_port) =>
        {
            let origin = match entry.source {
                SettingSource::App => format!("set on {}", label_or_app(app_label)),
                SettingSource::Global => "global settings".to_owned(),
                SettingSource::Default => "built-in default".to_owned(),
            };
            format!(
                "blocked: a well-known DNS-over-HTTPS/TLS service, so the app uses the system's DNS (block_doh, {origin})"
            )
        }
        (SettingKey::BlockInbound, SettingValue::Bool(true)) if foreign_inbound => {
            let origin = match entry.source {
                SettingSource::App => format!("set on {}", label_or_app(app_label)),
                SettingSource::Global => "global settings".to_owned(),
                SettingSource::Default => "built-in default".to_owned(),
            };
            format!("blocked: inbound connections are blocked (block_inbound, {origin})")
        }
        (SettingKey::BlockScopes, SettingValue::Scopes(list)) => {
            let scope = connection_scope(facts);
            let listed = if scope == Scope::Inbound {
                // `Inbound` in the list exempts localhost, like block_inbound does.
                foreign_inbound && list.contains(&Scope::Inbound)
            } else {
                list.contains(&scope)
            };
            let via_internet = scope == Scope::P2p && list.contains(&Scope::Internet);
            if !listed && !via_internet {
                return None;
            }
            let because = if listed {
                ""
            } else {
                " (Internet includes P2P)"
            };
            let origin = match entry.source {
                SettingSource::App => format!("set on {}", label_or_app(app_label)),
                SettingSource::Global => "set in global settings".to_owned(),
                SettingSource::Default => "by built-in default".to_owned(),
            };
            format!(
                "blocked: scope {scope} is blocked by block_scopes={}{because} {origin}",
                entry.value
            )
        }
        _ => return None,
    };
    Some(Explanation {
        verdict: Verdict::Block,
        decided_by: DecidedBy::Setting {
            key: entry.key,
            value: entry.value.clone(),
            source: entry.source,
        },
        summary,
    })
}

/// The explanation for step 5.
fn default_action(entry: SettingEntry, app_label: Option<&ProfileLabel>) -> Explanation {
    // `resolve` only returns values that fit their key, so this is always an action; the
    // fallback keeps the function total without a panic path.
    let action = match entry.value {
        SettingValue::Action(a) => a,
        _ => Action::Allow,
    };
    let (verdict, verb) = match action {
        Action::Allow => (Verdict::Allow, "allowed by"),
        Action::Block => (Verdict::Block, "blocked by"),
        Action::Ask => (Verdict::Ask, "asking the user, by"),
    };
    let origin = match entry.source {
        SettingSource::App => label_or_app(app_label),
        SettingSource::Global => "global settings".to_owned(),
        SettingSource::Default => "built-in default".to_owned(),
    };
    Explanation {
        verdict,
        summary: format!("{verb} default_action={action} ({origin})"),
        decided_by: DecidedBy::Setting {
            key: entry.key,
            value: entry.value,
            source: entry.source,
        },
    }
}

/// Names the app profile in a summary; an app source without an app cannot happen, but the
/// summary must still read well.
fn label_or_app(app_label: Option<&ProfileLabel>) -> String {
    app_label.map_or_else(|| "the app".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURL: &str = "/usr/bin/curl";

    fn rules(texts: &[&str]) -> Vec<StoredRule> {
        texts
            .iter()
            .zip(1..)
            .map(|(t, id)| StoredRule {
                id: Some(id),
                rule: t.parse().unwrap(),
            })
            .collect()
    }

    fn out(remote: &str, port: u16) -> Facts<'static> {
        Facts {
            direction: Direction::Outbound,
            protocol: Protocol::Tcp,
            remote: remote.parse().unwrap(),
            remote_port: Some(port),
            local_port: Some(40000),
            domain: None,
            looked_up: true,
            country: None,
            asn: None,
            continent: None,
            listed: None,
        }
    }

    fn inbound(remote: &str, local_port: u16) -> Facts<'static> {
        Facts {
            direction: Direction::Inbound,
            remote_port: Some(40000),
            local_port: Some(local_port),
            looked_up: false,
            ..out(remote, 0)
        }
    }

    /// Owns one app's and the global profile's data so tests can borrow `ProfileRules`.
    struct World {
        app_settings: Overrides,
        app_rules: Vec<StoredRule>,
        global_settings: Overrides,
        global_rules: Vec<StoredRule>,
    }

    impl World {
        fn new() -> World {
            World {
                app_settings: Overrides::new(),
                app_rules: Vec::new(),
                global_settings: Overrides::new(),
                global_rules: Vec::new(),
            }
        }
        fn app_rules(mut self, texts: &[&str]) -> World {
            self.app_rules = rules(texts);
            self
        }
        fn global_rules(mut self, texts: &[&str]) -> World {
            self.global_rules = rules(texts);
            self
        }
        fn app_set(mut self, key: SettingKey, text: &str) -> World {
            self.app_settings
                .insert(key, SettingValue::parse(key, text).unwrap());
            self
        }
        fn global_set(mut self, key: SettingKey, text: &str) -> World {
            self.global_settings
                .insert(key, SettingValue::parse(key, text).unwrap());
            self
        }
        fn decide(&self, facts: &Facts<'_>) -> Explanation {
            let app = ProfileRules {
                label: ProfileLabel::App(CURL.to_owned()),
                settings: &self.app_settings,
                rules: &self.app_rules,
            };
            decide(Some(&app), &self.global(), facts)
        }
        fn decide_name(&self, name: &str) -> Option<Explanation> {
            self.decide_name_listed(name, None)
        }
        fn decide_name_listed(
            &self,
            name: &str,
            listed: Option<&ListHit<'_>>,
        ) -> Option<Explanation> {
            let app = ProfileRules {
                label: ProfileLabel::App(CURL.to_owned()),
                settings: &self.app_settings,
                rules: &self.app_rules,
            };
            decide_name(Some(&app), &self.global(), name, listed)
        }
        fn decide_without_app(&self, facts: &Facts<'_>) -> Explanation {
            decide(None, &self.global(), facts)
        }
        fn global(&self) -> ProfileRules<'_> {
            ProfileRules {
                label: ProfileLabel::Global,
                settings: &self.global_settings,
                rules: &self.global_rules,
            }
        }
    }

    #[test]
    fn names_are_decided_by_domain_rules_only_app_first() {
        let w = World::new()
            .app_rules(&["+ ads.example.com", "- 10.0.0.0/8", "- tracker.net tcp/443"])
            .global_rules(&["- .example.com", "- *.cdn.org", "+ *"])
            .app_set(SettingKey::DefaultAction, "block");
        // The app's own allow beats the global block of the whole tree.
        let e = w.decide_name("ads.example.com").unwrap();
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(e.decided_by, by_rule(app_label(), 1, "+ ads.example.com"));
        // The global tree rule covers the name itself and its subdomains.
        for name in ["example.com", "www.example.com"] {
            let e = w.decide_name(name).unwrap();
            assert_eq!(e.verdict, Verdict::Block, "{name}");
            assert_eq!(
                e.decided_by,
                by_rule(ProfileLabel::Global, 1, "- .example.com")
            );
            assert!(e.summary.contains("- .example.com"), "{}", e.summary);
        }
        // `*.` is strict: the bare name is not blocked.
        assert!(w.decide_name("img.cdn.org").is_some());
        assert_eq!(w.decide_name("cdn.org"), None);
        // Address rules, rules with a port, `+ *` and default_action never decide names.
        assert_eq!(w.decide_name("tracker.net"), None);
        assert_eq!(w.decide_name("elsewhere.io"), None);
    }

    #[test]
    fn known_doh_services_are_refused_by_name_and_address_unless_allowed() {
        let w = World::new();
        let e = w.decide_name("dns.google").unwrap();
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockDoh, "true", SettingSource::Default)
        );
        assert!(e.summary.contains("block_doh"), "{}", e.summary);
        assert_eq!(w.decide_name("example.com"), None);
        let e = w.decide(&out("8.8.8.8", 443));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockDoh, "true", SettingSource::Default)
        );
        assert_eq!(w.decide(&out("8.8.8.8", 80)).verdict, Verdict::Allow);
        // An app may keep its own resolver; a rule allowing the name also wins.
        let w = World::new().app_set(SettingKey::BlockDoh, "false");
        assert_eq!(w.decide_name("dns.google"), None);
        assert_eq!(w.decide(&out("1.1.1.1", 853)).verdict, Verdict::Allow);
        let w = World::new().app_rules(&["+ dns.google"]);
        assert_eq!(w.decide_name("dns.google").unwrap().verdict, Verdict::Allow);
    }

    fn by_rule(profile: ProfileLabel, id: i64, text: &str) -> DecidedBy {
        DecidedBy::Rule {
            profile,
            rule_id: Some(id),
            text: text.to_owned(),
        }
    }

    fn app_label() -> ProfileLabel {
        ProfileLabel::App(CURL.to_owned())
    }

    fn by_setting(key: SettingKey, text: &str, source: SettingSource) -> DecidedBy {
        DecidedBy::Setting {
            key,
            value: SettingValue::parse(key, text).unwrap(),
            source,
        }
    }

    #[test]
    fn step1_app_rule_beats_global_rule_and_first_match_wins() {
        let world = World::new()
            .app_rules(&["+ tcp/80", "- 10.0.0.0/8", "+ 10.1.2.3"])
            .global_rules(&["+ 10.0.0.0/8"]);
        let e = world.decide(&out("10.1.2.3", 443));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(e.decided_by, by_rule(app_label(), 2, "- 10.0.0.0/8"));
        assert_eq!(
            e.summary,
            "blocked by rule `- 10.0.0.0/8` of app /usr/bin/curl"
        );

        let e = world.decide(&out("10.1.2.3", 80));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(e.decided_by, by_rule(app_label(), 1, "+ tcp/80"));
    }

    #[test]
    fn rules_only_apply_to_their_direction() {
        let world = World::new()
            .app_rules(&["+ tcp/22"])
            .global_rules(&["+ Inbound tcp/22"]);
        // The outbound rule does not let an inbound connection to port 22 in; the global
        // inbound rule does.
        let e = world.decide(&inbound("192.168.1.9", 22));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_rule(ProfileLabel::Global, 1, "+ Inbound tcp/22")
        );
        assert_eq!(
            e.summary,
            "allowed by rule `+ Inbound tcp/22` of the global rules"
        );
    }

    #[test]
    fn step2_app_block_scopes_beats_global_allow_rule() {
        let world = World::new()
            .app_set(SettingKey::BlockScopes, "Internet")
            .global_rules(&["+ 8.8.8.8"]);
        let e = world.decide(&out("8.8.8.8", 443));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockScopes, "Internet", SettingSource::App)
        );
        assert_eq!(
            e.summary,
            "blocked: scope Internet is blocked by block_scopes=Internet set on app /usr/bin/curl"
        );
    }

    #[test]
    fn step2_app_rule_still_beats_app_block_scopes() {
        let world = World::new()
            .app_set(SettingKey::BlockScopes, "LAN")
            .app_rules(&["+ 10.0.0.1"]);
        let e = world.decide(&out("10.0.0.1", 445));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(e.decided_by, by_rule(app_label(), 1, "+ 10.0.0.1"));
    }

    #[test]
    fn step2_app_block_inbound_beats_global_allow_rule() {
        let world = World::new()
            .app_set(SettingKey::BlockInbound, "true")
            .global_set(SettingKey::BlockInbound, "false")
            .global_rules(&["+ Inbound tcp/8080"]);
        let e = world.decide(&inbound("192.168.1.9", 8080));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockInbound, "true", SettingSource::App)
        );
        assert_eq!(
            e.summary,
            "blocked: inbound connections are blocked (block_inbound, set on app /usr/bin/curl)"
        );
    }

    #[test]
    fn step3_global_rule_beats_global_block_scopes_and_default_block_inbound() {
        let world = World::new()
            .global_set(SettingKey::BlockScopes, "LAN")
            .global_rules(&["+ 192.168.0.0/16", "+ Inbound 192.168.0.0/16 tcp/22"]);
        let e = world.decide(&out("192.168.1.1", 631));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_rule(ProfileLabel::Global, 1, "+ 192.168.0.0/16")
        );

        let e = world.decide(&inbound("192.168.7.7", 22));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_rule(ProfileLabel::Global, 2, "+ Inbound 192.168.0.0/16 tcp/22")
        );
    }

    #[test]
    fn step4_global_block_scopes_when_no_rule_matches() {
        let world = World::new().global_set(SettingKey::BlockScopes, "LAN,P2P");
        let e = world.decide(&out("192.168.1.1", 631));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockScopes, "LAN,P2P", SettingSource::Global)
        );
        assert_eq!(
            e.summary,
            "blocked: scope LAN is blocked by block_scopes=LAN,P2P set in global settings"
        );
        // Without an app the global settings still apply.
        assert_eq!(
            world.decide_without_app(&out("192.168.1.1", 631)).verdict,
            Verdict::Block
        );
    }

    #[test]
    fn p2p_versus_looked_up_internet() {
        let world = World::new().global_set(SettingKey::BlockScopes, "P2P");
        let looked_up = out("203.0.113.5", 443);
        let e = world.decide(&looked_up);
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::DefaultAction, "allow", SettingSource::Default)
        );

        let p2p = Facts {
            looked_up: false,
            ..looked_up
        };
        let e = world.decide(&p2p);
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockScopes, "P2P", SettingSource::Global)
        );
        assert_eq!(
            e.summary,
            "blocked: scope P2P is blocked by block_scopes=P2P set in global settings"
        );

        // `Internet` in the list covers P2P too, and says so.
        let world = World::new().global_set(SettingKey::BlockScopes, "Internet");
        let e = world.decide(&p2p);
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.summary,
            "blocked: scope P2P is blocked by block_scopes=Internet (Internet includes P2P) \
             set in global settings"
        );
        assert_eq!(world.decide(&looked_up).verdict, Verdict::Block);
    }

    #[test]
    fn p2p_rule_keyword_matches_only_unresolved_internet() {
        let world = World::new().app_rules(&["- P2P"]);
        let looked_up = out("203.0.113.5", 443);
        assert_eq!(world.decide(&looked_up).verdict, Verdict::Allow);
        let e = world.decide(&Facts {
            looked_up: false,
            ..looked_up
        });
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(e.decided_by, by_rule(app_label(), 1, "- P2P"));
        assert_eq!(
            world
                .decide(&Facts {
                    looked_up: false,
                    ..out("10.0.0.1", 1)
                })
                .verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn step4_inbound_blocked_by_builtin_default() {
        let world = World::new();
        let e = world.decide(&inbound("198.51.100.7", 22));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockInbound, "true", SettingSource::Default)
        );
        assert_eq!(
            e.summary,
            "blocked: inbound connections are blocked (block_inbound, built-in default)"
        );
    }

    #[test]
    fn inbound_from_localhost_is_not_blocked_by_settings() {
        let world = World::new().global_set(SettingKey::BlockScopes, "Inbound");
        for peer in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let e = world.decide(&inbound(peer, 8080));
            assert_eq!(e.verdict, Verdict::Allow, "{peer}");
            assert_eq!(
                e.decided_by,
                by_setting(SettingKey::DefaultAction, "allow", SettingSource::Default)
            );
        }
        // …but it is from elsewhere, by block_inbound (checked first) …
        let e = world.decide(&inbound("192.168.1.2", 8080));
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockInbound, "true", SettingSource::Default)
        );
        // …and by `Inbound` in block_scopes when block_inbound is off.
        let world = world.global_set(SettingKey::BlockInbound, "false");
        let e = world.decide(&inbound("192.168.1.2", 8080));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockScopes, "Inbound", SettingSource::Global)
        );
        assert_eq!(
            e.summary,
            "blocked: scope Inbound is blocked by block_scopes=Inbound set in global settings"
        );
    }

    #[test]
    fn per_app_inbound_exception() {
        let world = World::new()
            .global_set(SettingKey::BlockInbound, "true")
            .app_set(SettingKey::BlockInbound, "false");
        let e = world.decide(&inbound("192.168.1.2", 8080));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::DefaultAction, "allow", SettingSource::Default)
        );
        // Another app (or no app) is still blocked by the global value.
        let e = world.decide_without_app(&inbound("192.168.1.2", 8080));
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::BlockInbound, "true", SettingSource::Global)
        );
        assert_eq!(
            e.summary,
            "blocked: inbound connections are blocked (block_inbound, global settings)"
        );
    }

    #[test]
    fn app_block_scopes_replaces_the_global_list() {
        let world = World::new()
            .global_set(SettingKey::BlockScopes, "LAN")
            .app_set(SettingKey::BlockScopes, "");
        let e = world.decide(&out("192.168.1.1", 631));
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::DefaultAction, "allow", SettingSource::Default)
        );
    }

    #[test]
    fn step5_default_action_from_each_source() {
        let facts = out("203.0.113.5", 443);
        let e = World::new().decide(&facts);
        assert_eq!(e.verdict, Verdict::Allow);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::DefaultAction, "allow", SettingSource::Default)
        );
        assert_eq!(
            e.summary,
            "allowed by default_action=allow (built-in default)"
        );

        let world = World::new().global_set(SettingKey::DefaultAction, "block");
        let e = world.decide(&facts);
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::DefaultAction, "block", SettingSource::Global)
        );
        assert_eq!(
            e.summary,
            "blocked by default_action=block (global settings)"
        );

        let world = world.app_set(SettingKey::DefaultAction, "ask");
        let e = world.decide(&facts);
        assert_eq!(e.verdict, Verdict::Ask);
        assert_eq!(
            e.decided_by,
            by_setting(SettingKey::DefaultAction, "ask", SettingSource::App)
        );
        assert_eq!(
            e.summary,
            "asking the user, by default_action=ask (app /usr/bin/curl)"
        );

        let world = World::new().global_set(SettingKey::DefaultAction, "allow");
        let e = world.decide_without_app(&facts);
        assert_eq!(
            e.summary,
            "allowed by default_action=allow (global settings)"
        );
    }

    #[test]
    fn filter_lists_block_after_every_rule_and_say_which_entry() {
        let hit = ListHit {
            list: "easyprivacy",
            name: "EasyPrivacy",
            category: portcullis_protocol::ListCategory::Trackers,
            entry: "tracker.example",
            line: 1234,
            target: ListTarget::Name,
        };
        let mut facts = out("203.0.113.5", 443);
        facts.domain = Some("cdn.tracker.example");
        facts.listed = Some(hit);
        let e = World::new().decide(&facts);
        assert_eq!(e.verdict, Verdict::Block);
        assert!(
            e.summary.contains("EasyPrivacy") && e.summary.contains("line 1234"),
            "{}",
            e.summary
        );
        assert!(matches!(e.decided_by, DecidedBy::List { line: 1234, .. }));
        // A user's allow rule wins over a list, global or the app's own.
        let world = World::new().global_rules(&["+ .tracker.example"]);
        assert_eq!(world.decide(&facts).verdict, Verdict::Allow);
        // Names: the same order.
        assert_eq!(
            world
                .decide_name_listed("cdn.tracker.example", Some(&hit))
                .map(|e| e.verdict),
            Some(Verdict::Allow)
        );
        let e = World::new()
            .decide_name_listed("cdn.tracker.example", Some(&hit))
            .unwrap();
        assert!(e.summary.contains("under tracker.example"), "{}", e.summary);
        // Without a domain (an address-only connection) a domain entry has nothing to say.
        facts.domain = None;
        assert_eq!(World::new().decide(&facts).verdict, Verdict::Allow);
    }

    #[test]
    fn ip_list_entries_block_addresses_after_every_rule() {
        let hit = ListHit {
            list: "drop",
            name: "Bad networks",
            category: portcullis_protocol::ListCategory::Malware,
            entry: "203.0.113.0/24",
            line: 7,
            target: ListTarget::Address,
        };
        // With or without a name, in either direction.
        let mut facts = out("203.0.113.5", 443);
        facts.listed = Some(hit);
        let e = World::new().decide(&facts);
        assert_eq!(e.verdict, Verdict::Block);
        assert_eq!(
            e.summary,
            "blocked: 203.0.113.5 (in 203.0.113.0/24) is on the malware list Bad networks \
             (line 7; filter_lists)"
        );
        assert_eq!(
            e.decided_by,
            DecidedBy::List {
                list: "drop".into(),
                name: "Bad networks".into(),
                category: portcullis_protocol::ListCategory::Malware,
                entry: "203.0.113.0/24".into(),
                line: 7,
            }
        );
        facts.domain = Some("shop.example");
        assert_eq!(World::new().decide(&facts).verdict, Verdict::Block);
        let mut inbound_facts = inbound("203.0.113.5", 22);
        inbound_facts.listed = Some(hit);
        let world = World::new().global_set(SettingKey::BlockInbound, "false");
        assert!(matches!(
            world.decide(&inbound_facts).decided_by,
            DecidedBy::List { line: 7, .. }
        ));
        // A mapped address is explained as the IPv4 address it is.
        let mut mapped = out("::ffff:203.0.113.5", 443);
        mapped.listed = Some(hit);
        assert!(
            World::new()
                .decide(&mapped)
                .summary
                .starts_with("blocked: 203.0.113.5 (in"),
        );
        // A single-address entry is not repeated.
        let single = ListHit {
            entry: "203.0.113.5",
            ..hit
        };
        facts.listed = Some(single);
        assert!(
            World::new()
                .decide(&facts)
                .summary
                .starts_with("blocked: 203.0.113.5 is on the malware list"),
        );
        facts.listed = Some(hit);
        // The user's allow rules win: an address, a network or a name rule, global or the app's.
        for rules in [
            &["+ 203.0.113.5"][..],
            &["+ 203.0.0.0/16"],
            &["+ shop.example"],
        ] {
            assert_eq!(
                World::new().global_rules(rules).decide(&facts).verdict,
                Verdict::Allow,
                "{rules:?}"
            );
            assert_eq!(
                World::new().app_rules(rules).decide(&facts).verdict,
                Verdict::Allow,
                "{rules:?}"
            );
        }
        // A list never blocks this machine's loopback addresses.
        let mut local = out("127.0.0.1", 53);
        local.listed = Some(ListHit {
            entry: "127.0.0.0/8",
            ..hit
        });
        assert_eq!(World::new().decide(&local).verdict, Verdict::Allow);
        // An address entry never decides a name on its own.
        assert_eq!(World::new().decide_name_listed("shop.example", None), None);
    }

    #[test]
    fn domain_country_and_asn_rules_decide_with_their_facts() {
        let world = World::new().global_rules(&["- .tracker.example", "- RU", "- AS64500"]);
        let mut facts = out("203.0.113.5", 443);
        facts.domain = Some("cdn.tracker.example");
        let e = world.decide(&facts);
        assert_eq!(
            e.decided_by,
            by_rule(ProfileLabel::Global, 1, "- .tracker.example")
        );
        facts.domain = Some("example.org");
        facts.country = Some(*b"RU");
        assert_eq!(
            world.decide(&facts).decided_by,
            by_rule(ProfileLabel::Global, 2, "- RU")
        );
        facts.country = Some(*b"DE");
        facts.asn = Some(64500);
        assert_eq!(
            world.decide(&facts).decided_by,
            by_rule(ProfileLabel::Global, 3, "- AS64500")
        );
        facts.asn = None;
        assert_eq!(world.decide(&facts).verdict, Verdict::Allow);
    }
}
