//! A compact set of IP/CIDR entries from many lists, answering "is this address in a list, by
//! which entry and which line?" without allocating.
//!
//! It owns only the built set: parsing is [`crate::lists`], and deciding what a match means
//! for a connection is the policy's job. Lists are kept apart, so a caller can ask about only
//! the lists it has enabled (e.g. by category).
//!
//! # Matching and precedence
//!
//! An entry matches every address of its network. Among the entries of the enabled lists that
//! match, **the most specific (longest prefix) decides**; then the lowest list index, then the
//! lowest line. IP lists have no exceptions. Verdicts never depend on the order: only which
//! entry an explanation names does.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
//! is the IPv4 address, and an entry inside `::ffff:0:0/96` (prefix 96 or more) is the IPv4
//! network it maps (its explanation still shows it as written). Other IPv6 entries, `::/0`
//! included, match only IPv6 addresses, as the policy's own CIDR rules do.
//!
//! # Layout
//!
//! Per list and address family, the entries' networks are cut into disjoint, sorted ranges,
//! each labelled with the entry that decides it inside that list (a nested network splits its
//! parent's range; a duplicate adds nothing; neighbouring ranges of one entry are merged). A
//! lookup is one binary search per enabled list over the range starts. IPv4 costs 12 bytes per
//! range (start, end, label) and 12 per entry (the address as written, line, prefix, flags);
//! IPv6 36 and 24.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::lists::{IpEntry, IpRule, ListMeta};
use crate::matcher::{ListIndex, MatcherError};

const MAX_LISTS: usize = u16::MAX as usize;
const MAX_ENTRIES: usize = u32::MAX as usize;

/// The entry written without a prefix length.
const BARE: u8 = 1;
/// An IPv4 entry written as an IPv4-mapped IPv6 network.
const MAPPED: u8 = 2;

/// The entry that decided a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMatch {
    /// The list the entry is in.
    pub list: ListIndex,
    /// The entry's 1-based line in that list.
    pub line: u32,
    /// The entry as written.
    pub entry: IpEntry,
    /// The entry's prefix length in the address's family (an IPv4-mapped entry counts as
    /// IPv4).
    pub prefix: u8,
}

/// An address family's integer form.
trait Bits: Copy + Ord + fmt::Debug {
    /// Address width.
    const WIDTH: u8;
    /// The address as written, as stored beside each entry.
    type Stored: Copy + fmt::Debug;
    fn zero() -> Self;
    fn ones() -> Self;
    fn shr(self, by: u8) -> Self;
    fn or(self, other: Self) -> Self;
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
    fn written(stored: Self::Stored, flags: u8) -> IpAddr;

