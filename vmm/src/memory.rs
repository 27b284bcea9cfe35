//! Guest RAM: anonymous, `MAP_NORESERVE` memory from vm-memory, registered with KVM as one slot.
//! Pages cost nothing until touched; the boot path touches only a few dozen.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Guest memory as the VMM uses it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Errors while creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The host could not map the memory.
    #[error("Cannot allocate guest memory")]
    Allocate(#[source] vm_memory::mmap::FromRangesError),
    /// KVM refused the memory slot.
    #[error("Cannot register guest memory with KVM")]
    Register(#[source] kvm_ioctls::Error),
}

/// Maps `size` bytes of RAM at guest-physical 0 and hands them to KVM.
pub fn create(vm: &VmFd, size: u64) -> Result<GuestMemory, MemoryError> {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), size as usize)]).map_err(MemoryError::Allocate)?;
    for (slot, region) in memory.iter().enumerate() {
        let host = region.as_ptr() as u64;
        let slot = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host,
        };
        // SAFETY: the region's host mapping lives as long as `memory`, which the caller keeps
        // alive for the whole life of `vm` (both belong to the same `Vm` and the slot dies with
        // the VM fd).
        unsafe { vm.set_user_memory_region(slot) }.map_err(MemoryError::Register)?;
    }
    Ok(memory)
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
    if memory.get_host_address(GuestAddress(end - 1)).is_err() {
        return;
    }
    // SAFETY: `[start, end)` lies inside the one guest memory mapping (both ends checked above,
    // and it is one contiguous region); MADV_HUGEPAGE changes only how the host backs it, never
    // its contents.
    unsafe { libc::madvise(host.cast(), (end - start) as usize, libc::MADV_HUGEPAGE) };
}
