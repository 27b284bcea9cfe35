//! x86-64: the guest's address space (identity-mapped page tables, GDT, TSS, IDT and the CPL 0
//! exception stubs), the vCPU's entry state (64-bit CPL 3, IOPL 3, interrupts off) and the
//! decoding of faults the stubs report.

mod descriptors;
mod fault;
mod paging;
mod regs;

pub use fault::{fault_outcome, shutdown_outcome};
pub use regs::{clock_sample, configure_vcpu, VcpuSetupError};

use crate::layout::GuestLayout;
use crate::loader::GuestElf;
use crate::memory::GuestMemory;
use paging::{Mapping, PageFlags, PageTables, PagingError};
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::memory_map as map;

/// Errors while building the guest's address space.
#[derive(Debug, thiserror::Error)]
pub enum AddressSpaceError {
    /// The mappings do not fit the page-table pool, or overlap.
    #[error("Cannot build the guest page tables")]
    Paging(#[from] PagingError),
    /// A write into guest memory failed (the layout does not fit the RAM).
    #[error("Cannot write the guest's system tables")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// Every range the guest may touch, with its rights; everything else stays unmapped.
fn mappings(elf: &GuestElf, layout: &GuestLayout) -> Vec<Mapping> {
    use PageFlags as F;
    let mut list = vec![
        Mapping::new(map::GDT, map::GDT + map::PAGE_SIZE, F::SUPERVISOR_RW),
        Mapping::new(map::IDT, map::IDT + map::PAGE_SIZE, F::SUPERVISOR_RO),
        Mapping::new(map::TSS, map::TSS + map::PAGE_SIZE, F::SUPERVISOR_RW),
        Mapping::new(map::EXCEPTION_STUBS, map::EXCEPTION_STUBS + map::PAGE_SIZE, F::SUPERVISOR_RX),
        Mapping::new(map::EXCEPTION_STACK, map::EXCEPTION_STACK_TOP, F::SUPERVISOR_RW),
        Mapping::new(map::DOUBLE_FAULT_STACK, map::DOUBLE_FAULT_STACK_TOP, F::SUPERVISOR_RW),
        Mapping::new(map::BOOT_INFO, map::BOOT_INFO + map::PAGE_SIZE, F::USER_RO),
        Mapping::new(map::CONTROL_BLOCK, map::CONTROL_BLOCK + map::PAGE_SIZE, F::USER_RW),
        Mapping::new(map::STACK_BOTTOM, map::STACK_TOP, F::USER_RW),
    ];
    list.extend(elf.segments.iter().map(|s| {
        let flags = match (s.access.writable, s.access.executable) {
            (_, true) => F::USER_RX,
            (true, false) => F::USER_RW,
            (false, false) => F::USER_RO,
        };
        Mapping::new(s.start, s.end, flags)
    }));
    let page_end = |end: u64| end.next_multiple_of(map::PAGE_SIZE);
    list.push(Mapping::new(layout.heap.start, layout.heap.end, F::USER_RW));
    if let Some(blob) = &layout.workload {
        list.push(Mapping::new(blob.start, page_end(blob.end), F::USER_RO));
    }
    if let Some(files) = &layout.files {
        list.push(Mapping::new(files.start, page_end(files.end), F::USER_RO));
    }
    if let Some(payload) = &layout.payload {
        list.push(Mapping::new(payload.start, page_end(payload.end), F::USER_RX));
    }
    list.push(Mapping::new(map::MMIO_START, map::MMIO_END, F::USER_MMIO));
    list
}

/// Writes the page tables, descriptor tables and exception stubs the guest runs under.
pub fn configure_address_space(
    memory: &GuestMemory,
    elf: &GuestElf,
    layout: &GuestLayout,
) -> Result<(), AddressSpaceError> {
    let tables = PageTables::build(&mappings(elf, layout), map::PAGE_TABLES..map::PAGE_TABLES_END)?;
    for (addr, table) in tables.iter() {
        memory.write_slice(table, GuestAddress(addr)).map_err(AddressSpaceError::Write)?;
    }
    descriptors::write(memory).map_err(AddressSpaceError::Write)
}

/// The ELF machine a guest image must be built for.
pub const ELF_MACHINE: u16 = linux_loader::elf::EM_X86_64;

/// Guest-physical address of the root page table (`CR3`).
pub const PAGE_TABLE_ROOT: u64 = map::PAGE_TABLES;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::WorkloadSizes;
    use crate::loader;

    #[test]
    fn guest_address_space_is_w_xor_x_and_protects_the_system() {
        let elf = loader::parse(crate::EMBEDDED_GUEST).unwrap();
        let layout =
            GuestLayout::new(64 << 20, elf.end, Some(WorkloadSizes { blob: 100, files: 10_000, payload: 3 << 20 }))
                .unwrap();
        let tables = PageTables::build(&mappings(&elf, &layout), map::PAGE_TABLES..map::PAGE_TABLES_END).unwrap();
        let at = |addr| tables.translate(addr);
        // Null page, page-table pool and stack guard are unmapped.
        assert_eq!(at(0), None);
        assert_eq!(at(map::PAGE_TABLES), None);
        assert_eq!(at(map::STACK_GUARD), None);
        // System pages are supervisor-only.
        for addr in [map::GDT, map::IDT, map::TSS, map::EXCEPTION_STUBS, map::EXCEPTION_STACK] {
            assert!(!at(addr).unwrap().user, "{addr:#x} must be supervisor-only");
        }
        assert!(at(map::EXCEPTION_STUBS).unwrap().executable);
        // User pages: boot info read-only, stack and heap writable, nothing writable is executable.
        assert_eq!(at(map::BOOT_INFO), Some(PageFlags::USER_RO));
        assert_eq!(at(map::STACK_TOP - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(elf.end), Some(PageFlags::USER_RW));
        assert_eq!(at(layout.heap.end - 8), Some(PageFlags::USER_RW));
        // The workload blob is read-only, the precompiled module read + execute.
        assert_eq!(at(layout.workload.clone().unwrap().start), Some(PageFlags::USER_RO));
        assert_eq!(at(layout.files.clone().unwrap().start), Some(PageFlags::USER_RO));
        assert_eq!(at(layout.payload.clone().unwrap().start), Some(PageFlags::USER_RX));
        assert_eq!(at((64 << 20) - 8), Some(PageFlags::USER_RX));
        assert_eq!(at(64 << 20), None, "nothing past the end of RAM");
        assert_eq!(at(elf.entry), Some(PageFlags::USER_RX));
        assert_eq!(at(map::MMIO_START), Some(PageFlags::USER_MMIO));
        for addr in (0..map::MMIO_START).step_by(map::PAGE_SIZE as usize) {
            if let Some(flags) = at(addr) {
                assert!(!(flags.writable && flags.executable), "{addr:#x} is writable and executable");
            }
        }
    }
}
