//! The answer cache: upstream answers as they came, kept for their records' TTLs (clamped to
//! configured bounds), negative answers for their SOA's negative TTL, within a bound on
//! entries and bytes. This module owns expiry, TTL count-down and eviction; it must not
//! decide anything (blocking and rebinding checks run on every answer *after* the cache, so a
//! changed rule applies at once) and never delays an answer.
//!
//! Eviction: when a limit is reached, expired entries go first, then the ones closest to
//! expiry — they are the cheapest to lose. Every operation is O(log n).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Fixed cost counted per entry on top of its records (key, bookkeeping).
const ENTRY_OVERHEAD: usize = 160;
/// Fixed cost counted per record on top of its wire size (in-memory representation).
const RECORD_OVERHEAD: usize = 64;

/// Bounds of the cache. TTLs are clamped into `[min_ttl, max_ttl]` (negative answers into
/// `[min_ttl, max_negative_ttl]`); no TTL is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheLimits {
    /// Most entries kept (one entry is one question's answer).
    pub max_entries: usize,
    /// Most bytes kept (records' wire size plus a fixed per-entry and per-record overhead).
    pub max_bytes: usize,
    /// Lowest TTL, seconds. 0 keeps TTL-0 answers out of the cache.
    pub min_ttl: u32,
    /// Highest TTL of a positive answer, seconds.
    pub max_ttl: u32,
    /// Highest TTL of a negative answer (NXDOMAIN, no data), seconds.
    pub max_negative_ttl: u32,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 8 * 1024 * 1024,
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
        }
    }
}

impl CacheLimits {
    /// Checks that the limits can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_entries == 0 || self.max_bytes == 0 {
            return Err(ConfigError::BadCacheLimits(
                "max_entries and max_bytes must be greater than zero".to_owned(),
            ));
        }
        if self.min_ttl > self.max_ttl || self.min_ttl > self.max_negative_ttl {
            return Err(ConfigError::BadCacheLimits(format!(
                "min_ttl {} is above max_ttl {} or max_negative_ttl {}",
                self.min_ttl, self.max_ttl, self.max_negative_ttl
            )));
        }
        Ok(())
    }
}

/// What an answer is cached under: the question, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

impl CacheKey {
    /// The key for a question.
    pub fn new(name: &Name, qtype: RecordType, qclass: DNSClass) -> Self {
        Self {
            name: name.to_lowercase(),
            qtype,
            qclass,
        }
    }
}

/// A cached answer as handed out: sections with TTLs already counted down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// NOERROR or NXDOMAIN.
    pub response_code: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (without OPT).
    pub additionals: Vec<Record>,
    /// Seconds until this entry expires.
    pub remaining: u32,
}

#[derive(Debug)]
struct Entry {
    response_code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    stored: Instant,
    expires: Instant,
    bytes: usize,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<CacheKey, Entry>,
    /// (expiry, sequence) → key: the eviction order.
    order: BTreeMap<(Instant, u64), CacheKey>,
    bytes: usize,
    seq: u64,
    /// Bumped by every [`Cache::clear`]: answers to questions asked before it are not stored.
    generation: u64,
}

impl Inner {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.map.remove(key) {
            self.order.remove(&(e.expires, e.seq));
            self.bytes = self.bytes.saturating_sub(e.bytes);
        }
    }

    fn evict_first(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        if let Some(e) = self.map.remove(&key) {
            self.bytes = self.bytes.saturating_sub(e.bytes);
        }
        true
    }
}

/// The cache. Shared between tasks; every method takes `&self`.
#[derive(Debug)]
pub struct Cache {
    limits: CacheLimits,
    inner: Mutex<Inner>,
}

/// How long an upstream answer may be cached, or `None` if it must not be.
///
/// Positive: the lowest TTL in the answer section. Negative (NXDOMAIN, or NOERROR with no
/// answer): min(SOA TTL, SOA minimum) from the authority section (RFC 2308); without a SOA it
/// is not cached. Truncated answers and other rcodes are never cached.
pub fn cacheable_ttl(message: &Message, limits: &CacheLimits) -> Option<u32> {
    if message.metadata.truncation {
        return None;
    }
    let rcode = message.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return None;
    }
    let ttl = if rcode == ResponseCode::NoError && !message.answers.is_empty() {
        let lowest = message.answers.iter().map(|r| r.ttl).min()?;
        lowest.clamp(limits.min_ttl, limits.max_ttl)
    } else {
        let soa = message.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })?;
        soa.clamp(limits.min_ttl, limits.max_negative_ttl)
    };
    (ttl > 0).then_some(ttl)
}

