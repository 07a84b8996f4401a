//! Filter lists in the running helper: the shipped lists (EasyList, EasyPrivacy, URLhaus,
//! uBlock's badware list; see `data/intel/SOURCES`) and the local list files the configuration
//! adds (`[[intel.lists]]`: id, path, category, format), loaded into one compact domain set and
//! one IP/CIDR set, and the lookups that tell a decision whether a name or an address is on a
//! list the app uses (`filter_lists`, by category). A list that cannot be read is logged and
//! left out; the others still load. Both sets are built together and swapped as one value while
//! lookups run, when a signed update (`updates`) brings new lists, so no decision ever sees new
//! domain lists beside old IP lists.
//!
//! A connection is checked against the domain entries first (when it carries a name), then
//! against the IP entries. An adblock exception (`@@`) only excepts names: IP lists have no
//! exceptions, and a user's allow rule is how an address is let through.

use std::net::IpAddr;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use portcullis_intel::ipset::{IpSet, IpSetBuilder};
use portcullis_intel::lists::{Category, ListFormat, ListMeta, ParsedList, parse};
use portcullis_intel::matcher::{DomainSet, DomainSetBuilder, ListIndex, LiveSet, MatchKind};
use serde::Deserialize;

use crate::updates::DataSource;
use portcullis_policy::{ListHit, ListTarget, Overrides, resolve};
use portcullis_protocol::{ListCategory, SettingKey, SettingValue};

/// One shipped list: id, name, category, file under the data directory, format.
struct Shipped {
    id: &'static str,
    name: &'static str,
    category: ListCategory,
    file: &'static str,
    format: ListFormat,
}

const SHIPPED: &[Shipped] = &[
    Shipped {
        id: "easylist",
        name: "EasyList",
        category: ListCategory::Ads,
        file: "lists/easylist.txt",
        format: ListFormat::Adblock,
    },
    Shipped {
        id: "easyprivacy",
        name: "EasyPrivacy",
        category: ListCategory::Trackers,
        file: "lists/easyprivacy.txt",
        format: ListFormat::Adblock,
    },
    Shipped {
        id: "urlhaus",
        name: "URLhaus malicious URL blocklist",
        category: ListCategory::Malware,
        file: "lists/urlhaus-filter-online.txt",
        format: ListFormat::Adblock,
    },
    Shipped {
        id: "ublock-badware",
        name: "uBlock filters – Badware risks",
        category: ListCategory::Phishing,
        file: "lists/ublock-badware.txt",
        format: ListFormat::Adblock,
    },
];

fn category_of(c: &Category) -> Option<ListCategory> {
    match c {
        Category::Ads => Some(ListCategory::Ads),
        Category::Trackers => Some(ListCategory::Trackers),
        Category::Malware => Some(ListCategory::Malware),
        Category::Phishing => Some(ListCategory::Phishing),
        Category::Other(_) => None,
    }
}

fn intel_category(c: ListCategory) -> Category {
    match c {
        ListCategory::Ads => Category::Ads,
        ListCategory::Trackers => Category::Trackers,
        ListCategory::Malware => Category::Malware,
        ListCategory::Phishing => Category::Phishing,
    }
}

/// The format of a local list file, as `[[intel.lists]] format` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalFormat {
    /// Adblock Plus / uBlock / AdGuard rules (`||name^`); only domain rules are kept.
    Adblock,
    /// `/etc/hosts` style: a sink address (`0.0.0.0`), then names.
    Hosts,
    /// One domain per line.
    Domains,
    /// One IP address or CIDR per line.
    Ips,
    /// One domain, IP address or CIDR per line.
    Mixed,
}

impl LocalFormat {
    fn parser(self) -> ListFormat {
        match self {
            LocalFormat::Adblock => ListFormat::Adblock,
            LocalFormat::Hosts => ListFormat::Hosts,
            LocalFormat::Domains => ListFormat::Domains,
            LocalFormat::Ips => ListFormat::Ips,
            LocalFormat::Mixed => ListFormat::Mixed,
        }
    }
}

