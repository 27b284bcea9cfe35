//! The guest heap: talc over the region the boot info names.
//!
//! A spin lock guards it; the guest is single-threaded today and the lock is never contended,
//! but it keeps the allocator sound once several vCPUs run workloads.

use talc::source::Manual;
use talc::TalcLock;

#[global_allocator]
static ALLOCATOR: TalcLock<spinning_top::RawSpinlock, Manual> = TalcLock::new(Manual);

/// Hands `[start, end)` to the allocator. Panics if the region is too small to hold a heap.
pub fn init(start: u64, end: u64) {
    let size = end.saturating_sub(start) as usize;
    // SAFETY: the VMM maps `[heap_start, heap_end)` user read-write for this guest alone and
    // nothing else in the guest uses it; it is claimed once, at boot.
    let claimed = unsafe { ALLOCATOR.lock().claim(start as *mut u8, size) };
    if claimed.is_none() {
        panic!("heap [{start:#x}, {end:#x}) is too small");
    }
}
