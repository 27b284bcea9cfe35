//! Linear memories for wasmtime (its `MemoryCreator`), each in a guarded span of the workload's
//! address space (`wasmcell_abi::memory_map::guarded_memory`). wasmtime reserves 4 GiB and a
//! guard region after it for every memory, so compiled code leaves out bounds checks; only the
//! pages a memory has are mapped, so an access past its end faults and becomes a trap
//! (`crate::trap`).
//!
//! The pages are the workload heap's. The first memory takes the heap's arena (`crate::heap`):
//! RAM nobody has written, zero without a zeroing pass, growing in place up to the budget;
//! later memories take zeroed chunks from the allocator as they grow. The guest cannot write
//! page tables: the VMM maps each new range at the guest's request (`MAP_MEMORY`, one exit per
//! growth). Nothing is ever unmapped: a span's pages stay its own until the workload ends, even
//! if wasmtime drops its memory first (an unmapped page could live on in KVM's shadow page
//! tables and reach whatever the heap put there next). A dropped memory's span goes back to a
//! free list with its pages, and the next memory created takes it, zeroed: that is how
//! `wasmcell serve` makes an instance per request within [`MAX_GUARDED_MEMORIES`] spans. The
//! one difference from a fresh span: pages an earlier memory grew into stay mapped (zeroed),
//! so an access past the new memory's end but below what the span once held reads zeros
//! instead of trapping (documented in docs/wasi.md).

use crate::{control, heap};
use alloc::alloc::{alloc_zeroed, Layout};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use wasmcell_abi::control::MapRequest;
use wasmcell_abi::memory_map::{
    guarded_memory, GUARDED_MEMORY_MAX, GUARDED_MEMORY_SPAN, MAX_GUARDED_MEMORIES, PAGE_SIZE,
};
use wasmtime::{bail, LinearMemory, MemoryCreator, MemoryType};

const PAGE: usize = PAGE_SIZE as usize;

/// The next guarded span to hand out in this address space.
static NEXT_SPAN: AtomicU32 = AtomicU32::new(0);

/// Spans whose memories were dropped, with their pages (still mapped).
static FREE_SPANS: spinning_top::Spinlock<Vec<FreeSpan>> = spinning_top::Spinlock::new(Vec::new());

struct FreeSpan {
    base: usize,
    mapped: usize,
    backing: Backing,
}

pub struct GuestMemoryCreator;

// SAFETY: every memory returned is zero-filled, at least `minimum` bytes, at the start of a
// span of its own with `reserved` bytes (at most `GUARDED_MEMORY_MAX`) and the guard after them
// inside the span; it never moves and its pages stay mapped until the workload ends.
unsafe impl MemoryCreator for GuestMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        reserved: Option<usize>,
        guard: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let capacity = reserved.unwrap_or(GUARDED_MEMORY_MAX as usize);
        if capacity as u64 > GUARDED_MEMORY_MAX || (capacity as u64).saturating_add(guard as u64) > GUARDED_MEMORY_SPAN
        {
            return Err(alloc::format!("a reservation of {capacity:#x} bytes and a guard of {guard:#x} do not fit"));
        }
        if let Some(free) = FREE_SPANS.lock().pop() {
            // SAFETY: `[base, base + mapped)` is mapped read-write to pages this span owns, and
            // nothing refers to them since their memory was dropped.
            unsafe { core::ptr::write_bytes(free.base as *mut u8, 0, free.mapped) };
            let mut memory =
                GuardedMemory { base: free.base, size: 0, mapped: free.mapped, capacity, backing: free.backing };
            memory.map_to(minimum).map_err(|()| {
                alloc::format!("the module's initial memory ({} KiB) does not fit in the VM's memory", minimum / 1024)
            })?;
            memory.size = minimum;
            return Ok(Box::new(memory));
        }
        let span = NEXT_SPAN.fetch_add(1, Ordering::Relaxed);
        if span >= MAX_GUARDED_MEMORIES {
            return Err(alloc::format!("a workload has at most {MAX_GUARDED_MEMORIES} linear memories"));
        }
        let backing = match heap::claim_linear_memory(minimum) {
            Some(base) => Backing::Arena { base },
            None => Backing::Chunks,
        };
        let mut memory = GuardedMemory { base: guarded_memory(span) as usize, size: 0, mapped: 0, capacity, backing };
        memory.map_to(minimum).map_err(|()| {
            alloc::format!("the module's initial memory ({} KiB) does not fit in the VM's memory", minimum / 1024)
        })?;
        memory.size = minimum;
        Ok(Box::new(memory))
    }
}

/// Where a memory's pages come from.
enum Backing {
    /// The heap's arena from `base` on, growing in place.
    Arena { base: usize },
    /// A zeroed allocation per growth.
    Chunks,
}

struct GuardedMemory {
    /// The start of its span.
    base: usize,
    size: usize,
    /// Bytes mapped from `base` (`size` rounded up to a page).
    mapped: usize,
    capacity: usize,
    backing: Backing,
}

impl GuardedMemory {
    /// Maps pages until `size` bytes are: new pages from the backing, mapped by the VMM.
    fn map_to(&mut self, size: usize) -> Result<(), ()> {
        let end = size.checked_next_multiple_of(PAGE).ok_or(())?;
        if end <= self.mapped {
            return Ok(());
        }
        if end > self.capacity {
            return Err(());
        }
        let len = end - self.mapped;
        let phys = match self.backing {
            Backing::Arena { base } => {
                if !heap::grow_linear_memory(base, end) {
                    return Err(());
                }
                base + self.mapped
            }
            Backing::Chunks => {
                let layout = Layout::from_size_align(len, PAGE).map_err(|_| ())?;
                // SAFETY: `len` is non-zero (`end > mapped`).
                let chunk = unsafe { alloc_zeroed(layout) };
                if chunk.is_null() {
                    return Err(());
                }
                chunk as usize
            }
        };
        // Heap addresses are identity-mapped: the pointer is the guest-physical address.
        control::map_memory(MapRequest { virt: (self.base + self.mapped) as u64, len: len as u64, phys: phys as u64 });
        self.mapped = end;
        Ok(())
    }
}

impl Drop for GuardedMemory {
    fn drop(&mut self) {
        let backing = core::mem::replace(&mut self.backing, Backing::Chunks);
        FREE_SPANS.lock().push(FreeSpan { base: self.base, mapped: self.mapped, backing });
    }
}

// SAFETY: `[base, base + size)` is mapped read-write to zeroed heap pages owned by this memory
// alone, `[base + capacity, base + capacity + guard)` is never mapped, and growth maps more
// pages in place: the base never moves.
unsafe impl LinearMemory for GuardedMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if self.map_to(new_size).is_err() {
            bail!("the VM's memory budget is exhausted");
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base as *mut u8
    }
}
