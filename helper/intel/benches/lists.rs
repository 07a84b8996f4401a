//! Filter-list matcher benchmark (issue 7), beside two same-run baselines: a `HashSet<String>`
//! with a parent walk, and an `fst::Set` of reversed names walked once per query. Prints a
//! table; asserts nothing.
//!
//!     CARGO_TARGET_DIR=… cargo bench -p portcullis-intel --bench lists [-- DOMAINS] [-- --quick]
//!
//! DOMAINS (default 1,000,000) random but realistic names: 1–3 labels of 3–15 characters and
//! a TLD from a small set, deterministic. Queries are as many cold random names (shuffled, so
//! every lookup goes to a different place), 10% of them subdomains of listed names and the rest
//! not listed. Memory is what a counting global allocator sees retained after the build (and
//! its peak during the build); lookups are single-threaded, median of the rounds; load is the
//! build from names already in memory (and, for Portcullis, parsing the list text as well).
//! Rates and load times use the thread's CPU time (the machine is shared: wall-clock time
//! counts other processes' turns too); the wall-clock lookup rate is printed beside.
//! `--quick` (or `PCL_BENCH_QUICK=1`) runs 100,000 domains and 3 rounds for CI.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark program: any failure should stop it loudly"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_intel::lists::{Category, ListFormat, ListMeta, parse_domains};
use portcullis_intel::matcher::{DomainSet, DomainSetBuilder, MatchKind};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, which is `System.realloc`'s.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// This thread's CPU time: on a shared two-core machine the wall clock also counts the time
/// other processes had the core, so rates are computed from this ("per core") and the wall
/// clock is printed beside.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f`, returning its value, the heap bytes it left allocated, its peak over the start,
/// and its time.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize, Duration) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t = cpu_now();
    let value = f();
    let took = cpu_now() - t;
    let after = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    (
        value,
        after.saturating_sub(before),
        peak.saturating_sub(before),
        took,
    )
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TLDS: [&str; 8] = ["com", "net", "org", "io", "de", "info", "xyz", "ru"];
const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn label(rng: &mut Rng, out: &mut String) {
    let len = 3 + rng.below(13);
    for _ in 0..len {
        out.push(char::from(CHARS[rng.below(CHARS.len() as u64) as usize]));
    }
}

fn domain(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(40);
    for _ in 0..1 + rng.below(3) {
        label(rng, &mut s);
        s.push('.');
    }
    s.push_str(TLDS[rng.below(TLDS.len() as u64) as usize]);
    s
}

fn hashset_lookup(set: &HashSet<String>, q: &str) -> bool {
    let mut s = q;
    loop {
        if set.contains(s) {
            return true;
        }
        match s.find('.') {
            Some(dot) => s = &s[dot + 1..],
            None => return false,
        }
    }
}

/// Walks the reversed query through the FST once; a final state at a label boundary is a
/// listed suffix.
fn fst_lookup(set: &fst::Set<Vec<u8>>, q: &str) -> bool {
    let fst = set.as_fst();
    let mut node = fst.root();
    let bytes = q.as_bytes();
    for (i, &b) in bytes.iter().enumerate().rev() {
        if b == b'.' && node.is_final() && i + 1 < bytes.len() {
            return true;
        }
        match node.find_input(b) {
            Some(t) => node = fst.node(node.transition(t).addr),
            None => return false,
        }
    }
    node.is_final()
}

