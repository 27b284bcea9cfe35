//! Linear memories for wasmtime (its `MemoryCreator`). The module's memory is the heap's arena
//! (`crate::heap`): RAM nobody has written, so it starts zeroed without a zeroing pass, grows in
//! place up to the VM's budget and never moves. When the arena is gone (a second memory) or
//! too small, a memory is an ordinary zeroed heap allocation that moves when it grows.

use crate::heap;
use alloc::alloc::{alloc_zeroed, dealloc, realloc, Layout};
use alloc::boxed::Box;
use alloc::string::String;
use wasmtime::{bail, LinearMemory, MemoryCreator, MemoryType};

/// Alignment of heap-allocated memories (wasmtime wants page-aligned bases).
const ALIGN: usize = 4096;

pub struct GuestMemoryCreator;

// SAFETY: every memory returned is zero-filled, at least `minimum` bytes, exclusively owned by
// the returned object, and stays valid until it is dropped.
unsafe impl MemoryCreator for GuestMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        _reserved_size_in_bytes: Option<usize>,
        _guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if let Some(base) = heap::claim_linear_memory(minimum) {
            return Ok(Box::new(ArenaMemory { base, size: minimum }));
        }
        HeapMemory::new(minimum).map(|m| Box::new(m) as Box<dyn LinearMemory>).ok_or_else(|| {
            alloc::format!("the module's initial memory ({} KiB) does not fit in the VM's memory", minimum / 1024)
        })
    }
}

/// The linear memory in the heap's arena.
struct ArenaMemory {
    base: usize,
    size: usize,
}

// SAFETY: the arena range `[base, base + size)` belongs to this memory alone (the heap hands it
// out once) and `grow_to` extends it in place, so the base never moves.
unsafe impl LinearMemory for ArenaMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.size
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if !heap::grow_linear_memory(self.base, new_size) {
            bail!("the VM's memory budget is exhausted");
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base as *mut u8
    }
}

/// A linear memory allocated from the heap, reallocated (and so moved) to grow.
struct HeapMemory {
    ptr: *mut u8,
    size: usize,
}

// SAFETY: `ptr` is owned by this memory alone; wasmtime serialises all access to a memory.
unsafe impl Send for HeapMemory {}
// SAFETY: as above.
unsafe impl Sync for HeapMemory {}

impl HeapMemory {
    fn layout(size: usize) -> Option<Layout> {
        Layout::from_size_align(size.max(1), ALIGN).ok()
    }

    fn new(size: usize) -> Option<Self> {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(Self::layout(size)?) };
        (!ptr.is_null()).then_some(Self { ptr, size })
    }
}

// SAFETY: `[ptr, ptr + size)` is a live, zero-initialised allocation owned by this memory;
// `byte_capacity` equals `byte_size`, so wasmtime expects any growth to possibly move it.
unsafe impl LinearMemory for HeapMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.size
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        let (Some(old), Some(_)) = (Self::layout(self.size), Self::layout(new_size)) else {
            bail!("memory size overflows");
        };
        // SAFETY: `ptr` was allocated with `old`; the new size is non-zero and, rounded to the
        // alignment, does not overflow (checked by `layout`).
        let ptr = unsafe { realloc(self.ptr, old, new_size.max(1)) };
        if ptr.is_null() {
            bail!("the VM's memory budget is exhausted");
        }
        // SAFETY: the realloc'd block is `new_size` bytes; the tail past the old size is fresh.
        unsafe { ptr.add(self.size).write_bytes(0, new_size.saturating_sub(self.size)) };
        self.ptr = ptr;
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for HeapMemory {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.size) {
            // SAFETY: allocated with this layout (size as last grown) and not freed before.
            unsafe { dealloc(self.ptr, layout) };
        }
    }
}