    /// The last address of the network that starts at `start` with `prefix`.
    fn last(start: Self, prefix: u8) -> Self {
        if prefix >= Self::WIDTH {
            start
        } else {
            start.or(Self::ones().shr(prefix))
        }
    }
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    type Stored = Ipv4Addr;
    fn zero() -> Self {
        0
    }
    fn ones() -> Self {
        u32::MAX
    }
    fn shr(self, by: u8) -> Self {
        self.checked_shr(u32::from(by)).unwrap_or(0)
    }
    fn or(self, other: Self) -> Self {
        self | other
    }
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn written(stored: Ipv4Addr, flags: u8) -> IpAddr {
        if flags & MAPPED != 0 {
            IpAddr::V6(stored.to_ipv6_mapped())
        } else {
            IpAddr::V4(stored)
        }
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    type Stored = Ipv6Addr;
    fn zero() -> Self {
        0
    }
    fn ones() -> Self {
        u128::MAX
    }
    fn shr(self, by: u8) -> Self {
        self.checked_shr(u32::from(by)).unwrap_or(0)
    }
    fn or(self, other: Self) -> Self {
        self | other
    }
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn written(stored: Ipv6Addr, _flags: u8) -> IpAddr {
        IpAddr::V6(stored)
    }
}

/// One entry as stored: the address as written, its line, prefix (in this family) and flags.
#[derive(Debug, Clone, Copy)]
struct Entry<S> {
    addr: S,
    line: u32,
    prefix: u8,
    flags: u8,
}

/// One network of a list before the ranges are cut: its first address and the entry.
#[derive(Debug, Clone, Copy)]
struct Item<A> {
    start: A,
    end: A,
    prefix: u8,
    line: u32,
    entry: u32,
}

/// A list's entries of one family, as disjoint sorted ranges.
#[derive(Debug)]
struct Table<A: Bits> {
    starts: Box<[A]>,
    ends: Box<[A]>,
    /// Index into `entries` of the entry deciding each range.
    labels: Box<[u32]>,
    entries: Box<[Entry<A::Stored>]>,
}

impl<A: Bits> Default for Table<A> {
    fn default() -> Self {
        Self {
            starts: Box::new([]),
            ends: Box::new([]),
            labels: Box::new([]),
            entries: Box::new([]),
        }
    }
}

impl<A: Bits> Table<A> {
    /// Cuts `items` into disjoint ranges, each labelled with its most specific entry (ties:
    /// the lowest line, then the first added). The networks are CIDR blocks, so any
    /// two are nested or disjoint; that is what makes one stack enough.
    fn build(mut items: Vec<Item<A>>, entries: Vec<Entry<A::Stored>>) -> Self {
        items.sort_unstable_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(a.prefix.cmp(&b.prefix))
                .then(a.line.cmp(&b.line))
                .then(a.entry.cmp(&b.entry))
        });
        let mut out = Ranges::default();
        let mut stack: Vec<Item<A>> = Vec::new();
        // The first address no range covers yet, at or after the open blocks' starts; `None`
        // once the last address of the family is covered.
        let mut cursor = Some(A::zero());
        for item in items {
            while let Some(&top) = stack.last() {
                if top.end >= item.start {
                    break;
                }
                out.emit(cursor, top.end, top.entry);
                cursor = top.end.succ();
                stack.pop();
            }
            if let Some(top) = stack.last() {
                if top.start == item.start && top.end == item.end {
                    // The same network again: the earlier entry decides it.
                    continue;
                }
                if let Some(before) = item.start.pred() {
                    out.emit(cursor, before, top.entry);
                }
            }
            cursor = Some(item.start);
            stack.push(item);
        }
        while let Some(top) = stack.pop() {
            out.emit(cursor, top.end, top.entry);
            cursor = top.end.succ();
        }
        Self {
            starts: out.starts.into_boxed_slice(),
            ends: out.ends.into_boxed_slice(),
            labels: out.labels.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
        }
    }

    /// The entry deciding `addr` in this list.
    #[inline]
    fn lookup(&self, addr: A) -> Option<&Entry<A::Stored>> {
        let i = self.starts.partition_point(|&s| s <= addr).checked_sub(1)?;
        if *self.ends.get(i)? < addr {
            return None;
        }
        let label = *self.labels.get(i)?;
        self.entries.get(label as usize)
    }

    fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.starts)
            + std::mem::size_of_val(&*self.ends)
            + std::mem::size_of_val(&*self.labels)
            + std::mem::size_of_val(&*self.entries)
    }
}

/// Ranges being emitted, in order.
#[derive(Debug)]
struct Ranges<A> {
    starts: Vec<A>,
    ends: Vec<A>,
    labels: Vec<u32>,
}

impl<A> Default for Ranges<A> {
    fn default() -> Self {
        Self {
            starts: Vec::new(),
            ends: Vec::new(),
            labels: Vec::new(),
        }
    }
}

