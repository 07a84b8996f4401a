//! A compact set of domain rules from many lists, answering "is this name (or a parent of it)
//! listed, by which list and which line?" without allocating, and swapped whole while lookups
//! go on.
//!
//! It owns only the built set: parsing is [`crate::lists`], and deciding what a match means
//! for a connection is the policy's job. It keeps no domain text, so it cannot list its
//! entries; an explanation re-reads the line from the list file.
//!
//! # Matching and precedence
//!
//! A rule for `example.com` matches `example.com` and every name below it (`a.b.example.com`).
//! A lookup considers every suffix of the queried name at a label boundary, and **the most
//! specific (longest) listed suffix decides**; at that suffix an exception (`@@||…^`) wins over
//! a block. So `@@||a.example.com^` allows `x.a.example.com` although `||example.com^` is
//! listed, while `||ads.a.example.com^` blocks `ads.a.example.com` again. Among several
//! entries of the same kind for the same name, the one of the lowest list index, then the
//! lowest line, is reported. Query names are matched case-insensitively and a trailing dot is
//! ignored.
//!
//! # Layout
//!
//! Each entry is a 64-bit fingerprint of its name, computed label by label from the right, so a
//! lookup hashes each label of the query once and gets the fingerprint of every suffix on the
//! way. Fingerprints are sorted; the top bits pick a bucket (one to two times
//! [`TARGET_PER_BUCKET`] entries) through an offsets array, then a short scan finds the entry.
//! Beside each fingerprint is a packed reference: exception flag, list index and line number,
//! in 32 bits when the lists and line numbers fit (the usual case; otherwise 64). That is about
//! 12.1 bytes per entry plus the list metadata, instead of ~20 bytes of text per name alone.
//!
//! Fingerprints can collide: a name that is not listed matches with probability about
//! *entries × labels / 2⁶⁴* (≈ 2·10⁻¹³ for a million entries and a four-label name). The hash
//! uses a fixed key: a crafted name can at worst make a false match (a false block), never hide
//! a listed one, and list authors can block any name anyway.
//!
//! [`LiveSet`] holds the current set behind an [`ArcSwap`]: readers load it without locks and
//! see either the old set or the new one, never a mix.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::lists::{DomainRule, ListMeta, Parsed};

/// The bucket count is the largest power of two at most *entries / this*, so a bucket holds
/// this to twice this many entries on average (30.5 for a million). Measured against 4 and 8
/// (7.6 and 15.3 per bucket at a million), this was a little faster: the offsets (an eighth of a
/// byte per entry) stay in the L2 cache and a bucket's scan is sequential, so the hardware
/// prefetches it.
pub const TARGET_PER_BUCKET: usize = 16;

/// Index of a list within one [`DomainSet`] (the order lists were added to the builder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListIndex(pub u16);

/// Whether the deciding entry blocks or excepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    /// A block rule (`||name^`, a hosts or plain-list entry).
    Block,
    /// An exception rule (`@@||name^`).
    Exception,
}

/// The entry that decided a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'q> {
    /// Block or exception.
    pub kind: MatchKind,
    /// The list the entry is in.
    pub list: ListIndex,
    /// The entry's 1-based line in that list.
    pub line: u32,
    /// The entry's name: the matching suffix of the query (as the query spelled it, without a
    /// trailing dot).
    pub domain: &'q str,
}

/// Why a set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// More than 65,535 lists in one set.
    #[error("too many lists in one set (at most {max})")]
    TooManyLists {
        /// The limit.
        max: usize,
    },
    /// More entries than 32-bit offsets can address.
    #[error("too many entries in one set (at most {max})")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
}

const MAX_LISTS: usize = u16::MAX as usize;
const MAX_ENTRIES: usize = u32::MAX as usize - 1;
/// Deepest name a rule can have: 253 bytes hold at most 127 labels.
const MAX_DEPTH: u32 = 127;

