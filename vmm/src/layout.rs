//! Where the variable parts of the guest go in RAM: after the fixed memory map and the guest
//! image comes the heap; the workload description, the preopened files and the precompiled
//! module sit at the top of RAM, page aligned, so the heap is one contiguous range in between.
//!
//! ```text
//! image end ─ heap ─ workload blob (r--) ─ files (r--) ─ payload (r-x) ─ end of RAM
//! ```

use std::ops::Range;
use wasmcell_abi::memory_map::PAGE_SIZE;

/// The least heap the guest is given.
pub const MIN_HEAP: u64 = 1 << 20;

/// Errors while placing things in RAM.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// RAM too small for the image, the workload and a heap.
    #[error("Memory size {ram_mib} MiB is too small: the guest needs at least {needed_mib} MiB for this workload")]
    TooSmall { ram_mib: u64, needed_mib: u64 },
}

/// The guest's variable regions, all page aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestLayout {
    pub ram_size: u64,
    pub heap: Range<u64>,
    /// The workload blob, if there is a workload.
    pub workload: Option<Range<u64>>,
    /// The preopened directories' archive, if the workload has any.
    pub files: Option<Range<u64>>,
    /// The precompiled module, if there is a workload.
    pub payload: Option<Range<u64>>,
}

/// Byte sizes of what a workload places at the top of RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadSizes {
    /// The workload blob (arguments, environment).
    pub blob: u64,
    /// The files archive; 0 for none.
    pub files: u64,
    /// The precompiled module.
    pub payload: u64,
}

impl GuestLayout {
    /// Places a heap after `image_end` and, if there is a workload, its blob, files and payload
    /// at the top of RAM.
    pub fn new(ram_size: u64, image_end: u64, workload: Option<WorkloadSizes>) -> Result<Self, LayoutError> {
        let pages = |len: u64| len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let top_len =
            workload.map_or(0, |w| pages(w.blob).saturating_add(pages(w.files)).saturating_add(pages(w.payload)));
        let needed = image_end.saturating_add(MIN_HEAP).saturating_add(top_len);
        if needed > ram_size {
            return Err(LayoutError::TooSmall { ram_mib: ram_size >> 20, needed_mib: needed.div_ceil(1 << 20) });
        }
        let Some(sizes) = workload else {
            return Ok(Self { ram_size, heap: image_end..ram_size, workload: None, files: None, payload: None });
        };
        let payload_start = ram_size - pages(sizes.payload);
        let files_start = payload_start - pages(sizes.files);
        let blob_start = files_start - pages(sizes.blob);
        Ok(Self {
            ram_size,
            heap: image_end..blob_start,
            workload: Some(blob_start..blob_start + sizes.blob),
            files: (sizes.files > 0).then_some(files_start..files_start + sizes.files),
            payload: Some(payload_start..payload_start + sizes.payload),
        })
    }
}

/// Heap left at 4 KiB pages at each end: the guest's allocator works at the top, and a small
/// linear memory at the bottom, where 2 MiB host pages would only inflate the VMM's RSS.
const SMALL_PAGE_EDGE: u64 = 8 << 20;

impl GuestLayout {
    /// Where a big linear memory grows (the guest puts it at the bottom of the heap and its
    /// allocator at the top): worth backing with host huge pages. Empty without a workload.
    pub fn huge_page_range(&self) -> Range<u64> {
        if self.payload.is_none() {
            return 0..0;
        }
        let start = self.heap.start.saturating_add(SMALL_PAGE_EDGE);
        let end = self.heap.end.saturating_sub(SMALL_PAGE_EDGE);
        start..end.max(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_workload_the_heap_runs_to_the_end_of_ram() {
        let layout = GuestLayout::new(8 << 20, 0x50_0000, None).unwrap();
        assert_eq!(layout.heap, 0x50_0000..8 << 20);
        assert_eq!((layout.workload, layout.files, layout.payload), (None, None, None));
    }

    #[test]
    fn workload_and_payload_sit_page_aligned_at_the_top() {
        let sizes = WorkloadSizes { blob: 100, files: 5000, payload: 0x1_2345 };
        let layout = GuestLayout::new(16 << 20, 0x50_0000, Some(sizes)).unwrap();
        let payload = layout.payload.clone().unwrap();
        let files = layout.files.clone().unwrap();
        let blob = layout.workload.clone().unwrap();
        assert_eq!(payload.start % PAGE_SIZE, 0);
        assert_eq!(payload.end, payload.start + 0x1_2345);
        assert!(payload.end <= 16 << 20 && (16 << 20) - payload.end < PAGE_SIZE);
        assert_eq!((files.start % PAGE_SIZE, files.end - files.start), (0, 5000));
        assert!(files.end <= payload.start);
        assert_eq!(blob.start % PAGE_SIZE, 0);
        assert!(blob.end <= files.start);
        assert_eq!(layout.heap, 0x50_0000..blob.start);
    }

    #[test]
    fn huge_pages_only_for_the_middle_of_a_workload_heap() {
        assert!(GuestLayout::new(64 << 20, 0x50_0000, None).unwrap().huge_page_range().is_empty());
        let sizes = WorkloadSizes { blob: 100, files: 0, payload: 1 << 20 };
        let layout = GuestLayout::new(256 << 20, 0x50_0000, Some(sizes)).unwrap();
        let range = layout.huge_page_range();
        assert_eq!(range.start, layout.heap.start + (8 << 20));
        assert_eq!(range.end, layout.heap.end - (8 << 20));
        assert!(GuestLayout::new(16 << 20, 0x50_0000, Some(sizes)).unwrap().huge_page_range().is_empty());
    }

    #[test]
    fn too_little_ram_names_what_is_needed() {
        let sizes = WorkloadSizes { blob: 100, files: 0, payload: 6 << 20 };
        let err = GuestLayout::new(8 << 20, 0x50_0000, Some(sizes)).unwrap_err();
        let without_files = GuestLayout::new(16 << 20, 0x50_0000, Some(sizes)).unwrap();
        assert_eq!(without_files.files, None);
        assert_eq!(
            err.to_string(),
            "Memory size 8 MiB is too small: the guest needs at least 13 MiB for this workload"
        );
        assert!(GuestLayout::new(8 << 20, (8 << 20) - 4096, None).is_err());
    }
}