impl<A: Bits> Ranges<A> {
    /// Adds `from..=to` for `label`, if not empty; extends the last range when it is the same
    /// entry's and ends right before.
    fn emit(&mut self, from: Option<A>, to: A, label: u32) {
        let Some(from) = from else { return };
        if from > to {
            return;
        }
        if let (Some(end), Some(&last)) = (self.ends.last_mut(), self.labels.last())
            && last == label
            && end.succ() == Some(from)
        {
            *end = to;
            return;
        }
        self.starts.push(from);
        self.ends.push(to);
        self.labels.push(label);
    }
}

/// One list's tables.
#[derive(Debug, Default)]
struct ListTables {
    v4: Table<u32>,
    v6: Table<u128>,
}

/// A list's entries while building.
#[derive(Debug, Default)]
struct Pending {
    v4: Vec<Item<u32>>,
    e4: Vec<Entry<Ipv4Addr>>,
    v6: Vec<Item<u128>>,
    e6: Vec<Entry<Ipv6Addr>>,
}

/// Collects IP lists and their entries, then builds an [`IpSet`].
#[derive(Debug, Default)]
pub struct IpSetBuilder {
    lists: Vec<ListMeta>,
    pending: Vec<Pending>,
}

impl IpSetBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a list and its entries; returns its index in the set.
    ///
    /// # Errors
    ///
    /// [`MatcherError::TooManyLists`] past 65,535 lists.
    pub fn add_list(
        &mut self,
        meta: ListMeta,
        rules: &[IpRule],
    ) -> Result<ListIndex, MatcherError> {
        let list = self.add_meta(meta)?;
        for rule in rules {
            self.add(list, rule);
        }
        Ok(list)
    }

    /// Adds a list with no entries yet (use [`add`](Self::add)); returns its index.
    ///
    /// # Errors
    ///
    /// [`MatcherError::TooManyLists`] past 65,535 lists.
    pub fn add_meta(&mut self, meta: ListMeta) -> Result<ListIndex, MatcherError> {
        let index = u16::try_from(self.lists.len())
            .ok()
            .filter(|&i| usize::from(i) < MAX_LISTS)
            .ok_or(MatcherError::TooManyLists { max: MAX_LISTS })?;
        self.lists.push(meta);
        self.pending.push(Pending::default());
        Ok(ListIndex(index))
    }

    /// Adds one entry to `list` (an index this builder gave; others are ignored). The range
    /// comes from `rule.net` (its host bits are cleared here anyway), the text from
    /// `rule.written`.
    pub fn add(&mut self, list: ListIndex, rule: &IpRule) {
        let Some(p) = self.pending.get_mut(usize::from(list.0)) else {
            return;
        };
        let bare = if rule.written.prefix.is_none() {
            BARE
        } else {
            0
        };
        match canonical(rule.net.trunc()) {
            Canonical::V4 {
                start,
                prefix,
                mapped,
            } => {
                let addr = match rule.written.addr {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::from(start)),
                };
                let entry = u32::try_from(p.e4.len()).unwrap_or(u32::MAX);
                p.e4.push(Entry {
                    addr,
                    line: rule.line,
                    prefix,
                    flags: bare | if mapped { MAPPED } else { 0 },
                });
                p.v4.push(Item {
                    start,
                    end: u32::last(start, prefix),
                    prefix,
                    line: rule.line,
                    entry,
                });
            }
            Canonical::V6 { start, prefix } => {
                let addr = match rule.written.addr {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                };
                let entry = u32::try_from(p.e6.len()).unwrap_or(u32::MAX);
                p.e6.push(Entry {
                    addr,
                    line: rule.line,
                    prefix,
                    flags: bare,
                });
                p.v6.push(Item {
                    start,
                    end: u128::last(start, prefix),
                    prefix,
                    line: rule.line,
                    entry,
                });
            }
        }
    }

    /// Entries added so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.iter().map(|p| p.e4.len() + p.e6.len()).sum()
    }

    /// Whether nothing was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the set.
    ///
    /// # Errors
    ///
    /// [`MatcherError::TooManyEntries`] past 2³² − 1 entries of one family in one list.
    pub fn build(self) -> Result<IpSet, MatcherError> {
        let Self { lists, pending } = self;
        let mut tables = Vec::with_capacity(pending.len());
        for p in pending {
            if p.e4.len() >= MAX_ENTRIES || p.e6.len() >= MAX_ENTRIES {
                return Err(MatcherError::TooManyEntries { max: MAX_ENTRIES });
            }
            tables.push(ListTables {
                v4: Table::build(p.v4, p.e4),
                v6: Table::build(p.v6, p.e6),
            });
        }
        Ok(IpSet {
            lists,
            tables: tables.into_boxed_slice(),
        })
    }
}