// Multipliers from wyhash; any odd, dense 64-bit constants would do.
const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
const K3: u64 = 0x5899_65cc_7537_4cc3;

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// ASCII-lowercases eight bytes at once; other bytes are unchanged.
#[inline(always)]
fn lower8(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let h = x & LOW7;
    let ge_a = h.wrapping_add(0x3f3f_3f3f_3f3f_3f3f); // high bit set where h >= b'A'
    let gt_z = h.wrapping_add(0x2525_2525_2525_2525); // high bit set where h > b'Z'
    let upper = ge_a & !gt_z & !x & HIGH;
    x | (upper >> 2)
}

/// Folds one label into the running fingerprint of a suffix.
#[inline(always)]
fn label_step(h: u64, label: &[u8]) -> u64 {
    let mut h = mum(h ^ K0, (label.len() as u64) ^ K1);
    let mut chunks = label.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = mum(h ^ K2, lower8(u64::from_le_bytes(word)) ^ K3);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        if let Some(head) = word.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        h = mum(h ^ K2, lower8(u64::from_le_bytes(word)) ^ K3);
    }
    h
}

/// Calls `f(fingerprint, depth, start)` for every suffix of `name` at a label boundary, from
/// the top-level label (depth 1) down to the whole name; `start` is the suffix's byte offset.
#[inline(always)]
fn walk_suffixes(name: &[u8], mut f: impl FnMut(u64, u32, usize)) {
    let mut h = 0u64;
    let mut end = name.len();
    let mut depth = 0u32;
    loop {
        let head = name.get(..end).unwrap_or_default();
        let start = head
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(0, |dot| dot + 1);
        h = label_step(h, head.get(start..).unwrap_or_default());
        depth = depth.saturating_add(1);
        f(h, depth, start);
        if start == 0 {
            break;
        }
        end = start - 1;
    }
}

fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// One entry's reference, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryRef {
    exception: bool,
    list: u16,
    line: u32,
}

impl EntryRef {
    const EXCEPTION_WIDE: u64 = 1 << 63;

    /// Packs so that sorting the packed values orders blocks before exceptions, then by list,
    /// then by line.
    fn wide(self) -> u64 {
        (if self.exception {
            Self::EXCEPTION_WIDE
        } else {
            0
        }) | (u64::from(self.list) << 32)
            | u64::from(self.line)
    }

    fn from_wide(v: u64) -> Self {
        Self {
            exception: v & Self::EXCEPTION_WIDE != 0,
            list: ((v >> 32) & 0xffff) as u16,
            line: v as u32,
        }
    }
}

/// Packed references, parallel to the sorted fingerprints.
#[derive(Debug)]
enum Refs {
    /// Bit 31 the exception flag, then the list index, then `line_bits` of line number.
    Narrow { line_bits: u32, packed: Box<[u32]> },
    /// [`EntryRef::wide`] values.
    Wide(Box<[u64]>),
}

impl Refs {
    #[inline(always)]
    fn get(&self, i: usize) -> Option<EntryRef> {
        match self {
            Self::Narrow { line_bits, packed } => packed.get(i).map(|&v| EntryRef {
                exception: v & (1 << 31) != 0,
                list: ((v & !(1 << 31)) >> line_bits) as u16,
                line: v & ((1u32 << line_bits) - 1),
            }),
            Self::Wide(wide) => wide.get(i).map(|&v| EntryRef::from_wide(v)),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Narrow { packed, .. } => std::mem::size_of_val(&**packed),
            Self::Wide(wide) => std::mem::size_of_val(&**wide),
        }
    }
}

/// Collects lists and their entries, then builds a [`DomainSet`].
#[derive(Debug, Default)]
pub struct DomainSetBuilder {
    lists: Vec<ListMeta>,
    /// (fingerprint, wide reference)
    items: Vec<(u64, u64)>,
    depths: u128,
    max_line: u32,
}

