//! Lookups run on the DNS and verdict paths for every query and connection: they must not
//! allocate. A counting global allocator (this test binary only) checks it across hits,
//! misses, exceptions, odd names and filtered lookups, for domain and IP sets.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::net::IpAddr;

use portcullis_intel::ipset::IpSetBuilder;
use portcullis_intel::lists::{Category, ListFormat, ListMeta, parse_domains, parse_ips};
use portcullis_intel::matcher::{DomainSetBuilder, LiveSet, MatchKind};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the measuring thread counts: the test harness's own threads allocate too.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to `System` unchanged; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn lookups_do_not_allocate() {
    let text = "||example.com^\n@@||ok.example.com^\n||tracker.net^\n";
    let parsed = parse_domains(text.as_bytes(), ListFormat::Adblock);
    let mut b = DomainSetBuilder::new();
    let meta = ListMeta {
        id: "t".into(),
        name: "t".into(),
        category: Category::Trackers,
        source: "test".into(),
    };
    b.add_list(meta, &parsed).unwrap();
    let live = LiveSet::new(b.build().unwrap());
    let long = "a.".repeat(200) + "example.com";
    let queries = [
        "x.example.com",
        "x.ok.example.com",
        "TRACKER.NET.",
        "nothing.org",
        "",
        ".",
        &long,
    ];

    // arc-swap registers each thread once, on its first load; that may allocate.
    drop(live.load());
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut seen = [0usize; 3];
    for _ in 0..1_000 {
        let set = live.load();
        for q in queries {
            match set.lookup(q).map(|m| m.kind) {
                Some(MatchKind::Block) => seen[0] += 1,
                Some(MatchKind::Exception) => seen[1] += 1,
                None => seen[2] += 1,
            }
            let _ = set.lookup_in(q, |l| l.0 == 0);
        }
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    assert_eq!(after - before, 0, "allocations during lookups");
    assert_eq!(seen, [3_000, 1_000, 3_000]);
}

#[test]
fn ip_lookups_do_not_allocate() {
    let text = "10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n::ffff:192.0.2.0/120\n2001:db8::/32\n::1\n";
    let parsed = parse_ips(text.as_bytes());
    let mut b = IpSetBuilder::new();
    for id in ["a", "b"] {
        let meta = ListMeta {
            id: id.into(),
            name: id.into(),
            category: Category::Malware,
            source: "test".into(),
        };
        b.add_list(meta, &parsed.entries).unwrap();
    }
    let live = LiveSet::new(b.build().unwrap());
    let queries: Vec<IpAddr> = [
        "10.1.2.3",
        "10.200.0.1",
        "::ffff:10.1.0.1",
        "192.0.2.9",
        "2001:db8::5",
        "::1",
        "203.0.113.1",
        "fe80::1",
    ]
    .iter()
    .map(|q| q.parse().unwrap())
    .collect();

    drop(live.load());
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut hits = 0;
    for _ in 0..1_000 {
        let set = live.load();
        for &q in &queries {
            if let Some(m) = set.lookup(q) {
                hits += 1;
                // Formatting the entry is the caller's (allocating) business; reading it is not.
                let _ = (m.entry.addr, m.entry.prefix, m.line, m.list);
            }
            let _ = set.lookup_in(q, |l| l.0 == 1);
        }
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    assert_eq!(after - before, 0, "allocations during lookups");
    assert_eq!(hits, 6_000);
}
