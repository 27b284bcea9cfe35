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
    /// A file could not be mapped into guest memory.
    #[error("Cannot map a file into guest memory")]
    MapFile(#[source] std::io::Error),
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

/// Maps the first `len` bytes of `file` at guest-physical `at` (page aligned), in place of the
/// anonymous pages there, private and copy-on-write: the guest reads the file's pages from the
/// host's page cache, shared with every other mapping of the file, and nothing reaches the
/// file. Bytes after `len` up to the next page boundary read as the file has them (zeros past
/// its end). Call it before any vCPU can reach the range.
pub fn map_file(memory: &GuestMemory, at: u64, file: &std::fs::File, len: u64) -> Result<(), MemoryError> {
    map_file_at(memory, at, file, 0, len)
}

/// [`map_file`] of the bytes of `file` from `offset` (page aligned) on.
pub fn map_file_at(
    memory: &GuestMemory,
    at: u64,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> Result<(), MemoryError> {
    use std::os::fd::AsRawFd;
    let page = wasmcell_abi::memory_map::PAGE_SIZE;
    let mapped = len.next_multiple_of(page);
    let outside = || MemoryError::OutsideRegion(at, at.saturating_add(mapped));
    let end = at.checked_add(mapped).ok_or_else(outside)?;
    let region = memory.find_region(GuestAddress(at)).ok_or_else(outside)?;
    if !at.is_multiple_of(page) || len == 0 || end > region.start_addr().0 + region.len() {
        return Err(outside());
    }
    let offset = libc::off_t::try_from(offset).ok().filter(|o| o % page as libc::off_t == 0).ok_or_else(outside)?;
    let host = memory.get_host_address(GuestAddress(at)).map_err(|_| outside())?;
    // SAFETY: `[at, end)` lies inside one region's host mapping (checked above), which the
    // caller owns and no vCPU uses yet; MAP_FIXED replaces exactly those pages with a private
    // mapping of `file` (a live descriptor), so no other memory of the process is touched, and
    // the region's unmapping later removes it with the rest.
    let mapping = unsafe {
        libc::mmap(
            host.cast(),
            mapped as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            file.as_raw_fd(),
            offset,
        )
    };
    if mapping == libc::MAP_FAILED {
        return Err(MemoryError::MapFile(std::io::Error::last_os_error()));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::Bytes;

    fn file_of(bytes: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("wasmcell-map-{}-{}", std::process::id(), bytes.len()));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn a_mapped_file_reads_through_guest_memory_and_writes_never_reach_it() {
        let region = Region::from_range(GuestAddress(0x10_0000), 0x10_000, None).unwrap();
        let memory = GuestMemory::from_regions(vec![region]).unwrap();
        let contents: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let file = file_of(&contents);
        map_file(&memory, 0x10_1000, &file, contents.len() as u64).unwrap();
        let mut read = vec![0u8; contents.len()];
        memory.read_slice(&mut read, GuestAddress(0x10_1000)).unwrap();
        assert_eq!(read, contents);
        // The rest of the last page is past the file's end: zeros.
        assert_eq!(memory.read_obj::<u8>(GuestAddress(0x10_1000 + 5000)).unwrap(), 0);
        memory.write_slice(b"changed", GuestAddress(0x10_1000)).unwrap();
        let mut again = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut again).unwrap();
        assert_eq!(again, contents, "the file changed");
    }

    #[test]
    fn a_file_is_mapped_only_page_aligned_and_inside_one_region() {
        let region = Region::from_range(GuestAddress(0x10_0000), 0x4000, None).unwrap();
        let memory = GuestMemory::from_regions(vec![region]).unwrap();
        let file = file_of(&[7; 100]);
        for (at, len) in [(0x10_0800, 100), (0x10_3000, 0x2000), (0x20_0000, 100), (0x10_0000, 0)] {
            assert!(map_file(&memory, at, &file, len).is_err(), "mapped {len} bytes at {at:#x}");
        }
        map_file(&memory, 0x10_3000, &file, 100).unwrap();
    }
}
