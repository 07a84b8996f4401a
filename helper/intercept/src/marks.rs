//! The packet marks a verdict leaves on a packet, derived from the configured mark mask, and the
//! arithmetic that sets them without touching any bit outside the mask. Pure: no platform code,
//! no I/O. It must not know which rules match the marks (see `rules`); it only owns the values.
//!
//! # Why bits 28 and 31
//!
//! Other software on the same machine marks packets and connections too, and a firewall that
//! overwrote their bits would break them. The default mask `0x9000_0000` (bits 28 and 31) is
//! clear in the marks of every common neighbour we know of: wg-quick uses the fwmark `0xca6c`,
//! Tailscale `0x00ff_0000` (its mask), kube-proxy `0x4000` and `0x8000`, Mullvad `0x6d6f_6c65`.
//! Within the mask, the lowest set bit means "allow", the highest "block", both "drop", so any
//! mask of at least two bits works; a host with another neighbour can choose other bits.

use portcullis_protocol::Verdict;

/// The default mask: bits 28 and 31.
pub const DEFAULT_MARK_MASK: u32 = 0x9000_0000;

/// The mark values of each verdict within a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// The bits we own; every other bit of a packet's mark belongs to someone else.
    pub mask: u32,
    /// Allowed: the lowest bit of the mask (`0x1000_0000` by default).
    pub allow: u32,
    /// Blocked (reject at once): the highest bit of the mask (`0x8000_0000` by default).
    pub block: u32,
    /// Dropped silently: both (`0x9000_0000` by default).
    pub drop: u32,
}

impl Marks {
    /// Derives the marks from `mask`; `None` when the mask has fewer than two bits.
    pub fn from_mask(mask: u32) -> Option<Marks> {
        if mask.count_ones() < 2 {
            return None;
        }
        let allow = mask & mask.wrapping_neg();
        let block = 1_u32 << (31 - mask.leading_zeros());
        Some(Marks {
            mask,
            allow,
            block,
            drop: allow | block,
        })
    }

    /// The bits (within the mask) that stand for `verdict`. [`Verdict::Ask`] is not a verdict a
    /// packet can carry; it gets the block bits, so that a caller's mistake fails closed.
    pub fn bits(&self, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Allow => self.allow,
            Verdict::Block | Verdict::Ask => self.block,
            Verdict::Drop => self.drop,
        }
    }

    /// The mark a packet whose mark is `old` gets for `verdict`: our bits replaced, every
    /// other bit kept.
    pub fn apply(&self, old: u32, verdict: Verdict) -> u32 {
        (old & !self.mask) | self.bits(verdict)
    }

    /// The verdict a mark stands for, if its bits within the mask are one of ours.
    pub fn verdict_of(&self, mark: u32) -> Option<Verdict> {
        match mark & self.mask {
            m if m == self.allow => Some(Verdict::Allow),
            m if m == self.drop => Some(Verdict::Drop),
            m if m == self.block => Some(Verdict::Block),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_gives_the_documented_marks() {
        let m = Marks::from_mask(DEFAULT_MARK_MASK).unwrap();
        assert_eq!(m.allow, 0x1000_0000);
        assert_eq!(m.block, 0x8000_0000);
        assert_eq!(m.drop, 0x9000_0000);
    }

    #[test]
    fn default_bits_are_clear_in_known_neighbours_marks() {
        for foreign in [0xca6c_u32, 0x00ff_0000, 0x4000, 0x8000, 0x6d6f_6c65] {
            assert_eq!(foreign & DEFAULT_MARK_MASK, 0, "{foreign:#x}");
        }
    }

    #[test]
    fn masks_with_fewer_than_two_bits_are_refused() {
        assert_eq!(Marks::from_mask(0), None);
        assert_eq!(Marks::from_mask(0x8000_0000), None);
        assert_eq!(Marks::from_mask(1), None);
        let m = Marks::from_mask(0b11).unwrap();
        assert_eq!((m.allow, m.block, m.drop), (1, 2, 3));
        let m = Marks::from_mask(0x0f00).unwrap();
        assert_eq!((m.allow, m.block, m.drop), (0x100, 0x800, 0x900));
    }

    #[test]
    fn apply_keeps_foreign_bits_and_replaces_ours() {
        let m = Marks::from_mask(DEFAULT_MARK_MASK).unwrap();
        assert_eq!(m.apply(0xca6c, Verdict::Allow), 0x1000_ca6c);
        assert_eq!(m.apply(0x6d6f_6c65, Verdict::Block), 0xed6f_6c65);
        assert_eq!(
            m.apply(0x6d6f_6c65 | 0x8000_0000, Verdict::Allow),
            0x7d6f_6c65
        );
        assert_eq!(m.apply(0xffff_ffff, Verdict::Drop), 0xffff_ffff);
        assert_eq!(m.apply(0xffff_ffff, Verdict::Allow), 0x7fff_ffff);
        assert_eq!(m.apply(0, Verdict::Ask), m.block);
        // Whatever the old mark, the bits outside the mask survive.
        for old in [
            0_u32,
            1,
            0x4000,
            0x8000,
            0x00ff_0000,
            0xffff_ffff,
            0x1234_5678,
        ] {
            for v in [Verdict::Allow, Verdict::Block, Verdict::Drop] {
                let new = m.apply(old, v);
                assert_eq!(new & !m.mask, old & !m.mask);
                assert_eq!(m.verdict_of(new), Some(v));
            }
        }
    }

    #[test]
    fn verdict_of_unmarked_is_none() {
        let m = Marks::from_mask(DEFAULT_MARK_MASK).unwrap();
        assert_eq!(m.verdict_of(0xca6c), None);
        let wide = Marks::from_mask(0xf000_0000).unwrap();
        assert_eq!(wide.verdict_of(0x2000_0000), None);
    }
}