/// A network in the family it is matched in.
enum Canonical {
    V4 {
        start: u32,
        prefix: u8,
        mapped: bool,
    },
    V6 {
        start: u128,
        prefix: u8,
    },
}

fn canonical(net: IpNet) -> Canonical {
    match net {
        IpNet::V4(n) => Canonical::V4 {
            start: u32::from(n.network()),
            prefix: n.prefix_len(),
            mapped: false,
        },
        IpNet::V6(n) => match n.network().to_ipv4_mapped() {
            Some(v4) if n.prefix_len() >= 96 => Canonical::V4 {
                start: u32::from(v4),
                prefix: n.prefix_len() - 96,
                mapped: true,
            },
            _ => Canonical::V6 {
                start: u128::from(n.network()),
                prefix: n.prefix_len(),
            },
        },
    }
}

/// An immutable set of IP lists. Build it with [`IpSetBuilder`].
#[derive(Debug, Default)]
pub struct IpSet {
    lists: Vec<ListMeta>,
    tables: Box<[ListTables]>,
}

impl IpSet {
    /// Number of entries (duplicates included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.v4.entries.len() + t.v6.entries.len())
            .sum()
    }

    /// Whether the set has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lists, by [`ListIndex`].
    #[must_use]
    pub fn lists(&self) -> &[ListMeta] {
        &self.lists
    }

    /// One list's metadata.
    #[must_use]
    pub fn list(&self, index: ListIndex) -> Option<&ListMeta> {
        self.lists.get(usize::from(index.0))
    }

    /// Heap bytes of the lookup structure (not counting the list metadata).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.tables)
            + self
                .tables
                .iter()
                .map(|t| t.v4.bytes() + t.v6.bytes())
                .sum::<usize>()
    }

    /// The deciding entry for `addr` across all lists, if any. See the module docs for
    /// precedence. Does not allocate.
    #[must_use]
    pub fn lookup(&self, addr: IpAddr) -> Option<IpMatch> {
        self.lookup_in(addr, |_| true)
    }

    /// Like [`lookup`](Self::lookup), considering only the lists for which `enabled` is true.
    pub fn lookup_in(
        &self,
        addr: IpAddr,
        mut enabled: impl FnMut(ListIndex) -> bool,
    ) -> Option<IpMatch> {
        let mut best: Option<IpMatch> = None;
        for (i, tables) in self.tables.iter().enumerate() {
            let list = ListIndex(u16::try_from(i).ok()?);
            let found = match addr.to_canonical() {
                IpAddr::V4(a) => tables.v4.lookup(u32::from(a)).map(|e| hit::<u32>(list, e)),
                IpAddr::V6(a) => tables
                    .v6
                    .lookup(u128::from(a))
                    .map(|e| hit::<u128>(list, e)),
            };
            let Some(found) = found else { continue };
            if best.is_some_and(|b| found.prefix.cmp(&b.prefix) != Ordering::Greater) {
                continue;
            }
            if enabled(list) {
                best = Some(found);
            }
        }
        best
    }
}

