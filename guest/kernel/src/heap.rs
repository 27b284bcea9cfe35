//! The guest's allocator: one kernel heap for the VM, one heap per workload in its window.
//!
//! - The kernel heap (the boot info's range in base RAM) holds what vCPUs share: everything
//!   allocated while a kernel-wide lock is held (wasmtime's code registry and the like are only
//!   changed under their locks) and everything a vCPU without a workload allocates.
//! - A workload's heap ([`enter_workload`]) holds the rest of what its vCPU allocates: its
//!   engine, module, instance, WASI state and written files. It vanishes with the window when
//!   the workload ends, whatever is still allocated, so a workload stopped mid-run leaks nothing
//!   into the VM. Nothing shared may point into it, hence the lock rule above.
//!
//! A workload heap is split like this: talc starts with the top [`TALC_FIRST`] bytes, the rest
//! is an arena whose bottom is the module's linear memory ([`claim_linear_memory`],
//! [`grow_linear_memory`]) and whose top talc claims in chunks when it runs out
//! ([`Arena::acquire`]); they meet where the workload's budget ends. Nothing writes arena
//! memory before it is handed out and a new window is all zeros, so the linear memory needs no
//! zeroing pass and costs only the pages the module touches — on nested KVM every first touch
//! of a page is a shadow-paging exit.

use crate::sync::CountedSpinlock;
use crate::vcpu;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use spinning_top::RawSpinlock;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::lock_api::Mutex;
use talc::source::{Manual, Source};
use talc::{DefaultBinning, TalcLock};
use wasmcell_abi::memory_map::MAX_VCPUS;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

static KERNEL_HEAP: TalcLock<CountedSpinlock, Manual> = TalcLock::new(Manual);
static KERNEL_RANGE: Range = Range::EMPTY;

/// What talc gets first in a workload heap: enough for wasmtime's engine, module and instance
/// (about 1 MiB for a Rust program) with room to spare.
const TALC_FIRST: usize = 4 << 20;
/// Talc claims arena memory in multiples of this (a huge page on the host).
const CHUNK: usize = 2 << 20;
/// Left free between the linear memory and talc, so the runtime can still allocate after
/// `memory.grow` has taken everything it could.
const RESERVE: usize = 1 << 20;

/// An address range read without a lock (ownership checks on free).
struct Range {
    start: AtomicUsize,
    end: AtomicUsize,
}

impl Range {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Self { start: AtomicUsize::new(0), end: AtomicUsize::new(0) };

    fn contains(&self, ptr: *mut u8) -> bool {
        (self.start.load(Ordering::Acquire)..self.end.load(Ordering::Acquire)).contains(&(ptr as usize))
    }

    fn set(&self, start: usize, end: usize) {
        self.end.store(0, Ordering::Release);
        self.start.store(start, Ordering::Release);
        self.end.store(end, Ordering::Release);
    }
}

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

/// A workload's heap, by vCPU index.
struct WorkloadHeap {
    talc: Mutex<RawSpinlock, Talc<Arena, DefaultBinning>>,
    range: Range,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_WORKLOAD: WorkloadHeap =
    WorkloadHeap { talc: Mutex::new(Talc::new(Arena { unclaimed_base: 0, low: 0, high: 0 })), range: Range::EMPTY };
static WORKLOAD_HEAPS: [WorkloadHeap; MAX_VCPUS as usize] = [NO_WORKLOAD; MAX_VCPUS as usize];

/// Hands `[start, end)` to the kernel heap (once, by the first vCPU). Panics if it is too small.
pub fn init_kernel(start: u64, end: u64) {
    let (start, end) = (start as usize, end as usize);
    // SAFETY: the VMM maps `[heap_start, heap_end)` user read-write for this guest alone and
    // nothing else in the guest uses it; it is claimed once, at boot.
    if unsafe { KERNEL_HEAP.lock().claim(start as *mut u8, end.saturating_sub(start)) }.is_none() {
        panic!("kernel heap [{start:#x}, {end:#x}) is too small");
    }
    KERNEL_RANGE.set(start, end);
}

/// Makes `[start, end)` of this vCPU's window its workload's heap. Panics if it is too small.
pub fn enter_workload(start: u64, end: u64) {
    let (start, end) = (start as usize, end as usize);
    let heap = &WORKLOAD_HEAPS[vcpu::index()];
    // A workload that ran on this vCPU before may have been stopped holding the lock; its heap
    // went with its window, and nothing else ever takes this vCPU's lock.
    if heap.talc.is_locked() {
        // SAFETY: no one holds the guard: the only vCPU that used this heap is this one, and it
        // is here, at the start of a new workload.
        unsafe { heap.talc.force_unlock() };
    }
    let split = (end.saturating_sub(TALC_FIRST) / CHUNK * CHUNK).max(start);
    let mut talc = heap.talc.lock();
    *talc = Talc::new(Arena { unclaimed_base: if split > start { start } else { 0 }, low: start, high: split });
    // SAFETY: the VMM maps the window's heap user read-write for this workload alone; `[split,
    // end)` goes to talc now and the rest only through `Arena::acquire` or as the linear memory.
    if unsafe { talc.claim(split as *mut u8, end.saturating_sub(split)) }.is_none() {
        panic!("workload heap [{start:#x}, {end:#x}) is too small");
    }
    heap.range.set(start, end);
}

/// This vCPU's workload heap, if it has one.
fn own_heap() -> Option<&'static WorkloadHeap> {
    let heap = WORKLOAD_HEAPS.get(vcpu::index())?;
    (heap.range.end.load(Ordering::Relaxed) != 0).then_some(heap)
}

