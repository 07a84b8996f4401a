//! The coarse index of domains and remote addresses: for each block of 4,096 row ids, one
//! row of `block_keys` holds the sorted set of 32-bit keys its rows carry (domain ids, and
//! hashes of remote addresses), as little-endian `u32` blobs. A query by domain or address
//! reads these blobs newest block first and scans only the blocks whose blob has the key.
//!
//! Why blobs and not a `(key, block)` b-tree: such a b-tree takes one insert at a random
//! place per distinct key per block — nearly one per row — and rewrites most of its leaf
//! pages on every commit. Measured here it cost as much as the events table itself. A blob
//! per block is rewritten once per batch for the block being filled, and only at the right
//! edge.
//!
//! The keys are a filter, never an answer: two domains or addresses may share a key (ids
//! above 2³², a hash collision, an id reused after a deletion), which only costs scanning a
//! block for nothing, since every scanned row is checked against the real condition. A block
//! with no `block_keys` row (one written before this index existed) is always scanned.
//!
//! The key of an address is part of the on-disk format: never change [`ip_key`].

use rusqlite::{OptionalExtension, Transaction, params};

/// Row ids per block: `block = id >> BLOCK_SHIFT`.
pub(crate) const BLOCK_SHIFT: i64 = 12;

/// The key of a domain id (its low 32 bits).
pub(crate) fn domain_key(id: i64) -> u32 {
    u32::try_from(id & 0xFFFF_FFFF).unwrap_or(0)
}

/// The key of a remote address as stored (4 or 16 bytes): 32-bit FNV-1a.
pub(crate) fn ip_key(blob: &[u8]) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in blob {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The keys of a blob; a trailing partial key (a damaged blob) is ignored.
pub(crate) fn decode(blob: &[u8]) -> Vec<u32> {
    blob.chunks_exact(4).map(le).collect()
}

fn le(c: &[u8]) -> u32 {
    <[u8; 4]>::try_from(c).map_or(0, u32::from_le_bytes)
}

fn encode(keys: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.len() * 4);
    for k in keys {
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}

/// Whether the sorted blob holds `key` (binary search, no copy).
pub(crate) fn contains(blob: &[u8], key: u32) -> bool {
    let n = blob.len() / 4;
    let at = |i: usize| blob.get(i * 4..i * 4 + 4).map_or(0, le);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid).cmp(&key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// New keys of one block, gathered while a batch is written.
#[derive(Debug, Default)]
pub(crate) struct BlockKeys {
    pub domains: Vec<u32>,
    pub ips: Vec<u32>,
}

/// Adds `keys` to block `block`'s row (creating it).
pub(crate) fn merge(tx: &Transaction<'_>, block: i64, keys: BlockKeys) -> rusqlite::Result<()> {
    let old: Option<(Vec<u8>, Vec<u8>)> = tx
        .prepare_cached("SELECT domains, ips FROM block_keys WHERE block = ?1")?
        .query_row([block], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let join = |old: Option<&Vec<u8>>, mut new: Vec<u32>| {
        if let Some(old) = old {
            new.extend(decode(old));
        }
        new.sort_unstable();
        new.dedup();
        encode(&new)
    };
    let domains = join(old.as_ref().map(|o| &o.0), keys.domains);
    let ips = join(old.as_ref().map(|o| &o.1), keys.ips);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO block_keys (block, domains, ips) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![block, domains, ips])?;
    Ok(())
}

/// Schema step 1 → 2: fills `block_keys` from the `(key, block)` tables of version 1.
pub(crate) fn migrate_from_postings(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let mut by_block: std::collections::BTreeMap<i64, BlockKeys> = Default::default();
    {
        let mut stmt = tx.prepare("SELECT block, domain_id FROM domain_blocks")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (block, id): (i64, i64) = (r.get(0)?, r.get(1)?);
            by_block
                .entry(block)
                .or_default()
                .domains
                .push(domain_key(id));
        }
        let mut stmt = tx.prepare("SELECT block, ip FROM ip_blocks")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (block, ip): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
            by_block.entry(block).or_default().ips.push(ip_key(&ip));
        }
    }
    for (block, keys) in by_block {
        merge(tx, block, keys)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_answer_membership() {
        let mut keys = vec![9, 3, 3, 70_000, 0, u32::MAX];
        keys.sort_unstable();
        keys.dedup();
        let blob = encode(&keys);
        assert_eq!(decode(&blob), keys);
        for k in &keys {
            assert!(contains(&blob, *k));
        }
        for k in [1, 4, 69_999, u32::MAX - 1] {
            assert!(!contains(&blob, k));
        }
        assert!(!contains(&[], 0));
        // A damaged blob never panics.
        assert!(!contains(&[1, 2, 3], 0));
        assert_eq!(decode(&[1, 2, 3, 4, 5]), vec![0x0403_0201]);
    }

    #[test]
    fn the_address_key_is_stable() {
        // Part of the file format: a change would make stored blocks unfindable.
        assert_eq!(ip_key(&[]), 0x811C_9DC5);
        assert_eq!(ip_key(&[192, 0, 2, 1]), ip_key(&[192, 0, 2, 1]));
        assert_ne!(ip_key(&[192, 0, 2, 1]), ip_key(&[192, 0, 2, 2]));
        assert_eq!(domain_key((1 << 32) + 5), 5);
    }
}