impl DomainSetBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a list and all its entries and exceptions; returns its index in the set.
    ///
    /// # Errors
    ///
    /// [`MatcherError::TooManyLists`] past 65,535 lists.
    pub fn add_list(
        &mut self,
        meta: ListMeta,
        parsed: &Parsed<DomainRule>,
    ) -> Result<ListIndex, MatcherError> {
        let list = self.add_meta(meta)?;
        self.items
            .reserve(parsed.entries.len() + parsed.exceptions.len());
        for rule in &parsed.entries {
            self.add(list, &rule.name, rule.line, MatchKind::Block);
        }
        for rule in &parsed.exceptions {
            self.add(list, &rule.name, rule.line, MatchKind::Exception);
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
        Ok(ListIndex(index))
    }

    /// Adds one entry. `name` should be normalised (see [`crate::lists::normalize_domain`]);
    /// case and one trailing dot are ignored anyway.
    pub fn add(&mut self, list: ListIndex, name: &str, line: u32, kind: MatchKind) {
        let mut fp = 0;
        let mut depth = 0;
        walk_suffixes(trim_dot(name).as_bytes(), |h, d, _| {
            fp = h;
            depth = d;
        });
        if depth > MAX_DEPTH {
            // No valid name is this deep, and lookups never probe past it.
            return;
        }
        self.depths |= 1u128 << depth;
        self.max_line = self.max_line.max(line);
        let entry = EntryRef {
            exception: kind == MatchKind::Exception,
            list: list.0,
            line,
        };
        self.items.push((fp, entry.wide()));
    }

    /// Entries added so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Builds the set.
    ///
    /// # Errors
    ///
    /// [`MatcherError::TooManyEntries`] past 2³² − 2 entries.
    pub fn build(self) -> Result<DomainSet, MatcherError> {
        let Self {
            lists,
            items,
            depths,
            max_line,
        } = self;
        let n = items.len();
        if n > MAX_ENTRIES {
            return Err(MatcherError::TooManyEntries { max: MAX_ENTRIES });
        }
        // At least 2 buckets; see TARGET_PER_BUCKET.
        let wanted = (n / TARGET_PER_BUCKET).max(2);
        let bits = wanted.ilog2().clamp(1, 32);
        let shift = 64 - bits;
        let (offsets, fps, wide) = bucket_sort(&items, shift);
        drop(items);
        let list_bits = usize::BITS - lists.len().saturating_sub(1).leading_zeros();
        let line_bits = 31 - list_bits;
        let refs = if u64::from(max_line) < (1u64 << line_bits) {
            let packed = wide
                .iter()
                .map(|&r| {
                    let e = EntryRef::from_wide(r);
                    (u32::from(e.exception) << 31) | (u32::from(e.list) << line_bits) | e.line
                })
                .collect();
            Refs::Narrow { line_bits, packed }
        } else {
            Refs::Wide(wide)
        };
        Ok(DomainSet {
            lists,
            shift,
            offsets,
            fps,
            refs,
            depths,
        })
    }
}

/// Bucket offsets, sorted fingerprints, and their wide references.
type Sorted = (Box<[u32]>, Box<[u64]>, Box<[u64]>);

/// Sorts (fingerprint, reference) pairs by bucket (the top `64 - shift` bits) with a counting
/// sort, then each small bucket by fingerprint and reference: linear time, where a full sort of
/// a million pairs took most of the build. Returns the bucket offsets and the two columns.
#[expect(
    clippy::indexing_slicing,
    reason = "every index is a bucket number below the offsets' length or a position the \
              prefix sums computed for exactly these items"
)]
fn bucket_sort(items: &[(u64, u64)], shift: u32) -> Sorted {
    let buckets = 1usize << (64 - shift);
    let mut offsets = vec![0u32; buckets + 1];
    for &(fp, _) in items {
        offsets[(fp >> shift) as usize + 1] += 1;
    }
    for b in 1..=buckets {
        offsets[b] += offsets[b - 1];
    }
    let mut cursor = offsets[..buckets].to_vec();
    let mut fps = vec![0u64; items.len()].into_boxed_slice();
    let mut refs = vec![0u64; items.len()].into_boxed_slice();
    for &(fp, r) in items {
        let b = (fp >> shift) as usize;
        let at = cursor[b] as usize;
        fps[at] = fp;
        refs[at] = r;
        cursor[b] += 1;
    }
    for b in 0..buckets {
        let (lo, hi) = (offsets[b] as usize, offsets[b + 1] as usize);
        // Insertion sort: buckets hold a handful of entries.
        for i in lo + 1..hi {
            let mut j = i;
            while j > lo && (fps[j - 1], refs[j - 1]) > (fps[j], refs[j]) {
                fps.swap(j - 1, j);
                refs.swap(j - 1, j);
                j -= 1;
            }
        }
    }
    (offsets.into_boxed_slice(), fps, refs)
}

