//! IP/CIDR list matcher benchmark (issue 7), beside a same-run baseline: one `HashMap` per
//! prefix length present, probed longest prefix first (the textbook longest-prefix match that
//! also says which entry matched). Prints a table; asserts nothing.
//!
//!     CARGO_TARGET_DIR=… cargo bench -p portcullis-intel --bench ipset [-- ENTRIES] [-- --quick]
//!
//! ENTRIES (default 200,000, the size of the largest public address feeds) IPv4 entries, in
//! the shape such feeds have: 70% single addresses, the rest networks of /16 to /30 (most /20
//! to /24), deterministic, with nested and duplicate networks left in. Queries are as many
//! random addresses, shuffled; a third are taken inside listed networks. Memory is what a
//! counting global allocator sees retained after the build; rates use the thread's CPU time
//! (median of the rounds; the wall-clock rate beside), as in the `lists` benchmark.
//! `--quick` (or `PCL_BENCH_QUICK=1`) runs 20,000 entries and 3 rounds.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark program: any failure should stop it loudly"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_intel::ipset::{IpSet, IpSetBuilder};
use portcullis_intel::lists::{Category, ListMeta, parse_ips};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, which is `System.realloc`'s.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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

/// Runs `f`, returning its value, the heap bytes it left allocated and its CPU time.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let before = LIVE.load(Ordering::Relaxed);
    let t = cpu_now();
    let value = f();
    let took = cpu_now() - t;
    (
        value,
        LIVE.load(Ordering::Relaxed).saturating_sub(before),
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

fn prefix(rng: &mut Rng) -> u8 {
    if rng.below(10) < 7 {
        return 32;
    }
    match rng.below(10) {
        0 => 16 + rng.below(4) as u8,
        1 => 25 + rng.below(6) as u8,
        _ => 20 + rng.below(5) as u8,
    }
}

fn mask(p: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0)
}

/// The baseline: per prefix length, network → line; probed longest first.
struct PerPrefix {
    maps: Vec<(u8, HashMap<u32, u32>)>,
}

impl PerPrefix {
    fn lookup(&self, a: u32) -> Option<u32> {
        self.maps
            .iter()
            .find_map(|(p, m)| m.get(&(a & mask(*p))).copied())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("PCL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 200_000 });
    let rounds = if quick { 3 } else { 7 };

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let nets: Vec<(u32, u8)> = (0..n)
        .map(|_| {
            let p = prefix(&mut rng);
            ((rng.next() as u32) & mask(p), p)
        })
        .collect();
    let text: String = nets
        .iter()
        .map(|&(a, p)| {
            if p == 32 {
                format!("{}\n", Ipv4Addr::from(a))
            } else {
                format!("{}/{p}\n", Ipv4Addr::from(a))
            }
        })
        .collect();
    let mut qrng = Rng(0xD1B5_4A32_D192_ED03);
    let queries: Vec<u32> = (0..n.max(1_000_000))
        .map(|_| {
            if qrng.below(3) == 0 {
                let (a, p) = nets[qrng.below(n as u64) as usize];
                a | ((qrng.next() as u32) & !mask(p))
            } else {
                qrng.next() as u32
            }
        })
        .collect();

    let (parsed, _, parse_time) = measured(|| parse_ips(text.as_bytes()));
    assert_eq!(parsed.entries.len(), n);
    let meta = ListMeta {
        id: "bench".into(),
        name: "bench".into(),
        category: Category::Malware,
        source: "generated".into(),
    };
    let (ours, ours_mem, ours_load) = measured(|| {
        let mut b = IpSetBuilder::new();
        b.add_list(meta.clone(), &parsed.entries).expect("one list");
        b.build().expect("fits")
    });
    let (base, base_mem, base_load) = measured(|| {
        let mut by: HashMap<u8, HashMap<u32, u32>> = HashMap::new();
        for (i, &(a, p)) in nets.iter().enumerate() {
            by.entry(p).or_default().entry(a).or_insert(i as u32 + 1);
        }
        let mut maps: Vec<_> = by.into_iter().collect();
        maps.sort_by_key(|m| std::cmp::Reverse(m.0));
        PerPrefix { maps }
    });
    drop(parsed);

    let lookup_ours =
        |set: &IpSet, a: u32| set.lookup(IpAddr::V4(Ipv4Addr::from(a))).map(|m| m.line);
    let mut rates: [Vec<f64>; 2] = Default::default();
    let mut walls: [Vec<f64>; 2] = Default::default();
    let mut hits = [0usize; 2];
    let mut agree = true;
    for round in 0..rounds {
        for k in 0..2 {
            let arm = (round + k) % 2;
            let (t, wall) = (cpu_now(), Instant::now());
            let mut h = 0usize;
            for &q in &queries {
                let found = if arm == 0 {
                    base.lookup(black_box(q))
                } else {
                    lookup_ours(&ours, black_box(q))
                };
                h += usize::from(found.is_some());
            }
            let (took, wall) = (cpu_now() - t, wall.elapsed());
            rates[arm].push(queries.len() as f64 / took.as_secs_f64());
            walls[arm].push(queries.len() as f64 / wall.as_secs_f64());
            hits[arm] = h;
        }
    }
    // The two must name the same entry (the most specific; on duplicates the first line).
    for &q in queries.iter().take(100_000) {
        if base.lookup(q) != lookup_ours(&ours, q) {
            agree = false;
        }
    }

    println!(
        "IP/CIDR list matcher: {n} IPv4 entries, {} cold queries ({:.1}% hit), {rounds} rounds, 1 thread",
        queries.len(),
        hits[1] as f64 * 100.0 / queries.len() as f64
    );
    if !agree || hits[0] != hits[1] {
        println!("  WARNING: arms disagree: hits {hits:?}");
    }
    println!(
        "  {:<26} {:>9} {:>9} {:>12} {:>12} {:>9}",
        "arm", "memory", "B/entry", "lookups/s", "(wall)", "build"
    );
    for (i, name, mem, load) in [
        (0, "HashMap per prefix length", base_mem, base_load),
        (1, "Portcullis IpSet", ours_mem, ours_load),
    ] {
        println!(
            "  {:<26} {:>7.1} MB {:>9.1} {:>10.2} M {:>10.2} M {:>6.0} ms",
            name,
            mem as f64 / 1e6,
            mem as f64 / n as f64,
            median(rates[i].clone()) / 1e6,
            median(walls[i].clone()) / 1e6,
            load.as_secs_f64() * 1e3
        );
    }
    println!(
        "  Portcullis vs baseline: memory {:.2}×, lookups {:.2}×; parsing the list text {:.0} ms",
        ours_mem as f64 / base_mem as f64,
        median(rates[1].clone()) / median(rates[0].clone()),
        parse_time.as_secs_f64() * 1e3
    );
}