fn reversed(name: &str) -> Vec<u8> {
    name.bytes().rev().collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("PCL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let rounds = if quick { 3 } else { 7 };

    // The listed names, unique, in generation order.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seen = HashSet::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    while names.len() < n {
        let d = domain(&mut rng);
        if seen.insert(d.clone()) {
            names.push(d);
        }
    }
    let list_text: String = names.iter().flat_map(|d| [d.as_str(), "\n"]).collect();

    // Cold queries: 10% subdomains of listed names, the rest unlisted names of the same shape.
    let mut qrng = Rng(0xD1B5_4A32_D192_ED03);
    let queries: Vec<String> = (0..n)
        .map(|_| {
            if qrng.below(10) == 0 {
                let mut s = String::new();
                label(&mut qrng, &mut s);
                s.push('.');
                s.push_str(&names[qrng.below(n as u64) as usize]);
                s
            } else {
                loop {
                    let d = domain(&mut qrng);
                    if !seen.contains(&d) {
                        break d;
                    }
                }
            }
        })
        .collect();
    drop(seen);

    // Builds, each measured alone.
    let (hash, hash_mem, hash_peak, hash_load) = measured(|| {
        let mut set = HashSet::with_capacity(names.len());
        for d in &names {
            set.insert(d.clone());
        }
        set
    });
    let (fst_set, fst_mem, fst_peak, fst_load) = measured(|| {
        let mut rev: Vec<Vec<u8>> = names.iter().map(|d| reversed(d)).collect();
        rev.sort_unstable();
        fst::Set::from_iter(rev).expect("sorted, unique")
    });
    let meta = ListMeta {
        id: "bench".into(),
        name: "bench".into(),
        category: Category::Ads,
        source: "generated".into(),
    };
    let (ours, ours_mem, ours_peak, ours_load) = measured(|| {
        let mut b = DomainSetBuilder::new();
        let l = b.add_meta(meta.clone()).expect("one list");
        for (i, d) in names.iter().enumerate() {
            b.add(l, d, i as u32 + 1, MatchKind::Block);
        }
        b.build().expect("fits")
    });
    let (from_text, _, text_peak, text_load) = measured(|| {
        let t = cpu_now();
        let parsed = parse_domains(list_text.as_bytes(), ListFormat::Domains);
        let parse = cpu_now() - t;
        assert_eq!(parsed.entries.len(), n);
        let mut b = DomainSetBuilder::new();
        b.add_list(meta.clone(), &parsed).expect("one list");
        (b.build().expect("fits"), parse)
    });
    let (from_text, parse_time) = from_text;
    assert_eq!(from_text.len(), ours.len());
    drop(from_text);

    // Lookups: every arm in every round, the arm order rotating.
    type Arm<'a> = Box<dyn Fn(&str) -> bool + 'a>;
    let arms: [(&str, Arm<'_>); 3] = [
        ("HashSet<String>", Box::new(|q| hashset_lookup(&hash, q))),
        ("fst::Set", Box::new(|q| fst_lookup(&fst_set, q))),
        ("Portcullis", Box::new(|q| lookup_ours(&ours, q))),
    ];
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut wall_rates: [Vec<f64>; 3] = Default::default();
    let mut hits = [0usize; 3];
    for round in 0..rounds {
        for k in 0..3 {
            let a = (round + k) % 3;
            let f = &arms[a].1;
            let (t, wall) = (cpu_now(), Instant::now());
            let mut h = 0usize;
            for q in &queries {
                h += usize::from(f(black_box(q.as_str())));
            }
            let (took, wall) = (cpu_now() - t, wall.elapsed());
            rates[a].push(queries.len() as f64 / took.as_secs_f64());
            wall_rates[a].push(queries.len() as f64 / wall.as_secs_f64());
            hits[a] = h;
        }
    }
    let rate: Vec<f64> = rates.iter().map(|r| median(r.clone())).collect();
    let wall_rate: Vec<f64> = wall_rates.iter().map(|r| median(r.clone())).collect();

    println!(
        "filter-list matcher: {n} domains, {} cold queries ({:.1}% hit), {rounds} rounds, 1 thread",
        queries.len(),
        hits[2] as f64 * 100.0 / queries.len() as f64
    );
    if hits[0] != hits[1] || hits[0] != hits[2] {
        println!("  WARNING: arms disagree on hits: {hits:?}");
    }
    println!(
        "  {:<17} {:>9} {:>9} {:>10} {:>12} {:>12} {:>9}",
        "arm", "memory", "B/domain", "peak build", "lookups/s", "(wall)", "load"
    );
    let rows = [
        (
            "HashSet<String>",
            hash_mem,
            hash_peak,
            rate[0],
            wall_rate[0],
            hash_load,
        ),
        (
            "fst::Set",
            fst_mem,
            fst_peak,
            rate[1],
            wall_rate[1],
            fst_load,
        ),
        (
            "Portcullis",
            ours_mem,
            ours_peak,
            rate[2],
            wall_rate[2],
            ours_load,
        ),
    ];
    for (name, mem, peak, r, w, load) in rows {
        println!(
            "  {:<17} {:>9} {:>9.1} {:>10} {:>10.2} M {:>10.2} M {:>9}",
            name,
            mb(mem),
            mem as f64 / n as f64,
            mb(peak),
            r / 1e6,
            w / 1e6,
            ms(load)
        );
    }
    println!(
        "  Portcullis, parse list text + build: {} (parsing {}, peak {})",
        ms(text_load),
        ms(parse_time),
        mb(text_peak)
    );
    for (i, base) in [(0, "HashSet"), (1, "fst")] {
        println!(
            "  vs {base:<8} memory {:.2}×, lookups {:.2}×, load {:.2}×",
            ours_mem as f64 / rows[i].1 as f64,
            rate[2] / rate[i],
            ours_load.as_secs_f64() / rows[i].5.as_secs_f64()
        );
    }
    let per_million = ours_mem as f64 * 1e6 / n as f64 / 1e6;
    let load_per_million = text_load.as_secs_f64() * 1e3 * 1e6 / n as f64;
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!(
        "  targets: memory {per_million:.1} MB per million (≤ 16) {}; lookups {:.2} M/s (≥ 5) {}; \
         load {load_per_million:.0} ms per million incl. parsing (≤ 300) {}",
        verdict(per_million <= 16.0),
        rate[2] / 1e6,
        verdict(rate[2] >= 5e6),
        verdict(load_per_million <= 300.0)
    );
}

fn lookup_ours(set: &DomainSet, q: &str) -> bool {
    set.lookup(q).is_some_and(|m| m.kind == MatchKind::Block)
}
