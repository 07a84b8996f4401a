//! Lookups run on the DNS path for every query: they must not allocate. A counting global
//! allocator (this test binary only) checks it across hits, misses, exceptions, odd names and
//! a filtered lookup.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_intel::lists::{Category, ListFormat, ListMeta, parse_domains};
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