/// Suffixes probed together (see [`DomainSet::probe_batch`]).
const BATCH: usize = 8;

/// Up to [`BATCH`] suffix fingerprints and their start offsets, least specific first.
#[derive(Debug, Default)]
struct Batch {
    fps: [u64; BATCH],
    starts: [usize; BATCH],
    len: usize,
}

impl Batch {
    /// Adds a suffix; true when the batch is full.
    #[inline(always)]
    fn push(&mut self, fp: u64, start: usize) -> bool {
        if let (Some(f), Some(s)) = (self.fps.get_mut(self.len), self.starts.get_mut(self.len)) {
            *f = fp;
            *s = start;
            self.len += 1;
        }
        self.len >= BATCH
    }
}

/// An immutable, compact set of domain rules from several lists. Build it with
/// [`DomainSetBuilder`]; share it through a [`LiveSet`].
#[derive(Debug)]
pub struct DomainSet {
    lists: Vec<ListMeta>,
    /// `fp >> shift` is the bucket.
    shift: u32,
    /// Bucket `b` is `fps[offsets[b]..offsets[b + 1]]`.
    offsets: Box<[u32]>,
    /// Sorted fingerprints.
    fps: Box<[u64]>,
    /// References parallel to `fps`.
    refs: Refs,
    /// Bit `d` set if some entry has `d` labels: other depths are not probed.
    depths: u128,
}

impl Default for DomainSet {
    fn default() -> Self {
        // An empty builder always builds.
        DomainSetBuilder::new().build().unwrap_or(Self {
            lists: Vec::new(),
            shift: 63,
            offsets: Box::new([0, 0, 0]),
            fps: Box::new([]),
            refs: Refs::Wide(Box::new([])),
            depths: 0,
        })
    }
}