/// One `[[intel.lists]]` entry: a list file on this machine, in force like the shipped lists
/// for the apps that use its category.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalList {
    /// Stable identifier, shown in explanations: lowercase letters, digits, `-`, `_`, `.`;
    /// at most 64 bytes; unique, and not a shipped list's id.
    pub id: String,
    /// Human-readable name (default: the id).
    pub name: Option<String>,
    /// The file, an absolute path. Read at start and again when a signed update installs; a
    /// file that cannot be read leaves the list out with a warning.
    pub path: PathBuf,
    /// What it blocks: `ads`, `trackers`, `malware` or `phishing` (what `filter_lists` turns
    /// on).
    pub category: ListCategory,
    /// `adblock`, `hosts`, `domains`, `ips` or `mixed`.
    pub format: LocalFormat,
}

/// Checks `[[intel.lists]]`; the error names the entry and what is wrong with it.
pub fn validate(lists: &[LocalList]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, l) in lists.iter().enumerate() {
        let at = format!("[[intel.lists]] entry {} (id {:?})", i + 1, l.id);
        if l.id.is_empty()
            || l.id.len() > 64
            || !l
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        {
            return Err(format!(
                "{at}: id must be 1 to 64 lowercase letters, digits, '-', '_' or '.'"
            ));
        }
        if SHIPPED.iter().any(|s| s.id == l.id) {
            return Err(format!("{at}: id is a shipped list's; choose another"));
        }
        if !seen.insert(l.id.as_str()) {
            return Err(format!("{at}: id is used by an earlier entry"));
        }
        if l.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(format!("{at}: name is empty"));
        }
        if !l.path.is_absolute() {
            return Err(format!("{at}: path {} must be absolute", l.path.display()));
        }
    }
    Ok(())
}

/// A list entry that blocks a name or an address, owned (so it outlives the set it came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    list: String,
    name: String,
    category: ListCategory,
    entry: String,
    line: u32,
    target: ListTarget,
}

impl Listed {
    /// As the policy takes it.
    pub fn hit(&self) -> ListHit<'_> {
        ListHit {
            list: &self.list,
            name: &self.name,
            category: self.category,
            entry: &self.entry,
            line: self.line,
            target: self.target,
        }
    }
}

/// The domain and IP sets of one load: built together, swapped as one.
#[derive(Debug, Default)]
pub struct Sets {
    domains: DomainSet,
    ips: IpSet,
}

/// A load's sets and what it found of each list, swapped in together.
#[derive(Debug)]
pub struct Built {
    sets: Sets,
    states: Vec<portcullis_protocol::ListState>,
}

/// The filter lists in force, and the local list files to read on every (re)load.
#[derive(Debug, Default)]
pub struct Lists {
    set: LiveSet<Sets>,
    local: Vec<LocalList>,
    /// Every list as the last load in force found it (for `lists status`).
    state: std::sync::Mutex<Vec<portcullis_protocol::ListState>>,
}

/// One list that loaded: its id, and how many domain and IP entries it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedList {
    /// The list's id.
    pub id: String,
    /// Domain entries (blocks; `@@` exceptions are not counted).
    pub domains: usize,
    /// IP address and CIDR entries.
    pub networks: usize,
}

/// Every list a load looked at, as `lists status` shows it.
fn states_of(
    lists: &[(String, String, ListCategory, bool, String)],
    loaded: &Loaded,
    lines: &std::collections::HashMap<String, (u64, u64)>,
) -> Vec<portcullis_protocol::ListState> {
    lists
        .iter()
        .map(|(id, name, category, shipped, source)| {
            let found = loaded.lists.iter().find(|l| &l.id == id);
            let error = loaded
                .missing
                .iter()
                .find(|(m, _)| m == id)
                .map(|(_, why)| why.clone());
            let (skipped, bad_lines) = lines.get(id).copied().unwrap_or((0, 0));
            portcullis_protocol::ListState {
                id: id.clone(),
                name: name.clone(),
                category: *category,
                shipped: *shipped,
                source: source.clone(),
                domains: found.map_or(0, |l| l.domains as u64),
                networks: found.map_or(0, |l| l.networks as u64),
                skipped,
                bad_lines,
                error,
            }
        })
        .collect()
}

