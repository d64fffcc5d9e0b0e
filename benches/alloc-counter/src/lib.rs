//! A counting global allocator for redmutex's benchmark.
//!
//! redmutex forbids unsafe code in every target, and a `GlobalAlloc` impl needs an
//! `unsafe impl`, so the allocator lives in this tiny crate. It forwards to [`System`] and counts
//! every allocation (`alloc`, `alloc_zeroed` and `realloc` each count one) for the whole process
//! and for the calling thread.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: redmutex_bench_alloc::Counting = redmutex_bench_alloc::Counting;
//! let before = redmutex_bench_alloc::thread_allocs();
//! // ... work ...
//! let allocations = redmutex_bench_alloc::thread_allocs() - before;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counting allocator: install it with `#[global_allocator]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` and without a destructor: reading it never allocates, so it is safe to touch
    // from inside the allocator.
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static THREAD_BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    let size = size as u64;
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size, Ordering::Relaxed);
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
    let _ = THREAD_BYTES.try_with(|c| c.set(c.get() + size));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only atomics and destructor-free thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded from our caller, who upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as for `alloc`; `ptr` and `layout` come from this allocator (i.e. `System`).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by every thread of the process so far.
#[must_use]
pub fn process_allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Bytes requested by every thread of the process so far.
#[must_use]
pub fn process_bytes() -> u64 {
    BYTES.load(Ordering::Relaxed)
}

/// Heap bytes in use by the whole process now (requested minus freed).
#[must_use]
pub fn live_bytes() -> u64 {
    BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(FREED.load(Ordering::Relaxed))
}

/// Allocations made by the calling thread so far.
#[must_use]
pub fn thread_allocs() -> u64 {
    THREAD_ALLOCS.try_with(Cell::get).unwrap_or(0)
}

/// Bytes requested by the calling thread so far.
#[must_use]
pub fn thread_bytes() -> u64 {
    THREAD_BYTES.try_with(Cell::get).unwrap_or(0)
}