impl DomainSet {
    /// Number of entries (blocks and exceptions, duplicates included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.fps.len()
    }

    /// Whether the set has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fps.is_empty()
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
        std::mem::size_of_val(&*self.offsets)
            + std::mem::size_of_val(&*self.fps)
            + self.refs.bytes()
    }

    /// The deciding entry for `name` across all lists, if any. See the module docs for
    /// precedence. Does not allocate.
    #[must_use]
    pub fn lookup<'q>(&self, name: &'q str) -> Option<Match<'q>> {
        self.lookup_in(name, |_| true)
    }

    /// Like [`lookup`](Self::lookup), considering only the lists for which `enabled` is true
    /// (e.g. the categories an app has turned on).
    pub fn lookup_in<'q>(
        &self,
        name: &'q str,
        mut enabled: impl FnMut(ListIndex) -> bool,
    ) -> Option<Match<'q>> {
        let name = trim_dot(name);
        let mut best: Option<(EntryRef, usize)> = None;
        let mut batch = Batch::default();
        walk_suffixes(name.as_bytes(), |fp, depth, start| {
            if depth > MAX_DEPTH || self.depths & (1u128 << depth) == 0 {
                return;
            }
            if batch.push(fp, start) {
                self.probe_batch(&batch, &mut best, &mut enabled);
                batch.len = 0;
            }
        });
        self.probe_batch(&batch, &mut best, &mut enabled);
        let (entry, start) = best?;
        Some(Match {
            kind: if entry.exception {
                MatchKind::Exception
            } else {
                MatchKind::Block
            },
            list: ListIndex(entry.list),
            line: entry.line,
            domain: name.get(start..).unwrap_or(name),
        })
    }

    /// Probes a batch of suffixes, least specific first, so that the last hit is the most
    /// specific. The bucket bounds and the first fingerprint of every bucket are loaded before
    /// any is compared: the loads are independent, so their cache misses overlap instead of
    /// following one another (a cold lookup is bound by memory latency, not by hashing).
    #[inline(always)]
    fn probe_batch(
        &self,
        batch: &Batch,
        best: &mut Option<(EntryRef, usize)>,
        enabled: &mut impl FnMut(ListIndex) -> bool,
    ) {
        let n = batch.len.min(BATCH);
        let mut lo = [0usize; BATCH];
        let mut hi = [0usize; BATCH];
        for i in 0..n {
            let fp = batch.fps.get(i).copied().unwrap_or(0);
            let bucket = (fp >> self.shift) as usize;
            if let (Some(l), Some(h), Some(&f)) =
                (lo.get_mut(i), hi.get_mut(i), self.offsets.get(bucket))
            {
                *l = f as usize;
                *h = self.offsets.get(bucket + 1).map_or(0, |&o| o as usize);
            }
        }
        let mut first = [u64::MAX; BATCH];
        for i in 0..n {
            if let (Some(f), Some(&l)) = (first.get_mut(i), lo.get(i)) {
                *f = self.fps.get(l).copied().unwrap_or(u64::MAX);
            }
        }
        for i in 0..n {
            let fp = batch.fps.get(i).copied().unwrap_or(0);
            // Most buckets' first fingerprint is already above a missing one.
            if first.get(i).is_none_or(|&f| f > fp) {
                continue;
            }
            let (l, h) = (
                lo.get(i).copied().unwrap_or(0),
                hi.get(i).copied().unwrap_or(0),
            );
            if let Some(found) = self.probe(fp, l, h, enabled) {
                *best = Some((found, batch.starts.get(i).copied().unwrap_or(0)));
            }
        }
    }

    /// The deciding entry among those with fingerprint `fp`: the first enabled exception,
    /// else the first enabled block (entries are sorted blocks first, then by list and line).
    #[inline(always)]
    fn probe(
        &self,
        fp: u64,
        lo: usize,
        hi: usize,
        enabled: &mut impl FnMut(ListIndex) -> bool,
    ) -> Option<EntryRef> {
        let fps = self.fps.get(lo..hi)?;
        let first = fps.iter().position(|&f| f >= fp)?;
        if fps.get(first) != Some(&fp) {
            return None;
        }
        let mut block = None;
        for (i, _) in fps
            .iter()
            .enumerate()
            .skip(first)
            .take_while(|&(_, &f)| f == fp)
        {
            let Some(entry) = self.refs.get(lo + i) else {
                break;
            };
            if !enabled(ListIndex(entry.list)) {
                continue;
            }
            if entry.exception {
                return Some(entry);
            }
            if block.is_none() {
                block = Some(entry);
            }
        }
        block
    }
}

/// The current set (by default a [`DomainSet`]; any value built whole, such as a domain set
/// and an [`crate::ipset::IpSet`] that must change together), replaced whole without pausing
/// lookups.
#[derive(Debug)]
pub struct LiveSet<T = DomainSet> {
    current: ArcSwap<T>,
}