/// What loading found, for the log and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Lists loaded, with their entry counts.
    pub lists: Vec<LoadedList>,
    /// Lists that could not be read, with why.
    pub missing: Vec<(String, String)>,
}

impl Lists {
    /// Loads the shipped lists under `data_dir`. Never fails: what cannot be read is reported
    /// in [`Loaded::missing`] and left out.
    #[cfg(test)]
    pub fn load(data_dir: &Path) -> (Lists, Loaded) {
        Lists::load_from(&DataSource::shipped(data_dir), Vec::new())
    }

    /// Loads the lists from `source` (an installed bundle over the shipped data) and the
    /// `local` list files.
    pub fn load_from(source: &DataSource, local: Vec<LocalList>) -> (Lists, Loaded) {
        let mut lists = Lists {
            set: LiveSet::default(),
            local,
            state: std::sync::Mutex::default(),
        };
        let (set, loaded) = lists.build(source);
        lists.set = LiveSet::new(set.sets);
        *lists
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set.states;
        (lists, loaded)
    }

    /// Replaces the lists in force whole (domains and addresses together); lookups already
    /// running finish on the old sets.
    pub fn swap(&self, built: Built) -> std::sync::Arc<Sets> {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = built.states;
        self.set.swap(built.sets)
    }

    /// What the local list files look like now (modification time and size of each, `None`
    /// for one that cannot be read): a change means they must be read again.
    pub fn local_signature(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        self.local
            .iter()
            .map(|l| {
                std::fs::metadata(&l.path)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    /// Whether any local list files are configured.
    pub fn has_local(&self) -> bool {
        !self.local.is_empty()
    }

    /// Every list, as the load in force found it.
    pub fn states(&self) -> Vec<portcullis_protocol::ListState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Builds the sets from `source` and the local list files. Never fails: what cannot be
    /// read is reported in [`Loaded::missing`] and left out.
    pub fn build(&self, source: &DataSource) -> (Built, Loaded) {
        let mut domains = DomainSetBuilder::new();
        let mut ips = IpSetBuilder::new();
        let mut loaded = Loaded::default();
        let shipped = SHIPPED.iter().map(|s| {
            (
                s.id.to_owned(),
                s.name.to_owned(),
                s.category,
                source.path(s.file),
                s.format,
            )
        });
        let local = self.local.iter().map(|l| {
            (
                l.id.clone(),
                l.name.clone().unwrap_or_else(|| l.id.clone()),
                l.category,
                l.path.clone(),
                l.format.parser(),
            )
        });
        let mut seen: Vec<(String, String, ListCategory, bool, String)> = Vec::new();
        let mut lines = std::collections::HashMap::new();
        let shipped_count = SHIPPED.len();
        for (k, (id, name, category, path, format)) in shipped.chain(local).enumerate() {
            seen.push((
                id.clone(),
                name.clone(),
                category,
                k < shipped_count,
                path.display().to_string(),
            ));
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    loaded
                        .missing
                        .push((id, format!("{}: {e}", path.display())));
                    continue;
                }
            };
            let parsed = parse(&bytes, format);
            lines.insert(id.clone(), (parsed.skipped_count(), parsed.error_count()));
            let meta = ListMeta {
                id: id.clone(),
                name,
                category: intel_category(category),
                source: path.display().to_string(),
            };
            if parsed.error_count() > 0 {
                tracing::debug!(list = %id, bad_lines = parsed.error_count(), "a filter list has bad lines; they are skipped");
            }
            match add(&mut domains, &mut ips, meta, &parsed) {
                Ok(counts) => loaded.lists.push(counts),
                Err(e) => loaded.missing.push((id, e.to_string())),
            }
        }
        let domains = domains.build().unwrap_or_else(|e| {
            loaded.missing.push(("all".to_owned(), e.to_string()));
            DomainSet::default()
        });
        let ips = ips.build().unwrap_or_else(|e| {
            loaded
                .missing
                .push(("all IP lists".to_owned(), e.to_string()));
            IpSet::default()
        });
        let states = states_of(&seen, &loaded, &lines);
        (
            Built {
                sets: Sets { domains, ips },
                states,
            },
            loaded,
        )
    }

    /// The entry that blocks `name` among the lists of the categories `app` uses
    /// (`filter_lists`, resolved app → global → default); `None` when none does, or an
    /// exception (`@@`) of those lists lets it through.
    pub fn check(&self, app: Option<&Overrides>, global: &Overrides, name: &str) -> Option<Listed> {
        let enabled = enabled(app, global)?;
        check_name(&self.set.load(), &enabled, name)
    }

    /// The entry that blocks a connection to or from `remote`, looked up by `domain` if it
    /// was: a domain entry for the name first, else an IP entry holding the address, among the
    /// lists of the categories `app` uses. Both come from the same load of the lists.
    pub fn check_connection(
        &self,
        app: Option<&Overrides>,
        global: &Overrides,
        domain: Option<&str>,
        remote: IpAddr,
    ) -> Option<Listed> {
        let enabled = enabled(app, global)?;
        let sets = self.set.load();
        if let Some(hit) = domain.and_then(|d| check_name(&sets, &enabled, d)) {
            return Some(hit);
        }
        let ips = &sets.ips;
        let found = ips.lookup_in(remote, |index: ListIndex| {
            ips.list(index)
                .and_then(|m| category_of(&m.category))
                .is_some_and(|c| enabled.contains(&c))
        })?;
        let meta = ips.list(found.list)?;
        Some(Listed {
            list: meta.id.clone(),
            name: meta.name.clone(),
            category: category_of(&meta.category)?,
            entry: found.entry.to_string(),
            line: found.line,
            target: ListTarget::Address,
        })
    }
}

/// The categories `app` uses; `None` when it uses none.
pub fn enabled(app: Option<&Overrides>, global: &Overrides) -> Option<Vec<ListCategory>> {
    match resolve(SettingKey::FilterLists, app, global).value {
        SettingValue::Categories(enabled) if !enabled.is_empty() => Some(enabled),
        _ => None,
    }
}

fn check_name(sets: &Sets, enabled: &[ListCategory], name: &str) -> Option<Listed> {
    let set = &sets.domains;
    let found = set.lookup_in(name, |index: ListIndex| {
        set.list(index)
            .and_then(|m| category_of(&m.category))
            .is_some_and(|c| enabled.contains(&c))
    })?;
    if found.kind != MatchKind::Block {
        return None;
    }
    let meta = set.list(found.list)?;
    Some(Listed {
        list: meta.id.clone(),
        name: meta.name.clone(),
        category: category_of(&meta.category)?,
        entry: found.domain.to_owned(),
        line: found.line,
        target: ListTarget::Name,
    })
}

/// Adds one parsed list to the set (or sets) its entries belong in.
fn add(
    domains: &mut DomainSetBuilder,
    ips: &mut IpSetBuilder,
    meta: ListMeta,
    parsed: &ParsedList,
) -> Result<LoadedList, portcullis_intel::matcher::MatcherError> {
    let mut counts = LoadedList {
        id: meta.id.clone(),
        domains: 0,
        networks: 0,
    };
    let networks = parsed.ips();
    if let Some(d) = parsed.domains() {
        counts.domains = d.entries.len();
        domains.add_list(meta.clone(), d)?;
    }
    if !networks.is_empty() || matches!(parsed, ParsedList::Ips(_)) {
        counts.networks = networks.len();
        ips.add_list(meta, networks)?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_load_what_is_there_and_block_by_the_apps_categories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lists")).unwrap();
        std::fs::write(
            dir.path().join("lists/easyprivacy.txt"),
            "! EasyPrivacy\n||tracker.example^\n@@||ok.tracker.example^\n##.banner\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("lists/easylist.txt"), "||ads.example^\n").unwrap();
        let (lists, loaded) = Lists::load(dir.path());
        assert_eq!(loaded.lists.len(), 2, "{loaded:?}");
        assert_eq!(
            loaded.lists.iter().map(|l| l.domains).sum::<usize>(),
            2,
            "{loaded:?}"
        );
        assert_eq!(loaded.missing.len(), 2, "{loaded:?}");

        let none = Overrides::new();
        let hit = lists.check(None, &none, "cdn.tracker.example").unwrap();
        assert_eq!(
            (hit.list.as_str(), hit.entry.as_str(), hit.line),
            ("easyprivacy", "tracker.example", 2)
        );
        assert_eq!(hit.category, ListCategory::Trackers);
        // The list's own exception.
        assert_eq!(lists.check(None, &none, "ok.tracker.example"), None);
        assert_eq!(lists.check(None, &none, "example.org"), None);
        // An app that only uses the ads lists is not stopped by a tracker list.
        let mut app = Overrides::new();
        app.insert(
            SettingKey::FilterLists,
            SettingValue::Categories(vec![ListCategory::Ads]),
        );
        assert_eq!(lists.check(Some(&app), &none, "tracker.example"), None);
        assert!(lists.check(Some(&app), &none, "x.ads.example").is_some());
        // Globally off.
        let mut off = Overrides::new();
        off.insert(
            SettingKey::FilterLists,
            SettingValue::Categories(Vec::new()),
        );
        assert_eq!(lists.check(None, &off, "ads.example"), None);
    }

    fn local(id: &str, path: &Path, category: ListCategory, format: LocalFormat) -> LocalList {
        LocalList {
            id: id.into(),
            name: None,
            path: path.to_path_buf(),
            category,
            format,
        }
    }

    #[test]
    fn local_ip_and_mixed_lists_block_addresses_by_category() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lists")).unwrap();
        std::fs::write(dir.path().join("lists/easylist.txt"), "||ads.example^\n").unwrap();
        let drop = dir.path().join("drop.txt");
        std::fs::write(
            &drop,
            "; bad networks\n203.0.113.0/24 ; SBL1\n2001:db8:bad::/48\nnot-an-address\n",
        )
        .unwrap();
        let feed = dir.path().join("feed.txt");
        std::fs::write(&feed, "# feed\nc2.example\n198.51.100.7\n").unwrap();
        let (lists, loaded) = Lists::load_from(
            &DataSource::shipped(dir.path()),
            vec![
                local("drop", &drop, ListCategory::Malware, LocalFormat::Ips),
                local("feed", &feed, ListCategory::Phishing, LocalFormat::Mixed),
                local(
                    "gone",
                    &dir.path().join("none.txt"),
                    ListCategory::Ads,
                    LocalFormat::Ips,
                ),
            ],
        );
        let counts: Vec<_> = loaded
            .lists
            .iter()
            .map(|l| (l.id.as_str(), l.domains, l.networks))
            .collect();
        assert_eq!(counts, [("easylist", 1, 0), ("drop", 0, 2), ("feed", 1, 1)]);
        assert!(
            loaded
                .missing
                .iter()
                .any(|(id, why)| id == "gone" && why.contains("none.txt")),
            "{loaded:?}"
        );

        let none = Overrides::new();
        let at = |s: &str| s.parse::<IpAddr>().unwrap();
        let hit = lists
            .check_connection(None, &none, None, at("203.0.113.9"))
            .unwrap();
        assert_eq!(
            (hit.list.as_str(), hit.entry.as_str(), hit.line, hit.target),
            ("drop", "203.0.113.0/24", 2, ListTarget::Address)
        );
        assert_eq!(hit.category, ListCategory::Malware);
        assert!(
            lists
                .check_connection(None, &none, None, at("::ffff:203.0.113.9"))
                .is_some()
        );
        assert!(
            lists
                .check_connection(None, &none, None, at("2001:db8:bad:1::1"))
                .is_some()
        );
        assert_eq!(
            lists.check_connection(None, &none, None, at("203.0.114.1")),
            None
        );
        // A mixed list: its name and its address.
        let hit = lists
            .check_connection(None, &none, None, at("198.51.100.7"))
            .unwrap();
        assert_eq!((hit.list.as_str(), hit.line), ("feed", 3));
        let hit = lists.check(None, &none, "x.c2.example").unwrap();
        assert_eq!(
            (hit.entry.as_str(), hit.target),
            ("c2.example", ListTarget::Name)
        );
        // A name entry comes first when both match.
        let hit = lists
            .check_connection(None, &none, Some("ads.example"), at("203.0.113.9"))
            .unwrap();
        assert_eq!(hit.list, "easylist");
        // Only the categories the app uses.
        let mut app = Overrides::new();
        app.insert(
            SettingKey::FilterLists,
            SettingValue::Categories(vec![ListCategory::Phishing]),
        );
        assert_eq!(
            lists.check_connection(Some(&app), &none, None, at("203.0.113.9")),
            None
        );
        assert!(
            lists
                .check_connection(Some(&app), &none, None, at("198.51.100.7"))
                .is_some()
        );
    }

    #[test]
    fn a_rebuild_swaps_domains_and_addresses_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mixed.txt");
        std::fs::write(&file, "old.example\n192.0.2.1\n").unwrap();
        let (lists, _) = Lists::load_from(
            &DataSource::shipped(dir.path()),
            vec![local("m", &file, ListCategory::Malware, LocalFormat::Mixed)],
        );
        let none = Overrides::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(
            lists
                .check_connection(None, &none, None, ip("192.0.2.1"))
                .is_some()
        );
        std::fs::write(&file, "new.example\n192.0.2.2\n").unwrap();
        let (sets, loaded) = lists.build(&DataSource::shipped(dir.path()));
        assert_eq!(loaded.lists.len(), 1);
        // Nothing changes before the swap; both change with it.
        assert!(lists.check(None, &none, "old.example").is_some());
        let _old = lists.swap(sets);
        assert!(lists.check(None, &none, "old.example").is_none());
        assert!(lists.check(None, &none, "new.example").is_some());
        assert!(
            lists
                .check_connection(None, &none, None, ip("192.0.2.1"))
                .is_none()
        );
        assert!(
            lists
                .check_connection(None, &none, None, ip("192.0.2.2"))
                .is_some()
        );
    }

