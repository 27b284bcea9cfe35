//! Where the variable parts of the guest go: base RAM's kernel heap after the guest image, and
//! inside each workload's window its module, inputs, stack and heap.
//!
//! ```text
//! base RAM:  fixed memory map ─ image ─ kernel heap ─ end of base RAM
//! window:    payload (r-x) ─ blob (r--) ─ files (r--) ─ kernel data (rw) ─ guard ─ stack (rw)
//!            ─ heap (rw) ─ tables
//! ```
//!
//! The kernel data part is the workload's private copy of the guest image's writable segments,
//! mapped at the image's addresses in the workload's address space.
//!
//! A window's stack ends on a 2 MiB boundary, so its heap — where the linear memory grows —
//! starts on one and is mapped with large pages. Its last [`window_tables`] bytes hold the page
//! tables of the workload's address space, not mapped for the guest.

use std::ops::Range;
use wasmcell_abi::memory_map::{LARGE_PAGE_SIZE, MAX_GUARDED_MEMORIES, PAGE_SIZE, WINDOW_MAX};

/// The least heap the kernel or a workload is given.
pub const MIN_HEAP: u64 = 1 << 20;
/// A workload's stack: wasm may use `wasmcell_engine::MAX_WASM_STACK` of it, the runtime and
/// WASI the rest.
pub const WORKLOAD_STACK: u64 = 2 << 20;
/// The part of a window's page-table pool for its identity map: the workload's own root, copies
/// of the base's tables on the way to its vCPU area and to the kernel's data, the tables of its
/// console page, a PDPT, a PD per GiB and the page tables of the parts' 4 KiB edges take at most
/// 24 pages.
const IDENTITY_TABLES: u64 = 128 << 10;

/// The page-table pool of a window of `size` bytes: its identity map's, plus what its guarded
/// memories can need when they map all of its heap with 4 KiB pages (a page table per 2 MiB and
/// a directory per GiB, one more of each per memory for its ends, and one directory-pointer
/// table: every guarded memory is in the same 512 GiB).
pub fn window_tables(size: u64) -> u64 {
    let guarded = size / LARGE_PAGE_SIZE + size / (1 << 30) + 2 * u64::from(MAX_GUARDED_MEMORIES) + 1;
    IDENTITY_TABLES + guarded * PAGE_SIZE
}

/// Errors while placing things in RAM.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Base RAM too small for the image and a kernel heap.
    #[error("Memory size {ram_mib} MiB is too small: the guest needs at least {needed_mib} MiB")]
    BaseTooSmall { ram_mib: u64, needed_mib: u64 },
    /// A workload's memory too small for its module, inputs, stack and a heap.
    #[error("Memory size {ram_mib} MiB is too small: the guest needs at least {needed_mib} MiB for this workload")]
    TooSmall { ram_mib: u64, needed_mib: u64 },
}

/// Base RAM: the kernel heap runs from the image's end to the end of base RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseLayout {
    pub ram_size: u64,
    pub heap: Range<u64>,
}

impl BaseLayout {
    pub fn new(ram_size: u64, image_end: u64) -> Result<Self, LayoutError> {
        let needed = image_end.saturating_add(MIN_HEAP);
        if needed > ram_size {
            return Err(LayoutError::BaseTooSmall { ram_mib: ram_size >> 20, needed_mib: needed.div_ceil(1 << 20) });
        }
        Ok(Self { ram_size, heap: image_end..ram_size })
    }
}

/// Byte sizes of what a workload places in its window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadSizes {
    /// The workload blob (arguments, environment).
    pub blob: u64,
    /// The files archive; 0 for none.
    pub files: u64,
    /// The precompiled module or component.
    pub payload: u64,
    /// The private copy of the guest image's writable segments.
    pub kernel_data: u64,
}

/// A workload's window: its parts, page aligned, from `base` to `base + size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowLayout {
    pub base: u64,
    pub size: u64,
    /// The precompiled module or component.
    pub payload: Range<u64>,
    /// The workload blob.
    pub blob: Range<u64>,
    /// The preopened directories' archive, if the workload has any.
    pub files: Option<Range<u64>>,
    /// The workload's copy of the guest image's writable segments (page aligned).
    pub kernel_data: Range<u64>,
    /// The stack (an unmapped guard page below it).
    pub stack: Range<u64>,
    /// The workload's heap, up to the page tables.
    pub heap: Range<u64>,
    /// The pool of the workload address space's page tables, at the end of the window.
    pub tables: Range<u64>,
}