fn record_bytes(r: &Record) -> usize {
    r.to_bytes().map_or(512, |b| b.len()) + RECORD_OVERHEAD
}

impl Cache {
    /// An empty cache with these limits (validated by the caller).
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of entries (expired ones included until they are evicted or looked up).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted against [`CacheLimits::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops everything; answers to questions asked before now will not be stored either.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.order.clear();
        inner.bytes = 0;
        inner.generation = inner.generation.wrapping_add(1);
    }

    /// The cache's generation: take it when a question goes upstream, and give it to
    /// [`Cache::insert_from`] with the answer.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Stores `message` (an upstream answer to `key`) if it is cacheable, as of `now`.
    /// Returns whether it was stored.
    pub fn insert(&self, key: CacheKey, message: &Message, now: Instant) -> bool {
        let generation = self.generation();
        self.insert_from(generation, key, message, now)
    }

    /// Like [`Cache::insert`] for a question asked at `generation`: an answer that was on
    /// its way while the cache was cleared (the routes changed) is not stored.
    pub fn insert_from(
        &self,
        generation: u64,
        key: CacheKey,
        message: &Message,
        now: Instant,
    ) -> bool {
        let Some(ttl) = cacheable_ttl(message, &self.limits) else {
            return false;
        };
        let negative = message.answers.is_empty();
        let clamp = |mut r: Record| {
            if negative {
                // RFC 2308: a negative answer's records live as long as the negative TTL.
                r.ttl = ttl;
            } else {
                r.ttl = r.ttl.clamp(self.limits.min_ttl, self.limits.max_ttl);
            }
            r
        };
        let answers: Vec<Record> = message.answers.iter().cloned().map(clamp).collect();
        let authorities: Vec<Record> = message.authorities.iter().cloned().map(clamp).collect();
        let additionals: Vec<Record> = message
            .additionals
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .cloned()
            .map(clamp)
            .collect();
        let bytes = ENTRY_OVERHEAD
            + key.name.len()
            + answers
                .iter()
                .chain(&authorities)
                .chain(&additionals)
                .map(record_bytes)
                .sum::<usize>();
        if bytes > self.limits.max_bytes {
            return false;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return false;
        }
        inner.remove(&key);
        while inner.map.len() >= self.limits.max_entries
            || inner.bytes.saturating_add(bytes) > self.limits.max_bytes
        {
            if !inner.evict_first() {
                break;
            }
        }
        inner.seq = inner.seq.wrapping_add(1);
        let seq = inner.seq;
        let expires = now + Duration::from_secs(u64::from(ttl));
        inner.order.insert((expires, seq), key.clone());
        inner.bytes = inner.bytes.saturating_add(bytes);
        inner.map.insert(
            key,
            Entry {
                response_code: message.metadata.response_code,
                answers,
                authorities,
                additionals,
                stored: now,
                expires,
                bytes,
                seq,
            },
        );
        true
    }

    /// The answer for `key` as of `now`, TTLs counted down by the whole seconds elapsed since
    /// it was stored; `None` (and the entry is dropped) once it has expired.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<CachedAnswer> {
        let mut inner = self.lock();
        let entry = inner.map.get(key)?;
        if now >= entry.expires {
            inner.remove(key);
            return None;
        }
        let elapsed = u32::try_from(now.saturating_duration_since(entry.stored).as_secs())
            .unwrap_or(u32::MAX);
        let remaining = u32::try_from(entry.expires.saturating_duration_since(now).as_secs())
            .unwrap_or(u32::MAX);
        let age = |rs: &[Record]| -> Vec<Record> {
            rs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(elapsed);
                    r
                })
                .collect()
        };
        Some(CachedAnswer {
            response_code: entry.response_code,
            answers: age(&entry.answers),
            authorities: age(&entry.authorities),
            additionals: age(&entry.additionals),
            remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};

    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(n(name), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
        Record::from_rdata(
            n(zone),
            ttl,
            RData::SOA(SOA::new(
                n("ns.example."),
                n("admin.example."),
                1,
                3600,
                600,
                86400,
                minimum,
            )),
        )
    }

    fn answer(rcode: ResponseCode, answers: Vec<Record>, auth: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        m.answers = answers;
        m.authorities = auth;
        m
    }

    fn key(name: &str) -> CacheKey {
        CacheKey::new(&n(name), RecordType::A, DNSClass::IN)
    }

    #[test]
    fn ttls_count_down_and_entries_expire() {
        let cache = Cache::new(CacheLimits::default());
        let t0 = Instant::now();
        let msg = answer(
            ResponseCode::NoError,
            vec![
                a("www.example.", 300, [192, 0, 2, 1]),
                a("www.example.", 100, [192, 0, 2, 2]),
            ],
            vec![],
        );
        assert!(cache.insert(key("WWW.example."), &msg, t0));
        let hit = cache
            .get(&key("www.EXAMPLE."), t0 + Duration::from_millis(10_500))
            .unwrap();
        assert_eq!(hit.answers[0].ttl, 290);
        assert_eq!(hit.answers[1].ttl, 90);
        assert_eq!(hit.remaining, 89);
        // The entry lives as long as its shortest record.
        assert!(
            cache
                .get(&key("www.example."), t0 + Duration::from_secs(99))
                .is_some()
        );
        assert!(
            cache
                .get(&key("www.example."), t0 + Duration::from_secs(100))
                .is_none()
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn ttls_are_clamped_not_forced() {
        let limits = CacheLimits {
            min_ttl: 60,
            max_ttl: 600,
            ..CacheLimits::default()
        };
        let cache = Cache::new(limits);
        let t0 = Instant::now();
        let msg = answer(
            ResponseCode::NoError,
            vec![
                a("low.example.", 5, [192, 0, 2, 1]),
                a("low.example.", 120, [192, 0, 2, 2]),
                a("low.example.", 90_000, [192, 0, 2, 3]),
            ],
            vec![],
        );
        cache.insert(key("low.example."), &msg, t0);
        let hit = cache.get(&key("low.example."), t0).unwrap();
        let ttls: Vec<u32> = hit.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![60, 120, 600]);
        assert_eq!(hit.remaining, 60);
    }

    #[test]
    fn ttl_zero_is_not_cached_unless_a_minimum_is_set() {
        let msg = answer(
            ResponseCode::NoError,
            vec![a("zero.example.", 0, [192, 0, 2, 1])],
            vec![],
        );
        let cache = Cache::new(CacheLimits::default());
        assert!(!cache.insert(key("zero.example."), &msg, Instant::now()));
        let cache = Cache::new(CacheLimits {
            min_ttl: 5,
            ..CacheLimits::default()
        });
        assert!(cache.insert(key("zero.example."), &msg, Instant::now()));
    }

    #[test]
    fn negative_answers_use_the_soa_minimum_and_their_own_cap() {
        let cache = Cache::new(CacheLimits {
            max_negative_ttl: 200,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        // min(SOA TTL 3600, minimum 300) = 300, capped to 200.
        let nx = answer(
            ResponseCode::NXDomain,
            vec![],
            vec![soa("example.", 3600, 300)],
        );
        assert!(cache.insert(key("nope.example."), &nx, t0));
        let hit = cache
            .get(&key("nope.example."), t0 + Duration::from_secs(50))
            .unwrap();
        assert_eq!(hit.response_code, ResponseCode::NXDomain);
        assert_eq!(hit.authorities[0].ttl, 150);
        assert!(
            cache
                .get(&key("nope.example."), t0 + Duration::from_secs(200))
                .is_none()
        );

        // NODATA with a SOA whose own TTL is lower than its minimum.
        let nodata = answer(
            ResponseCode::NoError,
            vec![],
            vec![soa("example.", 30, 300)],
        );
        assert!(cache.insert(key("nodata.example."), &nodata, t0));
        assert_eq!(
            cache.get(&key("nodata.example."), t0).unwrap().remaining,
            30
        );

        // Without a SOA there is no negative TTL: not cached.
        let bare = answer(ResponseCode::NXDomain, vec![], vec![]);
        assert!(!cache.insert(key("bare.example."), &bare, t0));
    }

    #[test]
    fn failures_and_truncated_answers_are_not_cached() {
        let cache = Cache::new(CacheLimits::default());
        let t0 = Instant::now();
        let fail = answer(
            ResponseCode::ServFail,
            vec![],
            vec![soa("example.", 60, 60)],
        );
        assert!(!cache.insert(key("x.example."), &fail, t0));
        let mut tc = answer(
            ResponseCode::NoError,
            vec![a("x.example.", 60, [192, 0, 2, 1])],
            vec![],
        );
        tc.metadata.truncation = true;
        assert!(!cache.insert(key("x.example."), &tc, t0));
    }

    #[test]
    fn an_answer_asked_before_a_clear_is_not_stored_after_it() {
        let cache = Cache::new(CacheLimits::default());
        let t0 = Instant::now();
        let msg = answer(
            ResponseCode::NoError,
            vec![a("vpn.example.", 60, [10, 1, 2, 3])],
            vec![],
        );
        let asked = cache.generation();
        cache.clear();
        assert!(!cache.insert_from(asked, key("vpn.example."), &msg, t0));
        assert!(cache.get(&key("vpn.example."), t0).is_none());
        let asked = cache.generation();
        assert!(cache.insert_from(asked, key("vpn.example."), &msg, t0));
        assert!(cache.get(&key("vpn.example."), t0).is_some());
    }

    #[test]
    fn a_cname_chain_is_kept_whole() {
        let cache = Cache::new(CacheLimits::default());
        let t0 = Instant::now();
        let msg = answer(
            ResponseCode::NoError,
            vec![
                Record::from_rdata(
                    n("www.example."),
                    600,
                    RData::CNAME(CNAME(n("edge.cdn.example."))),
                ),
                a("edge.cdn.example.", 20, [192, 0, 2, 9]),
            ],
            vec![],
        );
        cache.insert(key("www.example."), &msg, t0);
        let hit = cache.get(&key("www.example."), t0).unwrap();
        assert_eq!(hit.answers.len(), 2);
        assert_eq!(hit.remaining, 20);
    }

    #[test]
    fn entry_and_byte_limits_hold_evicting_soonest_expiry_first() {
        let cache = Cache::new(CacheLimits {
            max_entries: 3,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        for (i, ttl) in [(1_u8, 500), (2, 100), (3, 300), (4, 400)] {
            let name = format!("h{i}.example.");
            let msg = answer(
                ResponseCode::NoError,
                vec![a(&name, ttl, [192, 0, 2, i])],
                vec![],
            );
            cache.insert(key(&name), &msg, t0);
        }
        assert_eq!(cache.len(), 3);
        assert!(
            cache.get(&key("h2.example."), t0).is_none(),
            "soonest expiry evicted"
        );
        assert!(cache.get(&key("h1.example."), t0).is_some());

        let one = {
            let c = Cache::new(CacheLimits::default());
            let msg = answer(
                ResponseCode::NoError,
                vec![a("b0.example.", 60, [192, 0, 2, 1])],
                vec![],
            );
            c.insert(key("b0.example."), &msg, t0);
            c.bytes()
        };
        let cache = Cache::new(CacheLimits {
            max_bytes: one * 2 + one / 2,
            ..CacheLimits::default()
        });
        for i in 0..10_u8 {
            let name = format!("b{i}.example.");
            let msg = answer(
                ResponseCode::NoError,
                vec![a(&name, 60, [192, 0, 2, i])],
                vec![],
            );
            cache.insert(key(&name), &msg, t0 + Duration::from_secs(u64::from(i)));
        }
        assert!(cache.bytes() <= one * 2 + one / 2);
        assert_eq!(cache.len(), 2);
        assert!(
            cache
                .get(&key("b9.example."), t0 + Duration::from_secs(9))
                .is_some()
        );
    }

    proptest::proptest! {
        #[test]
        fn limits_always_hold(
            ops in proptest::collection::vec((0_u8..40, 0_u32..1000, 0_u64..2000), 1..200),
            max_entries in 1_usize..20,
        ) {
            let cache = Cache::new(CacheLimits { max_entries, max_bytes: 4000, ..CacheLimits::default() });
            let mut now = Instant::now();
            for (name, ttl, step) in ops {
                let name = format!("n{name}.example.");
                now += Duration::from_secs(step);
                let msg = answer(ResponseCode::NoError, vec![a(&name, ttl, [192, 0, 2, 1])], vec![]);
                let stored = cache.insert(key(&name), &msg, now);
                proptest::prop_assert!(cache.len() <= max_entries);
                proptest::prop_assert!(cache.bytes() <= 4000);
                if stored {
                    let hit = cache.get(&key(&name), now);
                    proptest::prop_assert!(hit.is_some());
                    proptest::prop_assert!(hit.iter().flat_map(|h| &h.answers).all(|r| r.ttl == ttl));
                }
            }
        }
    }
}
