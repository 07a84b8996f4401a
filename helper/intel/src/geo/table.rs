//! Sorted range tables: the compact form every geo lookup goes through. A table maps
//! disjoint address ranges to small values; it is built once from unsorted, possibly
//! overlapping rows and never changes afterwards. Lookups allocate nothing and take
//! O(log n) in the worst case: a 16-bit first-level index narrows the search to the ranges
//! that start in the address's top-16-bit bucket, then a binary search finds the range.

use std::fmt;

/// An address as an integer: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Key: Copy + Ord + fmt::Debug {
    /// The largest address.
    const MAX: Self;
    /// The top 16 bits: which first-level bucket the address falls in.
    fn bucket(self) -> usize;
    /// The next address (the caller checks it is not `MAX`).
    fn next(self) -> Self;
    /// The previous address (the caller checks it is not `MIN`).
    fn prev(self) -> Self;
}

impl Key for u32 {
    const MAX: Self = u32::MAX;
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
    fn next(self) -> Self {
        self.saturating_add(1)
    }
    fn prev(self) -> Self {
        self.saturating_sub(1)
    }
}

impl Key for u128 {
    const MAX: Self = u128::MAX;
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
    fn next(self) -> Self {
        self.saturating_add(1)
    }
    fn prev(self) -> Self {
        self.saturating_sub(1)
    }
}

/// A stored value with one reserved "no data" value that marks gaps.
pub(crate) trait Slot: Copy + Eq + fmt::Debug {
    /// Marks a range without data.
    const NONE: Self;
}

impl Slot for u16 {
    // Country codes are two letters, so 0 never is one.
    const NONE: Self = 0;
}

impl Slot for u32 {
    const NONE: Self = u32::MAX;
}

/// Number of first-level buckets (top 16 bits of the address).
const BUCKETS: usize = 1 << 16;

/// Disjoint ranges as boundaries: range `i` covers `starts[i] ..= starts[i + 1] - 1` (the last
/// one runs to the top of the address space) and holds `values[i]`, which is `V::NONE` for a
/// gap. Addresses below `starts[0]` have no data.
pub(crate) struct RangeTable<K, V> {
    starts: Box<[K]>,
    values: Box<[V]>,
    /// `index[b]` is the number of boundaries in buckets before `b`; `BUCKETS + 1` entries,
    /// or none for an empty table.
    index: Box<[u32]>,
}

impl<K: Key, V: Slot> RangeTable<K, V> {
    /// A table without data.
    pub(crate) fn empty() -> Self {
        Self {
            starts: Box::new([]),
            values: Box::new([]),
            index: Box::new([]),
        }
    }

    /// The value of the range holding `key`, if it has one. No allocation.
    #[inline]
    pub(crate) fn get(&self, key: K) -> Option<V> {
        let bucket = key.bucket();
        let lo = *self.index.get(bucket)? as usize;
        let hi = *self.index.get(bucket + 1)? as usize;
        let run = self.starts.get(lo..hi)?;
        // Boundaries in this bucket at or below the key; with none, the range that holds the
        // key started in an earlier bucket: the one just before `lo`.
        let i = (lo + run.partition_point(|start| *start <= key)).checked_sub(1)?;
        let value = *self.values.get(i)?;
        (value != V::NONE).then_some(value)
    }

    /// Number of boundaries (ranges with data plus gap markers).
    pub(crate) fn boundaries(&self) -> usize {
        self.starts.len()
    }

    /// Heap bytes the table holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        size_of_val(&*self.starts) + size_of_val(&*self.values) + size_of_val(&*self.index)
    }

    /// The ranges with data, in address order, as `(first, last, value)`.
    #[cfg(test)]
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (K, K, V)> + '_ {
        self.starts
            .iter()
            .zip(self.values.iter())
            .enumerate()
            .filter(|(_, (_, value))| **value != V::NONE)
            .map(|(i, (start, value))| {
                let last = self.starts.get(i + 1).map_or(K::MAX, |next| next.prev());
                (*start, last, *value)
            })
    }
}

/// Rows as they come from a file, turned into a [`RangeTable`] by [`RangeRows::build`].
pub(crate) struct RangeRows<K, V> {
    rows: Vec<(K, K, V)>,
}

/// What [`RangeRows::build`] had to resolve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Built {
    /// Rows that overlapped an earlier one.
    pub(crate) overlaps: usize,
}

/// More ranges than the 32-bit first-level index can count.
#[derive(Debug)]
pub(crate) struct TooManyRanges;

impl<K: Key, V: Slot> RangeRows<K, V> {
    pub(crate) fn new() -> Self {
        Self { rows: Vec::new() }
    }

    /// Adds `first ..= last` (the caller checks `first <= last`). `V::NONE` rows are ignored.
    pub(crate) fn push(&mut self, first: K, last: K, value: V) {
        if value != V::NONE {
            self.rows.push((first, last, value));
        }
    }

