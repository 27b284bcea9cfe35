//! The guest heap: talc over the region the boot info names, sharing it with the workload's
//! linear memory.
//!
//! Without a workload talc gets the whole heap. With one, talc starts with the top
//! [`TALC_FIRST`] bytes and the rest is an arena: the module's linear memory grows up from the
//! arena's bottom ([`claim_linear_memory`], [`grow_linear_memory`]) and talc claims more from
//! its top when it runs out ([`Arena::acquire`]); they meet where the VM's budget ends. Nothing
//! writes arena memory before it is handed out and the VMM's RAM starts zeroed, so the linear
//! memory needs no zeroing pass and costs only the pages the module touches — on nested KVM
//! every first touch of a page is a shadow-paging exit.
//!
//! Spin locks guard both; the guest is single-threaded today and they are never contended, but
//! they keep the allocator sound once several vCPUs run workloads.

use core::alloc::Layout;
use spinning_top::Spinlock;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::source::Source;
use talc::TalcLock;

#[global_allocator]
static ALLOCATOR: TalcLock<spinning_top::RawSpinlock, Arena> = TalcLock::new(Arena);

/// What talc gets first when a workload shares the heap: enough for wasmtime's engine, module
/// and instance (about 1 MiB for a Rust program) with room to spare.
const TALC_FIRST: usize = 4 << 20;
/// Talc claims arena memory in multiples of this (a huge page on the host).
const CHUNK: usize = 2 << 20;
/// Left free between the linear memory and talc, so the runtime can still allocate after
/// `memory.grow` has taken everything it could.
const RESERVE: usize = 1 << 20;

/// The free RAM between the linear memory (growing up) and talc's claims (growing down).
struct ArenaState {
    /// Where the linear memory starts; 0 once claimed or if there is no arena.
    unclaimed_base: usize,
    /// One past the highest byte the linear memory may reach so far.
    low: usize,
    /// The lowest byte talc has claimed.
    high: usize,
}

static ARENA: Spinlock<ArenaState> = Spinlock::new(ArenaState { unclaimed_base: 0, low: 0, high: 0 });

/// Talc's source of more memory: chunks off the top of the arena.
#[derive(Debug)]
struct Arena;

// SAFETY: `acquire` only hands talc memory that is inside the heap, below everything talc
// already has, above the linear memory's reach, and never handed to anyone else.
unsafe impl Source for Arena {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let mut arena = ARENA.lock();
        // Room for the allocation, its alignment and talc's per-heap metadata.
        let want = layout.size().checked_add(layout.align() + 4096).ok_or(())?.next_multiple_of(CHUNK);
        let new_high = arena.high.checked_sub(want).ok_or(())? / CHUNK * CHUNK;
        if new_high < arena.low.saturating_add(RESERVE / 2) {
            return Err(());
        }
        // SAFETY: `[new_high, high)` is heap RAM the VMM mapped read-write for the guest alone;
        // talc has none of it (it holds `[high, heap_end)`) and the linear memory stays below
        // `low`, which only grows while this lock is held and never past `high - RESERVE`.
        unsafe { talc.claim(new_high as *mut u8, arena.high - new_high) }.ok_or(())?;
        arena.high = new_high;
        Ok(())
    }
}

/// Hands `[start, end)` to the allocator, keeping all but [`TALC_FIRST`] of it as the linear
/// memory arena when `with_arena`. Panics if the region is too small to hold a heap.
pub fn init(start: u64, end: u64, with_arena: bool) {
    let (start, end) = (start as usize, end as usize);
    let split = if with_arena { (end.saturating_sub(TALC_FIRST) / CHUNK * CHUNK).max(start) } else { start };
    *ARENA.lock() = ArenaState { unclaimed_base: if split > start { start } else { 0 }, low: start, high: split };
    // SAFETY: the VMM maps `[heap_start, heap_end)` user read-write for this guest alone and
    // nothing else in the guest uses it; `[split, end)` is claimed once, at boot, and the rest
    // is only ever handed out by `Arena::acquire` or as the linear memory.
    let claimed = unsafe { ALLOCATOR.lock().claim(split as *mut u8, end.saturating_sub(split)) };
    if claimed.is_none() {
        panic!("heap [{start:#x}, {end:#x}) is too small");
    }
}

/// Takes the arena for a linear memory of `size` bytes: its base address, never written, all
/// zeros. `None` if the arena is already taken, absent, or too small.
pub fn claim_linear_memory(size: usize) -> Option<usize> {
    let mut arena = ARENA.lock();
    let base = arena.unclaimed_base;
    if base == 0 || base.checked_add(size)?.checked_add(RESERVE)? > arena.high {
        return None;
    }
    arena.unclaimed_base = 0;
    arena.low = base + size;
    Some(base)
}

/// Lets the linear memory at `base` reach `size` bytes, if the budget allows.
pub fn grow_linear_memory(base: usize, size: usize) -> bool {
    let mut arena = ARENA.lock();
    match base.checked_add(size).and_then(|end| Some((end, end.checked_add(RESERVE)?))) {
        Some((end, with_reserve)) if with_reserve <= arena.high => {
            arena.low = arena.low.max(end);
            true
        }
        _ => false,
    }
}
