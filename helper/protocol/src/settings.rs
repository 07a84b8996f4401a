//! Typed settings: the keys a user can set globally or per app, their values, and how a
//! resolved setting reports where it came from (app, global, built-in default).
//!
//! Text parsing lives here too (`SettingKey::from_str`, `SettingValue::parse`) so that the CLI
//! and the app parse exactly alike without depending on the helper.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happens to a connection that no rule or setting decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let it through.
    Allow,
    /// Refuse it at once (TCP reset / ICMP unreachable) so the app fails fast.
    Block,
    /// Ask the user through every connected UI; with nobody connected, use the fallback.
    Ask,
}

impl Action {
    /// The word used in rule text, settings and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Ask => "ask",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Network scopes, as used by `block_scopes` and by scope keywords in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The machine itself: 127.0.0.0/8 and ::1.
    Localhost,
    /// Private, link-local, unique-local, multicast and broadcast addresses.
    Lan,
    /// Every other address.
    Internet,
    /// Internet addresses that the app did not look up through Portcullis' DNS.
    P2p,
    /// Connections that others open to this machine.
    Inbound,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 5] = [
        Scope::Localhost,
        Scope::Lan,
        Scope::Internet,
        Scope::P2p,
        Scope::Inbound,
    ];

    /// The keyword used in rule text and settings (`Localhost`, `LAN`, …).
    pub fn keyword(self) -> &'static str {
        match self {
            Scope::Localhost => "Localhost",
            Scope::Lan => "LAN",
            Scope::Internet => "Internet",
            Scope::P2p => "P2P",
            Scope::Inbound => "Inbound",
        }
    }

    /// Parses a scope keyword, case-insensitively.
    pub fn from_keyword(word: &str) -> Option<Scope> {
        Scope::ALL
            .into_iter()
            .find(|s| s.keyword().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// What a filter list blocks: the user turns lists on by category, globally or per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ListCategory {
    /// Advertising.
    Ads,
    /// Tracking and telemetry.
    Trackers,
    /// Malware distribution and command-and-control.
    Malware,
    /// Phishing, scams and other badware.
    Phishing,
}

impl ListCategory {
    /// Every category, in display order.
    pub const ALL: [ListCategory; 4] = [
        ListCategory::Ads,
        ListCategory::Trackers,
        ListCategory::Malware,
        ListCategory::Phishing,
    ];

    /// The word used in settings and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ListCategory::Ads => "ads",
            ListCategory::Trackers => "trackers",
            ListCategory::Malware => "malware",
            ListCategory::Phishing => "phishing",
        }
    }

    /// The category named `word` (any case).
    pub fn from_word(word: &str) -> Option<ListCategory> {
        ListCategory::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for ListCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A setting's name. The string form (`default_action`, …) is what the CLI and the database use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SettingKey {
    /// `allow`, `block` or `ask`: the verdict when no rule matched.
    DefaultAction,
    /// `true`/`false`: refuse connections that others open to this machine (localhost exempt).
    BlockInbound,
    /// A list of scopes to refuse, e.g. `Internet,P2P` (empty: none).
    BlockScopes,
    /// Seconds a prompt waits for an answer (1–3600).
    PromptTimeoutSecs,
    /// `allow` or `block`: the verdict when a prompt is not answered in time.
    PromptFallback,
    /// Global only. `true`: traffic passes while the helper is not running; `false`: it stops.
    FailOpen,
    /// `true`/`false`: refuse well-known DNS-over-HTTPS/TLS services (by name at the resolver,
    /// by address on ports 443 and 853), so apps fall back to the system's DNS, which is
    /// Portcullis'.
    BlockDoh,
    /// `true`/`false`: keep this app's connections and DNS queries in the network history.
    RecordHistory,
    /// The filter-list categories that block, e.g. `ads,trackers,malware,phishing` (empty or
    /// `none`: no lists).
    FilterLists,
}

impl SettingKey {
    /// Every key, in display order.
    pub const ALL: [SettingKey; 9] = [
        SettingKey::DefaultAction,
        SettingKey::BlockInbound,
        SettingKey::BlockScopes,
        SettingKey::FilterLists,
        SettingKey::BlockDoh,
        SettingKey::PromptTimeoutSecs,
        SettingKey::PromptFallback,
        SettingKey::FailOpen,
        SettingKey::RecordHistory,
    ];

