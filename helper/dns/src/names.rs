//! Domain names from configuration and sets of zones ("this name and everything under it").
//! This module owns name normalization (lowercase, fully qualified) and zone matching; it
//! decides nothing about what a match means.

use hickory_proto::rr::Name;

use crate::error::ConfigError;

/// Parses a name from configuration (`home.arpa`, `lan.`, `vpn.example.com`) into a
/// lower-case, fully qualified [`Name`]. Wildcards and empty names are refused; the root
/// (`.`) is accepted only where the caller allows it.
pub fn parse_domain(text: &str) -> Result<Name, ConfigError> {
    let bad = |reason: &str| ConfigError::BadName {
        name: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    if trimmed.contains('*') {
        return Err(bad(
            "wildcards are not allowed; a zone already covers its subdomains",
        ));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| bad(&e.to_string()))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Whether `zone` is `name` or one of its parents (case-insensitive).
pub fn in_zone(name: &Name, zone: &Name) -> bool {
    zone.zone_of(name)
}

/// A set of zones: matching a name finds the most specific zone it falls under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneSet {
    zones: Vec<Name>,
}

impl ZoneSet {
    /// A set of the given zones (normalized by the caller with [`parse_domain`]).
    pub fn new(zones: impl IntoIterator<Item = Name>) -> Self {
        let mut zones: Vec<Name> = zones.into_iter().collect();
        // Most specific first, so the first match is the longest.
        zones.sort_by_key(|z| std::cmp::Reverse(z.num_labels()));
        zones.dedup();
        Self { zones }
    }

    /// The most specific zone that `name` is in, and its index in [`ZoneSet::zones`].
    pub fn find(&self, name: &Name) -> Option<(usize, &Name)> {
        self.zones
            .iter()
            .enumerate()
            .find(|(_, z)| in_zone(name, z))
    }

    /// Whether `name` is in any of the zones.
    pub fn contains(&self, name: &Name) -> bool {
        self.find(name).is_some()
    }

    /// The zones, most specific first.
    pub fn zones(&self) -> &[Name] {
        &self.zones
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn config_names_are_normalized() {
        assert_eq!(parse_domain("Home.ARPA").unwrap().to_ascii(), "home.arpa.");
        assert_eq!(parse_domain("lan.").unwrap().to_ascii(), "lan.");
        assert!(parse_domain("").is_err());
        assert!(parse_domain("*.lan").is_err());
        assert!(parse_domain("a..b").is_err());
    }

    #[test]
    fn the_most_specific_zone_wins_and_case_does_not_matter() {
        let set = ZoneSet::new([
            parse_domain("example.com").unwrap(),
            parse_domain("corp.example.com").unwrap(),
        ]);
        let (_, z) = set.find(&n("A.Corp.Example.COM.")).unwrap();
        assert_eq!(z.to_ascii(), "corp.example.com.");
        let (_, z) = set.find(&n("www.example.com.")).unwrap();
        assert_eq!(z.to_ascii(), "example.com.");
        assert!(set.contains(&n("example.com.")));
        assert!(!set.contains(&n("notexample.com.")));
        assert!(!set.contains(&n("com.")));
    }
}