    /// Sorts the rows, resolves overlaps and packs the table. Where two rows overlap, the one
    /// that starts later wins from its start and the earlier one is cut short there (rows with
    /// the same start: the one pushed later wins). Neighbouring ranges with the same value are
    /// merged.
    pub(crate) fn build(mut self) -> Result<(RangeTable<K, V>, Built), TooManyRanges> {
        // Stable: among equal starts, push order is kept, so "later wins" holds.
        self.rows.sort_by_key(|row| row.0);
        let mut built = Built::default();
        let mut disjoint: Vec<(K, K, V)> = Vec::with_capacity(self.rows.len());
        for row in self.rows {
            if let Some(last) = disjoint.last_mut()
                && last.1 >= row.0
            {
                built.overlaps += 1;
                if last.0 < row.0 {
                    last.1 = row.0.prev();
                } else {
                    disjoint.pop();
                }
            }
            disjoint.push(row);
        }

        let mut starts = Vec::with_capacity(disjoint.len() + 1);
        let mut values = Vec::with_capacity(disjoint.len() + 1);
        // The end of the range last pushed, and its value.
        let mut previous: Option<(K, V)> = None;
        for (first, last, value) in disjoint {
            match previous {
                Some((end, v)) if end < K::MAX && end.next() == first => {
                    if v != value {
                        starts.push(first);
                        values.push(value);
                    }
                }
                Some((end, _)) => {
                    // A gap between the previous range and this one. (The previous range
                    // cannot end at MAX: this one starts after it.)
                    starts.push(end.next());
                    values.push(V::NONE);
                    starts.push(first);
                    values.push(value);
                }
                None => {
                    starts.push(first);
                    values.push(value);
                }
            }
            previous = Some((last, value));
        }
        if let Some((end, _)) = previous
            && end < K::MAX
        {
            starts.push(end.next());
            values.push(V::NONE);
        }
        if starts.len() >= u32::MAX as usize {
            return Err(TooManyRanges);
        }

        let index = if starts.is_empty() {
            Vec::new()
        } else {
            let mut index = Vec::with_capacity(BUCKETS + 1);
            let mut i = 0usize;
            for bucket in 0..=BUCKETS {
                while starts.get(i).is_some_and(|s: &K| s.bucket() < bucket) {
                    i += 1;
                }
                // Fits: checked against u32::MAX above.
                index.push(i as u32);
            }
            index
        };
        let table = RangeTable {
            starts: starts.into_boxed_slice(),
            values: values.into_boxed_slice(),
            index: index.into_boxed_slice(),
        };
        Ok((table, built))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(u32, u32, u32)]) -> (RangeTable<u32, u32>, Built) {
        let mut r = RangeRows::new();
        for &(a, b, v) in rows {
            r.push(a, b, v);
        }
        r.build().expect("build")
    }

    #[test]
    fn boundaries_and_gaps() {
        let (t, built) = table(&[(10, 19, 1), (30, 39, 2), (40, 49, 3)]);
        assert_eq!(built.overlaps, 0);
        assert_eq!(t.get(9), None);
        assert_eq!(t.get(10), Some(1));
        assert_eq!(t.get(19), Some(1));
        assert_eq!(t.get(20), None);
        assert_eq!(t.get(29), None);
        assert_eq!(t.get(30), Some(2));
        assert_eq!(t.get(39), Some(2));
        assert_eq!(t.get(40), Some(3));
        assert_eq!(t.get(49), Some(3));
        assert_eq!(t.get(50), None);
        assert_eq!(t.get(u32::MAX), None);
        assert_eq!(
            t.ranges().collect::<Vec<_>>(),
            vec![(10, 19, 1), (30, 39, 2), (40, 49, 3)]
        );
    }

    #[test]
    fn whole_space_and_extremes() {
        let (t, _) = table(&[(0, 0, 7), (1, u32::MAX, 8)]);
        assert_eq!(t.get(0), Some(7));
        assert_eq!(t.get(1), Some(8));
        assert_eq!(t.get(u32::MAX), Some(8));
        assert_eq!(t.boundaries(), 2);
    }

    #[test]
    fn neighbours_with_the_same_value_merge() {
        let (t, _) = table(&[(0, 9, 1), (10, 19, 1), (20, 29, 2)]);
        assert_eq!(
            t.ranges().collect::<Vec<_>>(),
            vec![(0, 19, 1), (20, 29, 2)]
        );
    }

    #[test]
    fn later_start_wins_an_overlap() {
        let (t, built) = table(&[(0, 100, 1), (50, 60, 2), (50, 55, 3)]);
        assert_eq!(built.overlaps, 2);
        assert_eq!(t.get(49), Some(1));
        assert_eq!(t.get(50), Some(3));
        assert_eq!(t.get(55), Some(3));
        // Cut short: the first row does not resume after the second.
        assert_eq!(t.get(70), None);
    }

    #[test]
    fn ranges_spanning_buckets() {
        let (t, _) = table(&[(0x0001_fff0, 0x0005_000f, 4)]);
        assert_eq!(t.get(0x0001_ffef), None);
        assert_eq!(t.get(0x0001_fff0), Some(4));
        assert_eq!(t.get(0x0003_1234), Some(4));
        assert_eq!(t.get(0x0005_000f), Some(4));
        assert_eq!(t.get(0x0005_0010), None);
    }

    #[test]
    fn empty_table_has_nothing() {
        let t = RangeTable::<u128, u16>::empty();
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(u128::MAX), None);
        let (t, _) = table(&[]);
        assert_eq!(t.get(5), None);
    }
}
