//! A length prefix must not make the reader allocate what it announces: these tests count the
//! largest single allocation the reading thread makes while a peer announces huge frames and
//! then sends little or nothing. Needs no privileges.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed step must fail the test at once, with its message"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use portcullis_ipc::{FrameError, FrameReader, read_frame};
use portcullis_protocol::{ClientFrame, MAX_FRAME_LEN};

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

/// The system allocator, noting the largest request made while tracking on this thread.
struct Counting;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping only touches const-initialized thread-locals and
// never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout as the caller gave us, same contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `new_size`'s rules.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` on a single-threaded runtime and returns its output and the largest allocation
/// made while it ran.
fn largest_allocation<F: std::future::Future>(f: F) -> (F::Output, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        LARGEST.with(|l| l.set(0));
        TRACKING.with(|t| t.set(true));
        let out = f.await;
        TRACKING.with(|t| t.set(false));
        (out, LARGEST.with(Cell::get))
    })
}

const SMALL: usize = 128 * 1024;

#[test]
fn the_counter_sees_big_allocations() {
    let (v, largest) = largest_allocation(async { vec![1u8; 1 << 20] });
    assert_eq!(v.len(), 1 << 20);
    assert!(
        largest >= 1 << 20,
        "the allocator hook does not work: {largest}"
    );
}

#[test]
fn an_oversized_prefix_is_refused_without_allocating_it() {
    let input = [0xff, 0xff, 0xff, 0xff, b'{', b'}'];
    let (result, largest) = largest_allocation(async {
        let mut r = &input[..];
        read_frame::<_, ClientFrame>(&mut r, MAX_FRAME_LEN).await
    });
    assert!(
        matches!(
            result,
            Err(FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(largest < 1024, "allocated {largest} bytes");

    let (result, largest) = largest_allocation(async {
        let mut reader = FrameReader::new(&input[..], MAX_FRAME_LEN);
        reader.read::<ClientFrame>().await
    });
    assert!(
        matches!(result, Err(FrameError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(largest < SMALL, "allocated {largest} bytes");
}

#[test]
fn a_large_announced_frame_allocates_only_what_arrived() {
    // Exactly at the limit (1 MiB), so it is accepted, but only 100 bytes follow.
    let mut input = MAX_FRAME_LEN.to_be_bytes().to_vec();
    input.extend_from_slice(&[b' '; 100]);
    let (result, largest) = largest_allocation(async {
        let mut r = &input[..];
        read_frame::<_, ClientFrame>(&mut r, MAX_FRAME_LEN).await
    });
    assert!(matches!(result, Err(FrameError::Truncated)), "{result:?}");
    assert!(
        largest < SMALL,
        "allocated {largest} bytes for 104 bytes of input"
    );
}

#[test]
fn a_peer_that_announces_a_large_frame_and_stalls_holds_little_memory() {
    let (result, largest) = largest_allocation(async {
        let (mut peer, ours) = tokio::net::UnixStream::pair().unwrap();
        peer.write_all(&MAX_FRAME_LEN.to_be_bytes()).await.unwrap();
        peer.write_all(&[b' '; 1000]).await.unwrap();
        let mut reader = FrameReader::new(ours, MAX_FRAME_LEN);
        let waited =
            tokio::time::timeout(Duration::from_millis(100), reader.read::<ClientFrame>()).await;
        assert!(
            waited.is_err(),
            "the reader should still wait for the rest of the frame"
        );
        drop(peer);
        reader.read::<ClientFrame>().await
    });
    assert!(matches!(result, Err(FrameError::Truncated)), "{result:?}");
    assert!(
        largest < SMALL,
        "allocated {largest} bytes for 1004 bytes of input"
    );
}