    /// The key's name as typed by people.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKey::DefaultAction => "default_action",
            SettingKey::BlockInbound => "block_inbound",
            SettingKey::BlockScopes => "block_scopes",
            SettingKey::PromptTimeoutSecs => "prompt_timeout_secs",
            SettingKey::PromptFallback => "prompt_fallback",
            SettingKey::FailOpen => "fail_open",
            SettingKey::BlockDoh => "block_doh",
            SettingKey::RecordHistory => "record_history",
            SettingKey::FilterLists => "filter_lists",
        }
    }

    /// Whether an app may override this key (some settings only make sense machine-wide).
    pub fn per_app(self) -> bool {
        !matches!(self, SettingKey::FailOpen)
    }

    /// One line for people: what the key does and which values it takes.
    pub fn help(self) -> &'static str {
        match self {
            SettingKey::DefaultAction => "verdict when no rule matched: allow, block or ask",
            SettingKey::BlockInbound => {
                "refuse connections opened to this machine (localhost exempt): true or false"
            }
            SettingKey::BlockScopes => {
                "scopes to refuse, comma-separated: Localhost, LAN, Internet, P2P, Inbound"
            }
            SettingKey::PromptTimeoutSecs => "seconds a prompt waits for an answer: 1 to 3600",
            SettingKey::PromptFallback => "verdict when a prompt is not answered: allow or block",
            SettingKey::FailOpen => {
                "global only: let traffic pass while the helper is not running: true or false"
            }
            SettingKey::BlockDoh => {
                "refuse well-known DNS-over-HTTPS/TLS services, so apps use the system's DNS: true or false"
            }
            SettingKey::RecordHistory => {
                "keep connections and DNS queries in the network history: true or false"
            }
            SettingKey::FilterLists => {
                "filter-list categories that block, comma-separated: ads, trackers, malware, phishing (or none)"
            }
        }
    }
}

impl fmt::Display for SettingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a setting key or value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingParseError {
    /// What was wrong, naming the offending text.
    pub message: String,
}

impl fmt::Display for SettingParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingParseError {}

impl FromStr for SettingKey {
    type Err = SettingParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().replace('-', "_");
        SettingKey::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| SettingParseError {
                message: format!(
                    "unknown setting `{s}` (known: {})",
                    SettingKey::ALL.map(SettingKey::as_str).join(", ")
                ),
            })
    }
}

/// A setting's value. Each key takes exactly one variant; `SettingValue::parse` enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum SettingValue {
    /// For `default_action` and `prompt_fallback`.
    Action(Action),
    /// For `block_inbound` and `fail_open`.
    Bool(bool),
    /// For `block_scopes`; sorted, without duplicates.
    Scopes(Vec<Scope>),
    /// For `prompt_timeout_secs`.
    Seconds(u32),
    /// For `filter_lists`; sorted, without duplicates.
    Categories(Vec<ListCategory>),
}

impl SettingValue {
    /// Parses the text form of a value for `key`, naming the bad text on error.
    pub fn parse(key: SettingKey, text: &str) -> Result<SettingValue, SettingParseError> {
        let text = text.trim();
        let bad = |what: &str| SettingParseError {
            message: format!("invalid value `{text}` for {key}: expected {what}"),
        };
        let value = match key {
            SettingKey::DefaultAction => SettingValue::Action(match text {
                "allow" => Action::Allow,
                "block" => Action::Block,
                "ask" => Action::Ask,
                _ => return Err(bad("allow, block or ask")),
            }),
            SettingKey::PromptFallback => SettingValue::Action(match text {
                "allow" => Action::Allow,
                "block" => Action::Block,
                _ => return Err(bad("allow or block")),
            }),
            SettingKey::BlockInbound
            | SettingKey::FailOpen
            | SettingKey::BlockDoh
            | SettingKey::RecordHistory => SettingValue::Bool(match text {
                "true" | "yes" | "on" => true,
                "false" | "no" | "off" => false,
                _ => return Err(bad("true or false")),
            }),
            SettingKey::BlockScopes => {
                let mut scopes = Vec::new();
                for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    match Scope::from_keyword(word) {
                        Some(s) => scopes.push(s),
                        None => {
                            return Err(SettingParseError {
                                message: format!(
                                    "invalid scope `{word}` for {key}: expected Localhost, LAN, \
                                     Internet, P2P or Inbound"
                                ),
                            });
                        }
                    }
                }
                scopes.sort();
                scopes.dedup();
                SettingValue::Scopes(scopes)
            }
            SettingKey::FilterLists => {
                let mut categories = Vec::new();
                if !text.eq_ignore_ascii_case("none") {
                    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                        match ListCategory::from_word(word) {
                            Some(c) => categories.push(c),
                            None => {
                                return Err(SettingParseError {
                                    message: format!(
                                        "invalid category `{word}` for {key}: expected ads, \
                                         trackers, malware, phishing, or none"
                                    ),
                                });
                            }
                        }
                    }
                }
                categories.sort();
                categories.dedup();
                SettingValue::Categories(categories)
            }
            SettingKey::PromptTimeoutSecs => match text.parse::<u32>() {
                Ok(n) if (1..=3600).contains(&n) => SettingValue::Seconds(n),
                _ => return Err(bad("a whole number of seconds from 1 to 3600")),
            },
        };
        Ok(value)
    }

    /// Checks that this value fits `key` (a value that arrived as JSON, not as text).
    pub fn check(&self, key: SettingKey) -> Result<(), SettingParseError> {
        let fits = match (key, self) {
            (SettingKey::DefaultAction, SettingValue::Action(_)) => true,
            (SettingKey::PromptFallback, SettingValue::Action(a)) => *a != Action::Ask,
            (
                SettingKey::BlockInbound
                | SettingKey::FailOpen
                | SettingKey::BlockDoh
                | SettingKey::RecordHistory,
                SettingValue::Bool(_),
            ) => true,
            (SettingKey::BlockScopes, SettingValue::Scopes(s)) => {
                // As `parse` makes it: sorted, without duplicates (so at most 5).
                s.windows(2).all(|w| matches!(w, [a, b] if a < b))
            }
            (SettingKey::PromptTimeoutSecs, SettingValue::Seconds(n)) => (1..=3600).contains(n),
            (SettingKey::FilterLists, SettingValue::Categories(c)) => {
                c.windows(2).all(|w| matches!(w, [a, b] if a < b))
            }
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(SettingParseError {
                message: format!("value `{self}` does not fit setting {key}"),
            })
        }
    }
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Action(a) => write!(f, "{a}"),
            SettingValue::Bool(b) => write!(f, "{b}"),
            SettingValue::Scopes(s) => {
                let words: Vec<&str> = s.iter().map(|s| s.keyword()).collect();
                f.write_str(&words.join(","))
            }
            SettingValue::Seconds(n) => write!(f, "{n}"),
            SettingValue::Categories(c) if c.is_empty() => f.write_str("none"),
            SettingValue::Categories(c) => {
                let words: Vec<&str> = c.iter().map(|c| c.as_str()).collect();
                f.write_str(&words.join(","))
            }
        }
    }
}