/// Takes the arena for a linear memory of `size` bytes: its base address, never written, all
/// zeros. `None` if the arena is already taken, absent, or too small.
pub fn claim_linear_memory(size: usize) -> Option<usize> {
    let mut talc = own_heap()?.talc.lock();
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
    let Some(heap) = own_heap() else { return false };
    let mut talc = heap.talc.lock();
    let arena = &mut talc.source;
    match base.checked_add(size).and_then(|end| Some((end, end.checked_add(RESERVE)?))) {
        Some((end, with_reserve)) if with_reserve <= arena.high => {
            arena.low = arena.low.max(end);
            true
        }
        _ => false,
    }
}

/// Which heap serves this vCPU's allocations now.
enum Heap {
    Kernel,
    Workload(&'static WorkloadHeap),
}

impl Heap {
    fn for_new_allocation() -> Self {
        match own_heap() {
            Some(heap) if !vcpu::holds_locks() => Heap::Workload(heap),
            _ => Heap::Kernel,
        }
    }

    fn owning(ptr: *mut u8) -> Option<Self> {
        if KERNEL_RANGE.contains(ptr) {
            return Some(Heap::Kernel);
        }
        // Usually this vCPU's own heap; another's only if an object crossed workloads.
        let own = own_heap().filter(|h| h.range.contains(ptr));
        own.or_else(|| WORKLOAD_HEAPS.iter().find(|h| h.range.contains(ptr))).map(Heap::Workload)
    }

    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Heap::Kernel, Heap::Kernel) => true,
            (Heap::Workload(a), Heap::Workload(b)) => core::ptr::eq(*a, *b),
            _ => false,
        }
    }

    /// # Safety
    /// As `GlobalAlloc::alloc`.
    unsafe fn allocate(&self, layout: Layout) -> *mut u8 {
        // SAFETY: per the caller.
        let ptr = unsafe {
            match self {
                Heap::Kernel => KERNEL_HEAP.lock().allocate(layout),
                Heap::Workload(heap) => heap.talc.lock().allocate(layout),
            }
        };
        ptr.map_or(null_mut(), NonNull::as_ptr)
    }

    /// # Safety
    /// `ptr` was allocated from this heap with `layout`.
    unsafe fn deallocate(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: per the caller.
        unsafe {
            match self {
                Heap::Kernel => KERNEL_HEAP.lock().deallocate(ptr, layout),
                Heap::Workload(heap) => heap.talc.lock().deallocate(ptr, layout),
            }
        }
    }

    /// # Safety
    /// `ptr` was allocated from this heap with `layout`; `new_size` is a valid size for it.
    unsafe fn realloc_in_place(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> bool {
        // SAFETY: per the caller.
        unsafe {
            match self {
                Heap::Kernel => KERNEL_HEAP.lock().try_realloc_in_place(ptr, layout, new_size),
                Heap::Workload(heap) => heap.talc.lock().try_realloc_in_place(ptr, layout, new_size),
            }
        }
    }
}

struct Allocator;

// SAFETY: every allocation comes from one of the talc heaps and is returned to the heap whose
// range holds it; heaps never overlap (the kernel heap is in base RAM, each workload's in its own
// window).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: per the caller.
        unsafe { Heap::for_new_allocation().allocate(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // A pointer no heap owns can only be one of a workload that is gone: leave it.
        if let Some(heap) = Heap::owning(ptr) {
            // SAFETY: the heap whose range holds `ptr` allocated it, with `layout`.
            unsafe { heap.deallocate(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let target = Heap::for_new_allocation();
        let owner = Heap::owning(ptr);
        // SAFETY: `ptr` was allocated by `owner` with `layout` (the caller's contract), and
        // `new_size` is valid for `layout.align()` (also the caller's).
        unsafe {
            if owner.as_ref().is_some_and(|o| o.same(&target)) && target.realloc_in_place(ptr, layout, new_size) {
                return ptr;
            }
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = target.allocate(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                if let Some(owner) = owner {
                    owner.deallocate(ptr, layout);
                }
            }
            new
        }
    }
}