    #[test]
    fn local_list_entries_are_validated_with_their_problem_named() {
        let ok = local(
            "my-drop.v1",
            Path::new("/etc/x"),
            ListCategory::Malware,
            LocalFormat::Ips,
        );
        assert_eq!(validate(std::slice::from_ref(&ok)), Ok(()));
        let cases = [
            (
                LocalList {
                    id: "Bad Id".into(),
                    ..ok.clone()
                },
                "lowercase",
            ),
            (
                LocalList {
                    id: String::new(),
                    ..ok.clone()
                },
                "lowercase",
            ),
            (
                LocalList {
                    id: "easylist".into(),
                    ..ok.clone()
                },
                "shipped",
            ),
            (
                LocalList {
                    path: "rel/x.txt".into(),
                    ..ok.clone()
                },
                "rel/x.txt must be absolute",
            ),
            (
                LocalList {
                    name: Some(" ".into()),
                    ..ok.clone()
                },
                "name is empty",
            ),
        ];
        for (bad, want) in cases {
            let msg = validate(&[bad]).unwrap_err();
            assert!(
                msg.contains(want) && msg.contains("[[intel.lists]] entry 1"),
                "{msg}"
            );
        }
        let msg = validate(&[ok.clone(), ok]).unwrap_err();
        assert!(msg.contains("entry 2") && msg.contains("earlier"), "{msg}");
    }
}