/// Where a resolved setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SettingSource {
    /// Set on the app's own profile.
    App,
    /// Set globally.
    Global,
    /// Nobody set it: Portcullis' built-in default.
    Default,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SettingSource::App => "app",
            SettingSource::Global => "global",
            SettingSource::Default => "default",
        })
    }
}

/// One resolved setting and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SettingEntry {
    /// The key.
    pub key: SettingKey,
    /// The value in force.
    pub value: SettingValue,
    /// Who set it.
    pub source: SettingSource,
}

/// The settings in force for the global profile or for one app, key by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SettingsView {
    /// The app these settings are for; `None` for the global settings.
    pub app: Option<String>,
    /// Every key, resolved app → global → default.
    pub entries: Vec<SettingEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_their_names_and_unknown_keys_are_named() {
        for key in SettingKey::ALL {
            assert_eq!(key.as_str().parse::<SettingKey>().unwrap(), key);
        }
        assert_eq!(
            "prompt-timeout-secs".parse::<SettingKey>().unwrap(),
            SettingKey::PromptTimeoutSecs
        );
        let err = "colour".parse::<SettingKey>().unwrap_err();
        assert!(err.message.contains("`colour`"), "{err}");
    }

    #[test]
    fn values_parse_per_key_and_round_trip_through_display() {
        let cases = [
            (SettingKey::DefaultAction, "ask"),
            (SettingKey::BlockInbound, "false"),
            (SettingKey::BlockScopes, "LAN,Internet"),
            (SettingKey::BlockScopes, ""),
            (SettingKey::PromptTimeoutSecs, "60"),
            (SettingKey::PromptFallback, "block"),
            (SettingKey::FailOpen, "true"),
        ];
        for (key, text) in cases {
            let v = SettingValue::parse(key, text).unwrap();
            v.check(key).unwrap();
            assert_eq!(v.to_string(), text);
            assert_eq!(SettingValue::parse(key, &v.to_string()).unwrap(), v);
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_text_named() {
        let err = SettingValue::parse(SettingKey::PromptFallback, "ask").unwrap_err();
        assert!(err.message.contains("`ask`"), "{err}");
        let err = SettingValue::parse(SettingKey::BlockScopes, "LAN,Moon").unwrap_err();
        assert!(err.message.contains("`Moon`"), "{err}");
        assert!(SettingValue::parse(SettingKey::PromptTimeoutSecs, "0").is_err());
        assert!(SettingValue::parse(SettingKey::PromptTimeoutSecs, "-1").is_err());
        assert!(
            SettingValue::Bool(true)
                .check(SettingKey::DefaultAction)
                .is_err()
        );
        assert!(
            SettingValue::Seconds(0)
                .check(SettingKey::PromptTimeoutSecs)
                .is_err()
        );
    }

    #[test]
    fn scope_lists_are_sorted_and_deduplicated() {
        let v = SettingValue::parse(SettingKey::BlockScopes, "p2p, lan ,P2P").unwrap();
        assert_eq!(v, SettingValue::Scopes(vec![Scope::Lan, Scope::P2p]));
    }
}
