//! The guest's allocator: one talc heap for whatever runs in this address space.
//!
//! The kernel's writable data (this file's statics included) is private to each address space:
//! the boot vCPU uses the image's own, and every workload's vCPU a copy the VMM placed in the
//! workload's window. So each workload has an allocator of its own over its own heap, nothing
//! it allocates is ever seen by another vCPU, and a workload stopped anywhere, even holding
//! this heap's lock, leaves nothing behind: its window goes, and with it its heap and its copy
//! of the kernel's data.
//!
//! - The boot vCPU's heap is the kernel heap the boot info names (base RAM, mapped in its
//!   address space only): [`init_kernel`].
//! - A workload's heap ([`enter_workload`]) is the heap part of its window. It is split like
//!   this: talc starts with the top [`TALC_FIRST`] bytes, the rest is an arena whose bottom is
//!   the module's linear memory ([`claim_linear_memory`], [`grow_linear_memory`]) and whose top
//!   talc claims in chunks when it runs out ([`Arena::acquire`]); they meet where the
//!   workload's budget ends. Nothing writes arena memory before it is handed out and a new
//!   window is all zeros, so the linear memory needs no zeroing pass and costs only the pages
//!   the module touches — on nested KVM every first touch of a page is a shadow-paging exit.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use spinning_top::RawSpinlock;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::lock_api::Mutex;
use talc::source::Source;
use talc::DefaultBinning;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// This address space's heap (empty until [`init_kernel`] or [`enter_workload`]).
static HEAP: Mutex<RawSpinlock, Talc<Arena, DefaultBinning>> =
    Mutex::new(Talc::new(Arena { unclaimed_base: 0, low: 0, high: 0 }));
/// The heap's range: a pointer outside it (wasmtime frees a failed, null allocation with its
/// layout) is never handed to talc, which would read its neighbours' tags at a wild address.
static RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn set_range(start: usize, end: usize) {
    RANGE[0].store(start, Ordering::Relaxed);
    RANGE[1].store(end, Ordering::Relaxed);
}

fn owned(ptr: *mut u8) -> bool {
    (RANGE[0].load(Ordering::Relaxed)..RANGE[1].load(Ordering::Relaxed)).contains(&(ptr as usize))
}

/// What talc gets first in a workload heap: enough for wasmtime's engine, module and instance
/// (about 1 MiB for a Rust program) with room to spare.
const TALC_FIRST: usize = 4 << 20;
/// Talc claims arena memory in multiples of this (a huge page on the host).
const CHUNK: usize = 2 << 20;
/// Left free between the linear memory and talc, so the runtime can still allocate after
/// `memory.grow` has taken everything it could.
const RESERVE: usize = 1 << 20;

/// The free RAM of a workload heap between the linear memory (growing up) and talc's claims
/// (growing down).
#[derive(Debug)]
struct Arena {
    /// Where the linear memory starts; 0 once claimed.
    unclaimed_base: usize,
    /// One past the highest byte the linear memory may reach so far.
    low: usize,
    /// The lowest byte talc has claimed.
    high: usize,
}

// SAFETY: `acquire` only hands talc memory that is inside the workload's heap, below everything
// talc already has, above the linear memory's reach, and never handed to anyone else.
unsafe impl Source for Arena {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        // Room for the allocation, its alignment and talc's per-heap metadata.
        let want = layout.size().checked_add(layout.align() + 4096).ok_or(())?.next_multiple_of(CHUNK);
        let arena = &talc.source;
        let new_high = arena.high.checked_sub(want).ok_or(())? / CHUNK * CHUNK;
        if new_high < arena.low.saturating_add(RESERVE / 2) {
            return Err(());
        }
        let high = arena.high;
        // SAFETY: `[new_high, high)` is heap RAM of this workload's window; talc has none of it
        // (it holds `[high, heap_end)`) and the linear memory stays below `low`, which only
        // grows under this heap's lock and never past `high - RESERVE`.
        unsafe { talc.claim(new_high as *mut u8, high - new_high) }.ok_or(())?;
        talc.source.high = new_high;
        Ok(())
    }
}

/// Hands `[start, end)` to the heap of the boot vCPU (no arena: it runs no linear memory).
/// Panics if it is too small.
pub fn init_kernel(start: u64, end: u64) {
    let (start, end) = (start as usize, end as usize);
    let mut talc = HEAP.lock();
    *talc = Talc::new(Arena { unclaimed_base: 0, low: start, high: start });
    // SAFETY: the VMM maps `[heap_start, heap_end)` user read-write in the boot vCPU's address
    // space alone and nothing else in the guest uses it; it is claimed once, at boot.
    if unsafe { talc.claim(start as *mut u8, end.saturating_sub(start)) }.is_none() {
        panic!("kernel heap [{start:#x}, {end:#x}) is too small");
    }
    set_range(start, end);
}

/// Makes `[start, end)` of this vCPU's window its workload's heap. Panics if it is too small.
pub fn enter_workload(start: u64, end: u64) {
    let (start, end) = (start as usize, end as usize);
    let split = (end.saturating_sub(TALC_FIRST) / CHUNK * CHUNK).max(start);
    let mut talc = HEAP.lock();
    *talc = Talc::new(Arena { unclaimed_base: if split > start { start } else { 0 }, low: start, high: split });
    // SAFETY: the VMM maps the window's heap user read-write for this workload alone; `[split,
    // end)` goes to talc now and the rest only through `Arena::acquire` or as the linear memory.
    if unsafe { talc.claim(split as *mut u8, end.saturating_sub(split)) }.is_none() {
        panic!("workload heap [{start:#x}, {end:#x}) is too small");
    }
    set_range(start, end);
}

/// Takes the arena for a linear memory of `size` bytes: its base address, never written, all
/// zeros. `None` if the arena is already taken, absent, or too small.
pub fn claim_linear_memory(size: usize) -> Option<usize> {
    let mut talc = HEAP.lock();
    let arena = &mut talc.source;
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
    let mut talc = HEAP.lock();
    let arena = &mut talc.source;
    match base.checked_add(size).and_then(|end| Some((end, end.checked_add(RESERVE)?))) {
        Some((end, with_reserve)) if with_reserve <= arena.high => {
            arena.low = arena.low.max(end);
            true
        }
        _ => false,
    }
}

/// The size of the last allocation the heap could not serve (0: none). A panic that follows
/// one is the allocation-failure handler's: the workload ran out of memory, which the panic
/// handler reports as the workload's end, not the kernel's ([`failed_allocation`]).
static FAILED_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

/// The size of the last allocation this address space's heap refused, if any.
pub fn failed_allocation() -> Option<usize> {
    Some(FAILED_ALLOCATION.load(Ordering::Relaxed)).filter(|&size| size != 0)
}

struct Allocator;

// SAFETY: every allocation comes from the one talc heap of this address space and goes back to
// it; talc only ever holds memory mapped read-write for this address space alone.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: per the caller.
        let allocated = unsafe { HEAP.lock().allocate(layout) };
        allocated.map_or_else(
            || {
                FAILED_ALLOCATION.store(layout.size().max(1), Ordering::Relaxed);
                null_mut()
            },
            NonNull::as_ptr,
        )
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if owned(ptr) {
            // SAFETY: per the caller, `ptr` was allocated here with `layout`.
            unsafe { HEAP.lock().deallocate(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated here with `layout` and `new_size` is valid for
        // `layout.align()` (the caller's contract); the new block is disjoint from the old.
        unsafe {
            if owned(ptr) && HEAP.lock().try_realloc_in_place(ptr, layout, new_size) {
                return ptr;
            }
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