fn hit<A: Bits>(list: ListIndex, e: &Entry<A::Stored>) -> IpMatch {
    let mapped = if e.flags & MAPPED != 0 { 96 } else { 0 };
    IpMatch {
        list,
        line: e.line,
        entry: IpEntry {
            addr: A::written(e.addr, e.flags),
            prefix: (e.flags & BARE == 0).then_some(e.prefix.saturating_add(mapped)),
        },
        prefix: e.prefix,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::lists::{Category, parse_ips};

    fn meta(id: &str) -> ListMeta {
        ListMeta {
            id: id.into(),
            name: id.into(),
            category: Category::Malware,
            source: format!("test:{id}"),
        }
    }

    fn set_of(lists: &[&str]) -> IpSet {
        let mut b = IpSetBuilder::new();
        for (i, text) in lists.iter().enumerate() {
            let parsed = parse_ips(text.as_bytes());
            assert_eq!(parsed.error_count, 0, "{text}");
            b.add_list(meta(&format!("l{i}")), &parsed.entries).unwrap();
        }
        b.build().unwrap()
    }

    fn hit(set: &IpSet, q: &str) -> Option<(u16, u32, String)> {
        set.lookup(q.parse().unwrap())
            .map(|m| (m.list.0, m.line, m.entry.to_string()))
    }

    #[test]
    fn nested_and_overlapping_networks_the_most_specific_decides() {
        let set = set_of(&["10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n10.1.0.0/16\n10.200.0.0/9\n"]);
        assert_eq!(hit(&set, "10.0.0.1"), Some((0, 1, "10.0.0.0/8".into())));
        assert_eq!(hit(&set, "10.1.9.9"), Some((0, 2, "10.1.0.0/16".into())));
        assert_eq!(hit(&set, "10.1.2.3"), Some((0, 3, "10.1.2.3".into())));
        // Either side of the /32 inside the /16, and the /16's last address.
        assert_eq!(hit(&set, "10.1.2.2").map(|h| h.1), Some(2));
        assert_eq!(hit(&set, "10.1.2.4").map(|h| h.1), Some(2));
        assert_eq!(hit(&set, "10.1.255.255").map(|h| h.1), Some(2));
        assert_eq!(hit(&set, "10.2.0.0").map(|h| h.1), Some(1));
        // Written with host bits set: matched as its network, shown as written.
        assert_eq!(hit(&set, "10.128.0.1"), Some((0, 5, "10.200.0.0/9".into())));
        assert_eq!(hit(&set, "10.255.255.255").map(|h| h.1), Some(5));
        assert_eq!(hit(&set, "9.255.255.255"), None);
        assert_eq!(hit(&set, "11.0.0.0"), None);
        // The /8 is cut around the /16 (and the /16 around the /32), the /9 stands alone;
        // the duplicate /16 adds no range.
        assert_eq!(set.tables[0].v4.starts.len(), 6);
    }

    #[test]
    fn whole_space_single_addresses_and_family_edges() {
        let set = set_of(&[
            "0.0.0.0/0\n255.255.255.255/32\n0.0.0.0\n",
            "::/0\n::1/128\nffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n",
        ]);
        assert_eq!(hit(&set, "1.2.3.4"), Some((0, 1, "0.0.0.0/0".into())));
        assert_eq!(
            hit(&set, "255.255.255.255"),
            Some((0, 2, "255.255.255.255/32".into()))
        );
        assert_eq!(hit(&set, "255.255.255.254").map(|h| h.1), Some(1));
        assert_eq!(hit(&set, "0.0.0.0"), Some((0, 3, "0.0.0.0".into())));
        assert_eq!(hit(&set, "2001:db8::1"), Some((1, 1, "::/0".into())));
        assert_eq!(hit(&set, "::1"), Some((1, 2, "::1/128".into())));
        assert_eq!(
            hit(&set, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").map(|h| h.1),
            Some(3)
        );
        assert_eq!(hit(&set, "::").map(|h| h.1), Some(1));
    }

    #[test]
    fn single_host_entries_match_only_themselves() {
        let set = set_of(&["192.0.2.7/32\n2001:db8::7/128\n"]);
        assert_eq!(hit(&set, "192.0.2.7").map(|h| h.1), Some(1));
        assert_eq!(hit(&set, "192.0.2.6"), None);
        assert_eq!(hit(&set, "192.0.2.8"), None);
        assert_eq!(hit(&set, "2001:db8::7").map(|h| h.1), Some(2));
        assert_eq!(hit(&set, "2001:db8::6"), None);
        assert_eq!(hit(&set, "2001:db8::8"), None);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        let set = set_of(&["192.0.2.0/24\n::ffff:198.51.100.0/120\n2001:db8::/32\n::/0\n"]);
        // A mapped query finds the IPv4 entry.
        assert_eq!(
            hit(&set, "::ffff:192.0.2.9"),
            Some((0, 1, "192.0.2.0/24".into()))
        );
        // A mapped entry is an IPv4 network, shown as written.
        assert_eq!(
            hit(&set, "198.51.100.20"),
            Some((0, 2, "::ffff:198.51.100.0/120".into()))
        );
        assert_eq!(hit(&set, "::ffff:198.51.100.20").map(|h| h.1), Some(2));
        // `::/0` is every IPv6 address, not the IPv4 ones (as in the policy's CIDR rules).
        assert_eq!(hit(&set, "203.0.113.1"), None);
        assert_eq!(hit(&set, "::ffff:203.0.113.1"), None);
        assert_eq!(hit(&set, "2001:db8:1::1").map(|h| h.1), Some(3));
        assert_eq!(hit(&set, "2001:db9::1").map(|h| h.1), Some(4));
    }

    #[test]
    fn across_lists_most_specific_then_lowest_list_and_lists_can_be_disabled() {
        let set = set_of(&["10.0.0.0/8\n", "10.1.0.0/16\n", "10.1.0.0/16\n"]);
        assert_eq!(hit(&set, "10.1.0.1"), Some((1, 1, "10.1.0.0/16".into())));
        assert_eq!(hit(&set, "10.2.0.1"), Some((0, 1, "10.0.0.0/8".into())));
        let only = |n: u16| move |l: ListIndex| l.0 == n;
        let m = set.lookup_in("10.1.0.1".parse().unwrap(), only(0)).unwrap();
        assert_eq!(m.list.0, 0);
        let m = set.lookup_in("10.1.0.1".parse().unwrap(), only(2)).unwrap();
        assert_eq!(m.list.0, 2);
        assert!(
            set.lookup_in("10.1.0.1".parse().unwrap(), |_| false)
                .is_none()
        );
        assert_eq!(set.list(ListIndex(1)).map(|m| m.id.as_str()), Some("l1"));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn empty_sets_and_lists() {
        let set = IpSet::default();
        assert!(set.is_empty());
        assert!(set.lookup("1.2.3.4".parse().unwrap()).is_none());
        let set = set_of(&["", "# only comments\n"]);
        assert!(set.lookup("::1".parse().unwrap()).is_none());
        assert_eq!(set.lists().len(), 2);
    }

    #[test]
    fn lookups_do_not_need_the_rules_and_memory_stays_small() {
        let mut b = IpSetBuilder::new();
        let l = b.add_meta(meta("big")).unwrap();
        for i in 0..20_000u32 {
            let net: IpNet = format!("{}/32", Ipv4Addr::from(0x0a00_0000 + i * 3))
                .parse()
                .unwrap();
            let rule = IpRule {
                net,
                line: i + 1,
                written: IpEntry {
                    addr: net.addr(),
                    prefix: None,
                },
            };
            b.add(l, &rule);
        }
        let set = b.build().unwrap();
        for i in 0..20_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 3));
            assert_eq!(set.lookup(a).map(|m| m.line), Some(i + 1));
            let next = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 3 + 1));
            assert!(set.lookup(next).is_none());
        }
        assert!(set.heap_bytes() < 20_000 * 25, "{}", set.heap_bytes());
    }

    /// The naive model: every entry of every enabled list checked with `IpNet::contains` on
    /// canonical forms; the longest prefix, then the lowest list, then the lowest line.
    fn model(lists: &[Vec<IpRule>], enabled: &[bool], q: IpAddr) -> Option<(u16, u32, String)> {
        let q = q.to_canonical();
        let canonical_net = |net: IpNet| -> IpNet {
            if let IpNet::V6(v6) = net
                && v6.prefix_len() >= 96
                && let Some(v4) = v6.network().to_ipv4_mapped()
            {
                return IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).unwrap());
            }
            net
        };
        let mut best: Option<(u8, u16, u32, String)> = None;
        for (li, rules) in lists.iter().enumerate() {
            if !enabled[li] {
                continue;
            }
            for r in rules {
                let net = canonical_net(r.net);
                if !net.contains(&q) {
                    continue;
                }
                let cand = (net.prefix_len(), li as u16, r.line, r.written.to_string());
                let better = match &best {
                    None => true,
                    Some(b) => cand.0 > b.0 || (cand.0 == b.0 && (cand.1, cand.2) < (b.1, b.2)),
                };
                if better {
                    best = Some(cand);
                }
            }
        }
        best.map(|b| (b.1, b.2, b.3))
    }

    /// Addresses from a small pool, so that entries nest and overlap often.
    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u8..4, 0u8..4, any::<u8>())
                .prop_map(|(a, b, c)| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
            prop::sample::select(vec![
                "0.0.0.0",
                "255.255.255.255",
                "::",
                "::1",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "::ffff:10.1.2.3",
                "::ffff:10.0.0.0",
                "2001:db8::1",
                "2001:db8:0:1::",
                "2001:db8:ffff::",
            ])
            .prop_map(|s| s.parse::<IpAddr>().unwrap()),
            (0u16..4, 0u16..4, any::<u16>())
                .prop_map(|(a, b, c)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, 0, c))),
        ]
    }

    fn rule() -> impl Strategy<Value = (IpAddr, u8, bool, u32)> {
        (address(), any::<u8>(), any::<bool>(), 1u32..500)
    }

    fn to_rule((addr, p, bare, line): (IpAddr, u8, bool, u32)) -> IpRule {
        let width: u8 = if addr.is_ipv4() { 33 } else { 129 };
        // Prefixes near the address's width, so most are narrow and some wide.
        let prefix = (width - 1).saturating_sub(p % width);
        let bare = bare && prefix == width - 1;
        let net = IpNet::new(addr, prefix).unwrap();
        IpRule {
            net: net.trunc(),
            line,
            written: IpEntry {
                addr,
                prefix: (!bare).then_some(prefix),
            },
        }
    }

    proptest! {
        #[test]
        fn agrees_with_naive_model(
            lists in prop::collection::vec(prop::collection::vec(rule(), 0..30), 1..4),
            enabled in prop::collection::vec(any::<bool>(), 4),
            queries in prop::collection::vec(address(), 1..60),
        ) {
            let lists: Vec<Vec<IpRule>> = lists
                .into_iter()
                .map(|l| l.into_iter().map(to_rule).collect())
                .collect();
            let mut b = IpSetBuilder::new();
            for (i, rules) in lists.iter().enumerate() {
                b.add_list(meta(&format!("l{i}")), rules).unwrap();
            }
            let set = b.build().unwrap();
            let mut probes = queries;
            // Every entry's own edges, and one past them.
            for r in lists.iter().flatten() {
                probes.push(r.net.network());
                probes.push(r.net.broadcast());
                match r.net.broadcast() {
                    IpAddr::V4(a) => probes.push(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1)))),
                    IpAddr::V6(a) => probes.push(IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1)))),
                }
            }
            for q in probes {
                let got = set
                    .lookup_in(q, |l| enabled[usize::from(l.0)])
                    .map(|m| (m.list.0, m.line, m.entry.to_string()));
                prop_assert_eq!(got, model(&lists, &enabled, q), "query {}", q);
            }
        }
    }
}