impl<T: Default> Default for LiveSet<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> LiveSet<T> {
    /// Starts with `set`.
    #[must_use]
    pub fn new(set: T) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// The current set, for one or more lookups. Cheap and lock-free; hold it briefly (a held
    /// guard keeps an old set alive after a swap). A thread's first load may allocate once
    /// (arc-swap registers the thread); later loads and all lookups do not.
    #[must_use]
    pub fn load(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// Replaces the set; lookups already running finish on the old one. Returns the old set.
    pub fn swap(&self, set: T) -> Arc<T> {
        self.current.swap(Arc::new(set))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::lists::{Category, ListFormat, parse_domains};

    fn meta(id: &str) -> ListMeta {
        ListMeta {
            id: id.into(),
            name: id.into(),
            category: Category::Ads,
            source: format!("test:{id}"),
        }
    }

    fn set_of(lists: &[&str]) -> DomainSet {
        let mut b = DomainSetBuilder::new();
        for (i, text) in lists.iter().enumerate() {
            let parsed = parse_domains(text.as_bytes(), ListFormat::Adblock);
            b.add_list(meta(&format!("l{i}")), &parsed).unwrap();
        }
        b.build().unwrap()
    }

    fn hit(set: &DomainSet, q: &str) -> Option<(MatchKind, u16, u32, String)> {
        set.lookup(q)
            .map(|m| (m.kind, m.list.0, m.line, m.domain.to_string()))
    }

    #[test]
    fn lower8_only_changes_ascii_upper() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b; 8]);
            assert_eq!(
                lower8(x),
                u64::from_le_bytes([b.to_ascii_lowercase(); 8]),
                "{b}"
            );
        }
    }

    #[test]
    fn parent_walk_and_which_entry() {
        let set = set_of(&[
            "! x\n||example.com^\n",
            "||tracker.net^\n||b.example.com^\n",
        ]);
        assert_eq!(
            hit(&set, "example.com"),
            Some((MatchKind::Block, 0, 2, "example.com".into()))
        );
        assert_eq!(
            hit(&set, "A.B.Example.COM."),
            Some((MatchKind::Block, 1, 2, "B.Example.COM".into()))
        );
        assert_eq!(
            hit(&set, "x.tracker.net"),
            Some((MatchKind::Block, 1, 1, "tracker.net".into()))
        );
        assert_eq!(hit(&set, "notexample.com"), None);
        assert_eq!(hit(&set, "example.co"), None);
        assert_eq!(hit(&set, "com"), None);
        assert_eq!(hit(&set, ""), None);
        assert_eq!(hit(&set, "."), None);
        assert_eq!(set.list(ListIndex(1)).map(|m| m.id.as_str()), Some("l1"));
    }

    #[test]
    fn exception_precedence() {
        let set = set_of(&[
            "||example.com^\n@@||a.example.com^\n||ads.a.example.com^\n",
            "@@||both.com^\n||both.com^\n",
        ]);
        assert_eq!(
            hit(&set, "x.example.com").map(|h| h.0),
            Some(MatchKind::Block)
        );
        assert_eq!(
            hit(&set, "x.a.example.com"),
            Some((MatchKind::Exception, 0, 2, "a.example.com".into()))
        );
        assert_eq!(
            hit(&set, "ads.a.example.com"),
            Some((MatchKind::Block, 0, 3, "ads.a.example.com".into()))
        );
        // Same depth: the exception wins, whatever the order in the file.
        assert_eq!(
            hit(&set, "www.both.com"),
            Some((MatchKind::Exception, 1, 1, "both.com".into()))
        );
    }

    #[test]
    fn lowest_list_then_line_reported_and_lists_can_be_disabled() {
        let set = set_of(&["||x.com^\n||x.com^\n", "||x.com^\n@@||y.x.com^\n"]);
        assert_eq!(
            hit(&set, "x.com"),
            Some((MatchKind::Block, 0, 1, "x.com".into()))
        );
        let only_second = |l: ListIndex| l.0 == 1;
        let m = set.lookup_in("x.com", only_second).unwrap();
        assert_eq!((m.list.0, m.line), (1, 1));
        let m = set.lookup_in("y.x.com", |l| l.0 == 0).unwrap();
        assert_eq!((m.kind, m.domain), (MatchKind::Block, "x.com"));
        assert!(set.lookup_in("x.com", |_| false).is_none());
    }

    #[test]
    fn wide_references_when_lines_do_not_fit() {
        let mut b = DomainSetBuilder::new();
        let l = b.add_meta(meta("big")).unwrap();
        b.add(l, "far.com", u32::MAX, MatchKind::Block);
        let set = b.build().unwrap();
        assert!(matches!(set.refs, Refs::Wide(_)));
        assert_eq!(set.lookup("a.far.com").map(|m| m.line), Some(u32::MAX));
    }

    #[test]
    fn empty_set_and_odd_queries() {
        let set = DomainSet::default();
        assert!(set.is_empty());
        assert!(set.lookup("a.com").is_none());
        let set = set_of(&["||a.com^\n"]);
        let deep = "a.".repeat(300) + "a.com";
        assert!(set.lookup(&deep).is_some());
        assert!(set.lookup("..a.com").is_some());
        assert!(set.lookup("a.com..").is_none());
        assert!(set.lookup("ä.a.com").is_some());
    }

    #[test]
    fn many_entries_all_found() {
        let mut b = DomainSetBuilder::new();
        let l = b.add_meta(meta("m")).unwrap();
        for i in 0..50_000u32 {
            b.add(
                l,
                &format!("host{i}.example{}.com", i % 97),
                i + 1,
                MatchKind::Block,
            );
        }
        let set = b.build().unwrap();
        for i in 0..50_000u32 {
            let q = format!("x.host{i}.example{}.com", i % 97);
            assert_eq!(set.lookup(&q).map(|m| m.line), Some(i + 1), "{q}");
        }
        assert!(set.lookup("host1.example2.com").is_none());
        assert!(set.heap_bytes() < 50_000 * 14);
    }

    #[test]
    fn swap_under_concurrent_readers() {
        // Set k blocks exactly the names "k-{i}.com" for all i; a reader that saw a half set
        // would find names of two generations.
        fn generation(k: u32) -> DomainSet {
            let mut b = DomainSetBuilder::new();
            let l = b.add_meta(meta(&format!("gen{k}"))).unwrap();
            for i in 0..2_000 {
                b.add(l, &format!("g{k}-{i}.com"), k, MatchKind::Block);
            }
            b.build().unwrap()
        }
        let live = Arc::new(LiveSet::new(generation(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|r| {
                let live = Arc::clone(&live);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut seen = HashSet::new();
                    let mut i = r;
                    while !stop.load(Ordering::Relaxed) {
                        let set = live.load();
                        let k: u32 = set.lists()[0].id[3..].parse().unwrap();
                        for j in [i % 2_000, (i * 7) % 2_000, 1_999] {
                            let line = set.lookup(&format!("x.g{k}-{j}.com")).unwrap().line;
                            assert_eq!(line, k);
                            assert!(set.lookup(&format!("g{}-{j}.com", k + 1)).is_none());
                        }
                        seen.insert(k);
                        i += 1;
                    }
                    seen.len()
                })
            })
            .collect();
        for k in 1..=30 {
            live.swap(generation(k));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() >= 2);
        }
        assert_eq!(live.load().lookup("g30-5.com").map(|m| m.line), Some(30));
    }

    /// The naive model: names in a map, the parent walk done on strings.
    fn model(
        entries: &[(u16, u32, String, bool)],
        q: &str,
    ) -> Option<(MatchKind, u16, u32, String)> {
        let mut by_name: HashMap<&str, Vec<(bool, u16, u32)>> = HashMap::new();
        for (list, line, name, exc) in entries {
            by_name
                .entry(name.as_str())
                .or_default()
                .push((*exc, *list, *line));
        }
        let q = q.strip_suffix('.').unwrap_or(q);
        let lower = q.to_ascii_lowercase();
        let mut start = 0;
        loop {
            let suffix = &lower[start..];
            if let Some(v) = by_name.get(suffix) {
                let best = v
                    .iter()
                    .filter(|e| e.0)
                    .min()
                    .or_else(|| v.iter().min())
                    .unwrap();
                let kind = if best.0 {
                    MatchKind::Exception
                } else {
                    MatchKind::Block
                };
                return Some((kind, best.1, best.2, q[start..].to_string()));
            }
            match suffix.find('.') {
                Some(dot) => start += dot + 1,
                None => return None,
            }
        }
    }

    fn label() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "ab", "com", "net", "x-y", "long_label123"])
            .prop_map(str::to_string)
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(label(), 1..5).prop_map(|l| l.join("."))
    }

    proptest! {
        #[test]
        fn agrees_with_naive_model(
            entries in prop::collection::vec((0u16..3, 1u32..1000, name(), any::<bool>()), 0..40),
            queries in prop::collection::vec((name(), any::<bool>(), any::<bool>()), 1..40),
        ) {
            let mut b = DomainSetBuilder::new();
            for l in 0..3 {
                b.add_meta(meta(&format!("l{l}"))).unwrap();
            }
            for (list, line, name, exc) in &entries {
                let kind = if *exc { MatchKind::Exception } else { MatchKind::Block };
                b.add(ListIndex(*list), name, *line, kind);
            }
            let set = b.build().unwrap();
            for (q, upper, dot) in queries {
                let mut q = if upper { q.to_uppercase() } else { q };
                if dot { q.push('.'); }
                let got = set.lookup(&q).map(|m| (m.kind, m.list.0, m.line, m.domain.to_string()));
                prop_assert_eq!(got, model(&entries, &q), "query {}", q);
            }
        }
    }
}
