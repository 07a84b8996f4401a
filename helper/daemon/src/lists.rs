//! Filter lists in the running helper: the shipped lists (EasyList, EasyPrivacy, URLhaus,
//! uBlock's badware list; see `data/intel/SOURCES`) loaded into one compact domain set, and
//! the lookup that tells a decision whether a name is on a list the app uses
//! (`filter_lists`, by category). A list that cannot be read is logged and left out; the
//! others still load. The set is swapped whole while lookups run when a signed update
//! (`updates`) brings new lists.

#[cfg(test)]
use std::path::Path;

use portcullis_intel::lists::{Category, ListFormat, ListMeta, parse_domains};
use portcullis_intel::matcher::{DomainSet, DomainSetBuilder, ListIndex, LiveSet, MatchKind};

use crate::updates::DataSource;
use portcullis_policy::{ListHit, Overrides, resolve};
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

/// A list entry that blocks a name, owned (so it outlives the set it came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    list: String,
    name: String,
    category: ListCategory,
    entry: String,
    line: u32,
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
        }
    }
}

/// The filter lists in force.
#[derive(Debug, Default)]
pub struct Lists {
    set: LiveSet,
}

/// What loading found, for the log and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Lists loaded, with their entry counts.
    pub lists: Vec<(String, usize)>,
    /// Lists that could not be read, with why.
    pub missing: Vec<(String, String)>,
}

impl Lists {
    /// Loads the shipped lists under `data_dir`. Never fails: what cannot be read is reported
    /// in [`Loaded::missing`] and left out.
    #[cfg(test)]
    pub fn load(data_dir: &Path) -> (Lists, Loaded) {
        Lists::load_from(&DataSource::shipped(data_dir))
    }

    /// Loads the lists from `source` (an installed bundle over the shipped data).
    pub fn load_from(source: &DataSource) -> (Lists, Loaded) {
        let (set, loaded) = Lists::build(source);
        (
            Lists {
                set: LiveSet::new(set),
            },
            loaded,
        )
    }

    /// Replaces the lists in force whole; lookups already running finish on the old set.
    pub fn swap(&self, set: DomainSet) -> std::sync::Arc<DomainSet> {
        self.set.swap(set)
    }

    /// Builds the set of lists from `source`. Never fails: what cannot be read is reported in
    /// [`Loaded::missing`] and left out.
    pub fn build(source: &DataSource) -> (DomainSet, Loaded) {
        let mut builder = DomainSetBuilder::new();
        let mut loaded = Loaded::default();
        for s in SHIPPED {
            let path = source.path(s.file);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    loaded
                        .missing
                        .push((s.id.to_owned(), format!("{}: {e}", path.display())));
                    continue;
                }
            };
            let parsed = parse_domains(&bytes, s.format);
            let meta = ListMeta {
                id: s.id.to_owned(),
                name: s.name.to_owned(),
                category: intel_category(s.category),
                source: path.display().to_string(),
            };
            match builder.add_list(meta, &parsed) {
                Ok(_) => loaded.lists.push((s.id.to_owned(), parsed.entries.len())),
                Err(e) => loaded.missing.push((s.id.to_owned(), e.to_string())),
            }
        }
        let set = match builder.build() {
            Ok(set) => set,
            Err(e) => {
                loaded.missing.push(("all".to_owned(), e.to_string()));
                DomainSet::default()
            }
        };
        (set, loaded)
    }

    /// The entry that blocks `name` among the lists of the categories `app` uses
    /// (`filter_lists`, resolved app → global → default); `None` when none does, or an
    /// exception (`@@`) of those lists lets it through.
    pub fn check(&self, app: Option<&Overrides>, global: &Overrides, name: &str) -> Option<Listed> {
        let entry = resolve(SettingKey::FilterLists, app, global);
        let SettingValue::Categories(enabled) = entry.value else {
            return None;
        };
        if enabled.is_empty() {
            return None;
        }
        let set = self.set.load();
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
        })
    }
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
}
