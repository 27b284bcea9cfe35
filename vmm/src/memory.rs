//! Guest RAM: anonymous, `MAP_NORESERVE` memory from vm-memory, registered with KVM — base RAM
//! as slot 0 for the VM's life, each workload window as a slot of its own while it lives. Pages
//! cost nothing until touched; the boot path touches only a few dozen, and a window's pages go
//! back to the host when the window is removed.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use std::sync::Arc;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap, MmapRegion};

/// Guest memory as the VMM uses it: base RAM, plus the window of the workload it serves.
pub type GuestMemory = GuestMemoryMmap<()>;
/// One region of it.
pub type Region = GuestRegionMmap<()>;

/// Errors while creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The host could not map the memory.
    #[error("Cannot allocate guest memory")]
    Allocate(#[source] vm_memory::mmap::FromRangesError),
    /// KVM refused the memory slot.
    #[error("Cannot register guest memory with KVM")]
    Register(#[source] kvm_ioctls::Error),
    /// The regions overlap (a bug in the window placement).
    #[error("Cannot combine guest memory regions")]
    Combine(#[source] vm_memory::GuestRegionCollectionError),
    /// A device view asked for memory outside its region (a bug in the window layout).
    #[error("Guest range {0:#x}..{1:#x} is outside its memory region")]
    OutsideRegion(u64, u64),
    /// vm-memory refused a view of part of a region.
    #[error("Cannot make a view of guest memory: {0}")]
    SubRegion(String),
}

/// Maps `size` bytes at guest-physical `base` and registers them with KVM as `slot`.
pub fn create_region(vm: &VmFd, slot: u32, base: u64, size: u64) -> Result<Arc<Region>, MemoryError> {
    let region = Region::from_range(GuestAddress(base), size as usize, None).map_err(MemoryError::Allocate)?;
    set_slot(vm, slot, &region, region.len())?;
    Ok(Arc::new(region))
}

/// Unregisters slot `slot` (which holds `region`); the region's memory goes when its last
/// reference does.
pub fn remove_region(vm: &VmFd, slot: u32, region: &Region) -> Result<(), MemoryError> {
    set_slot(vm, slot, region, 0)
}

fn set_slot(vm: &VmFd, slot: u32, region: &Region, size: u64) -> Result<(), MemoryError> {
    let slot = kvm_userspace_memory_region {
        slot,
        flags: 0,
        guest_phys_addr: region.start_addr().0,
        memory_size: size,
        userspace_addr: region.as_ptr() as u64,
    };
    // SAFETY: the region's host mapping lives at least as long as the slot: every caller keeps
    // the `Arc<Region>` until it has removed the slot (size 0), and a VM's slots die with its
    // fd, which the VM drops before its memory.
    unsafe { vm.set_user_memory_region(slot) }.map_err(MemoryError::Register)
}

/// Guest memory made of `regions`, for the VMM's own reads and writes.
pub fn view(regions: Vec<Arc<Region>>) -> Result<GuestMemory, MemoryError> {
    GuestMemory::from_arc_regions(regions).map_err(MemoryError::Combine)
}

/// Guest memory holding only the guest-physical `range` of `region`: what a device may touch.
/// Every access outside it (another part of the region, base RAM, another window) fails in
/// vm-memory's bounds checks, so device code cannot reach it whatever addresses the guest
/// writes into its queues.
///
/// The view does not own the host mapping: the caller keeps `region` alive for as long as the
/// view (and anything cloned from it) lives.
pub fn device_view(region: &Arc<Region>, range: std::ops::Range<u64>) -> Result<GuestMemory, MemoryError> {
    let region_range = region.start_addr().0..region.start_addr().0 + region.len();
    if range.start > range.end || range.start < region_range.start || range.end > region_range.end {
        return Err(MemoryError::OutsideRegion(range.start, range.end));
    }
    let offset = (range.start - region_range.start) as usize;
    let len = (range.end - range.start) as usize;
    // SAFETY: `[offset, offset + len)` lies inside `region`'s host mapping (checked above), which
    // stays mapped while the caller holds `region`, as this function's contract requires; the
    // protection and flags are the mapping's own. The new `MmapRegion` does not own the mapping
    // and never unmaps it.
    let sub = unsafe { MmapRegion::build_raw(region.as_ptr().add(offset), len, region.prot(), region.flags()) }
        .map_err(|e| MemoryError::SubRegion(e.to_string()))?;
    let sub = Region::new(sub, GuestAddress(range.start)).ok_or(MemoryError::OutsideRegion(range.start, range.end))?;
    GuestMemory::from_regions(vec![sub]).map_err(MemoryError::Combine)
}

/// Asks the host to back guest range `range` with transparent huge pages. On nested KVM every
/// first touch of a 4 KiB guest page is a shadow-paging exit; a big linear memory touched page
/// by page pays that thousands of times. Best effort: without THP nothing changes.
pub fn advise_huge_pages(memory: &GuestMemory, range: std::ops::Range<u64>) {
    const HUGE: u64 = 2 << 20;
    let (start, end) = (range.start.next_multiple_of(HUGE), range.end / HUGE * HUGE);
    if start >= end {
        return;
    }
    let Ok(host) = memory.get_host_address(GuestAddress(start)) else { return };
    let same_region = memory.find_region(GuestAddress(start)).map(|r| r.start_addr())
        == memory.find_region(GuestAddress(end - 1)).map(|r| r.start_addr());
    if !same_region {
        return;
    }
    // SAFETY: `[start, end)` lies inside one guest memory region's mapping (both ends checked
    // above); MADV_HUGEPAGE changes only how the host backs it, never its contents.
    unsafe { libc::madvise(host.cast(), (end - start) as usize, libc::MADV_HUGEPAGE) };
}