impl WindowLayout {
    /// Lays out a window of `size` bytes at `base` (page aligned).
    pub fn new(base: u64, size: u64, sizes: WorkloadSizes) -> Result<Self, LayoutError> {
        let pages = |len: u64| len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let inputs = pages(sizes.payload)
            .saturating_add(pages(sizes.blob))
            .saturating_add(pages(sizes.files))
            .saturating_add(pages(sizes.kernel_data));
        let stack_top = inputs.saturating_add(PAGE_SIZE + WORKLOAD_STACK).next_multiple_of(LARGE_PAGE_SIZE);
        let tables = window_tables(size);
        let needed = stack_top.saturating_add(MIN_HEAP).saturating_add(tables);
        if needed > size || size > WINDOW_MAX {
            return Err(LayoutError::TooSmall { ram_mib: size >> 20, needed_mib: needed.div_ceil(1 << 20) });
        }
        let payload = base..base + sizes.payload;
        let blob_start = base + pages(sizes.payload);
        let files_start = blob_start + pages(sizes.blob);
        let data_start = files_start + pages(sizes.files);
        Ok(Self {
            base,
            size,
            payload,
            blob: blob_start..blob_start + sizes.blob,
            files: (sizes.files > 0).then_some(files_start..files_start + sizes.files),
            kernel_data: data_start..data_start + pages(sizes.kernel_data),
            stack: base + stack_top - WORKLOAD_STACK..base + stack_top,
            heap: base + stack_top..base + size - tables,
            tables: base + size - tables..base + size,
        })
    }

    /// The whole window.
    #[cfg(test)]
    pub fn range(&self) -> Range<u64> {
        self.base..self.base + self.size
    }

    /// Where a big linear memory grows (the guest puts it at the bottom of the heap and its
    /// allocator at the top): worth backing with host huge pages.
    pub fn huge_page_range(&self) -> Range<u64> {
        let start = self.heap.start.saturating_add(SMALL_PAGE_EDGE);
        let end = self.heap.end.saturating_sub(SMALL_PAGE_EDGE);
        start..end.max(start)
    }
}

/// Heap left at 4 KiB host pages at each end: the guest's allocator works at the top, and a
/// small linear memory at the bottom, where 2 MiB host pages would only inflate the VMM's RSS.
const SMALL_PAGE_EDGE: u64 = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use wasmcell_abi::memory_map::window_base;

    #[test]
    fn the_kernel_heap_runs_to_the_end_of_base_ram() {
        let layout = BaseLayout::new(8 << 20, 0x50_0000).unwrap();
        assert_eq!(layout.heap, 0x50_0000..8 << 20);
        let err = BaseLayout::new(8 << 20, (8 << 20) - 4096).unwrap_err();
        assert_eq!(err.to_string(), "Memory size 8 MiB is too small: the guest needs at least 9 MiB");
    }

    #[test]
    fn a_window_holds_inputs_then_stack_then_heap() {
        let base = window_base(2);
        let sizes = WorkloadSizes { blob: 100, files: 5000, payload: 0x1_2345, kernel_data: 0x1100 };
        let w = WindowLayout::new(base, 16 << 20, sizes).unwrap();
        assert_eq!(w.payload, base..base + 0x1_2345);
        assert_eq!(w.blob.start, base + 0x1_3000);
        assert_eq!((w.blob.end - w.blob.start), 100);
        let files = w.files.clone().unwrap();
        assert_eq!((files.start, files.end - files.start), (base + 0x1_4000, 5000));
        assert_eq!(w.kernel_data, base + 0x1_6000..base + 0x1_8000, "whole pages after the files");
        assert!(w.kernel_data.end + PAGE_SIZE <= w.stack.start, "a guard page between the inputs and the stack");
        assert_eq!(w.stack.end - w.stack.start, WORKLOAD_STACK);
        assert_eq!(w.stack.end % LARGE_PAGE_SIZE, 0);
        assert_eq!(w.heap, w.stack.end..base + (16 << 20) - window_tables(16 << 20));
        assert_eq!(w.tables, w.heap.end..base + (16 << 20));
        assert_eq!(w.range(), base..base + (16 << 20));
        assert_eq!(WindowLayout::new(base, 16 << 20, WorkloadSizes { files: 0, ..sizes }).unwrap().files, None);
    }

    #[test]
    fn the_table_pool_grows_with_the_window() {
        // 16 MiB: 8 page tables, no whole GiB, 33 for the memories' ends and the PDPT.
        assert_eq!(window_tables(16 << 20), (128 << 10) + (8 + 33) * PAGE_SIZE);
        // 3 GiB: 1536 page tables and 3 directories.
        assert_eq!(window_tables(3 << 30), (128 << 10) + (1536 + 3 + 33) * PAGE_SIZE);
    }

    #[test]
    fn huge_pages_only_for_the_middle_of_a_big_heap() {
        let sizes = WorkloadSizes { blob: 100, files: 0, payload: 1 << 20, kernel_data: 4096 };
        let w = WindowLayout::new(window_base(0), 256 << 20, sizes).unwrap();
        let range = w.huge_page_range();
        assert_eq!(range.start, w.heap.start + (8 << 20));
        assert_eq!(range.end, w.heap.end - (8 << 20));
        assert!(WindowLayout::new(window_base(0), 16 << 20, sizes).unwrap().huge_page_range().is_empty());
    }

    #[test]
    fn too_little_memory_names_what_is_needed() {
        let sizes = WorkloadSizes { blob: 100, files: 0, payload: 6 << 20, kernel_data: 4096 };
        let err = WindowLayout::new(window_base(0), 8 << 20, sizes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Memory size 8 MiB is too small: the guest needs at least 12 MiB for this workload"
        );
        assert!(WindowLayout::new(window_base(0), 12 << 20, sizes).is_ok());
    }
}
