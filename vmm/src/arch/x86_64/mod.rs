//! x86-64: the guest's address space (identity-mapped page tables, GDT, IDT, each vCPU's TSS
//! and the CPL 0 exception stubs, workload windows mapped and unmapped while the VM runs), the
//! vCPU's entry state (64-bit CPL 3, IOPL 3, interrupts off) and the decoding of faults the
//! stubs report.

mod descriptors;
mod fault;
mod paging;
mod regs;

pub use fault::{fault_outcome, shutdown_outcome};
pub use regs::{clock_sample, configure_vcpu, create_vcpu, guest_phys_bits, VcpuSetupError};

use crate::layout::{BaseLayout, WindowLayout};
use crate::loader::GuestElf;
use crate::memory::GuestMemory;
use paging::{Mapping, PageFlags, PageTables, PagingError};
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::memory_map as map;

/// Errors while building or changing the guest's address space.
#[derive(Debug, thiserror::Error)]
pub enum AddressSpaceError {
    /// The mappings do not fit the page-table pool, or overlap.
    #[error("Cannot build the guest page tables")]
    Paging(#[from] PagingError),
    /// A write into guest memory failed (the layout does not fit the RAM).
    #[error("Cannot write the guest's system tables")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// The guest's page tables, owned by the VMM for the VM's life: the base address space (base
/// RAM, the MMIO window) and, for each workload window, one that adds that window alone.
pub struct AddressSpace {
    tables: PageTables,
}

/// Every base-RAM range the guest may touch, with its rights; everything else stays unmapped.
fn base_mappings(elf: &GuestElf, layout: &BaseLayout) -> Vec<Mapping> {
    use PageFlags as F;
    let mut list = vec![
        Mapping::new(map::GDT, map::GDT + map::PAGE_SIZE, F::SUPERVISOR_RW),
        Mapping::new(map::IDT, map::IDT + map::PAGE_SIZE, F::SUPERVISOR_RO),
        Mapping::new(map::EXCEPTION_STUBS, map::EXCEPTION_STUBS + map::PAGE_SIZE, F::SUPERVISOR_RX),
        Mapping::new(map::BOOT_INFO, map::BOOT_INFO + map::PAGE_SIZE, F::USER_RO),
    ];
    for index in 0..map::MAX_VCPUS {
        let area = map::vcpu_area(index);
        let page =
            |offset: u64, pages: u64, flags| Mapping::new(area + offset, area + offset + pages * map::PAGE_SIZE, flags);
        list.extend([
            page(map::VCPU_BLOCK, 1, F::USER_RW),
            page(map::VCPU_INFO, 1, F::USER_RO),
            page(map::VCPU_TSS, 1, F::SUPERVISOR_RW),
            page(map::VCPU_IST_STACK, 3, F::SUPERVISOR_RW),
            Mapping::new(area + map::VCPU_STACK, area + map::VCPU_AREA_SIZE, F::USER_RW),
        ]);
    }
    list.extend(elf.segments.iter().map(|s| {
        let flags = match (s.access.writable, s.access.executable) {
            (_, true) => F::USER_RX,
            (true, false) => F::USER_RW,
            (false, false) => F::USER_RO,
        };
        Mapping::new(s.start, s.end, flags)
    }));
    list.push(Mapping::new(layout.heap.start, layout.heap.end, F::USER_RW));
    list.push(Mapping::new(map::MMIO_START, map::MMIO_END, F::USER_MMIO));
    list
}

/// A window's parts, with their rights; its stack guard stays unmapped.
fn window_mappings(window: &WindowLayout) -> Vec<Mapping> {
    use PageFlags as F;
    let page_end = |end: u64| end.next_multiple_of(map::PAGE_SIZE);
    let mut list = vec![
        Mapping::new(window.payload.start, page_end(window.payload.end), F::USER_RX),
        Mapping::new(window.blob.start, page_end(window.blob.end), F::USER_RO),
    ];
    if let Some(files) = &window.files {
        list.push(Mapping::new(files.start, page_end(files.end), F::USER_RO));
    }
    list.push(Mapping::new(window.stack.start, window.stack.end, F::USER_RW));
    list.push(Mapping::new(window.heap.start, window.heap.end, F::USER_RW));
    list
}

impl AddressSpace {
    /// Writes the page tables, descriptor tables, every vCPU's TSS and the exception stubs the
    /// guest runs under.
    pub fn build(memory: &GuestMemory, elf: &GuestElf, layout: &BaseLayout) -> Result<Self, AddressSpaceError> {
        let mut tables = PageTables::new(map::PAGE_TABLES..map::PAGE_TABLES_END)?;
        let base = tables.base();
        tables.map(base, &base_mappings(elf, layout))?;
        let mut space = Self { tables };
        space.write_tables(memory)?;
        descriptors::write(memory).map_err(AddressSpaceError::Write)?;
        Ok(space)
    }

    /// The address space of a workload's window (whose memory slot exists already, and is in
    /// `memory`): the base and the window, no other, with its tables in the window's pool. Its
    /// root (`CR3` of the workload's vCPU).
    pub fn map_window(&mut self, memory: &GuestMemory, window: &WindowLayout) -> Result<u64, AddressSpaceError> {
        let root = self.tables.fork(window.tables.clone())?;
        let mapped = self.tables.map(root, &window_mappings(window)).map_err(AddressSpaceError::from);
        if let Err(e) = mapped.and_then(|()| self.write_tables(memory)) {
            self.tables.drop_root(root);
            return Err(e);
        }
        Ok(root)
    }

    /// Drops a window's address space (its vCPU has stopped), returning its tables to the pool.
    pub fn unmap_window(&mut self, root: u64) {
        self.tables.drop_root(root);
    }

    /// Guest-physical address of the base root table (`CR3` of a vCPU without a workload).
    pub fn base_root(&self) -> u64 {
        self.tables.base()
    }

    fn write_tables(&mut self, memory: &GuestMemory) -> Result<(), AddressSpaceError> {
        for (addr, table) in self.tables.take_dirty() {
            memory.write_slice(&table, GuestAddress(addr)).map_err(AddressSpaceError::Write)?;
        }
        Ok(())
    }
}

/// The ELF machine a guest image must be built for.
pub const ELF_MACHINE: u16 = linux_loader::elf::EM_X86_64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{WindowLayout, WorkloadSizes};
    use crate::loader;

    #[test]
    fn guest_address_space_is_w_xor_x_and_protects_the_system() {
        let elf = loader::parse(crate::EMBEDDED_GUEST).unwrap();
        let layout = BaseLayout::new(64 << 20, elf.end).unwrap();
        let mut tables = PageTables::new(map::PAGE_TABLES..map::PAGE_TABLES_END).unwrap();
        let base = tables.base();
        tables.map(base, &base_mappings(&elf, &layout)).unwrap();
        let sizes = WorkloadSizes { blob: 100, files: 10_000, payload: 3 << 20 };
        let window = WindowLayout::new(map::window_base(0), 64 << 20, sizes).unwrap();
        let root = tables.fork(window.tables.clone()).unwrap();
        tables.map(root, &window_mappings(&window)).unwrap();
        let at = |addr| tables.translate(root, addr);
        let area = map::vcpu_area(3);
        // Null page, page-table pool and stack guards are unmapped.
        assert_eq!(at(0), None);
        assert_eq!(at(map::PAGE_TABLES), None);
        assert_eq!(at(area + map::VCPU_STACK_GUARD), None);
        assert_eq!(at(window.stack.start - map::PAGE_SIZE), None);
        // System pages are supervisor-only.
        for addr in [map::GDT, map::IDT, map::EXCEPTION_STUBS, area + map::VCPU_TSS, area + map::VCPU_EXCEPTION_STACK] {
            assert!(!at(addr).unwrap().user, "{addr:#x} must be supervisor-only");
        }
        assert!(at(map::EXCEPTION_STUBS).unwrap().executable);
        // User pages: boot info and vCPU info read-only, block, stacks and heaps writable,
        // nothing writable is executable.
        assert_eq!(at(map::BOOT_INFO), Some(PageFlags::USER_RO));
        assert_eq!(at(area + map::VCPU_INFO), Some(PageFlags::USER_RO));
        assert_eq!(at(area + map::VCPU_BLOCK), Some(PageFlags::USER_RW));
        assert_eq!(at(area + map::VCPU_AREA_SIZE - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(elf.end), Some(PageFlags::USER_RW));
        assert_eq!(at(layout.heap.end - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(layout.heap.end), None, "nothing past the end of base RAM");
        // The window: module read + execute, inputs read-only, stack and heap writable.
        assert_eq!(at(window.payload.start), Some(PageFlags::USER_RX));
        assert_eq!(at(window.blob.start), Some(PageFlags::USER_RO));
        assert_eq!(at(window.files.clone().unwrap().start), Some(PageFlags::USER_RO));
        assert_eq!(at(window.stack.end - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(window.heap.end - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(window.tables.start), None, "the window's page tables are not mapped");
        assert_eq!(at(window.tables.end), None, "nothing past the end of the window");
        assert_eq!(at(elf.entry), Some(PageFlags::USER_RX));
        assert_eq!(at(map::MMIO_START), Some(PageFlags::USER_MMIO));
        for addr in (0..map::MMIO_START).step_by(map::PAGE_SIZE as usize).chain(window.range().step_by(4096)) {
            if let Some(flags) = at(addr) {
                assert!(!(flags.writable && flags.executable), "{addr:#x} is writable and executable");
            }
        }
        assert_eq!(tables.translate(base, window.payload.start), None, "the base maps no window");
        tables.drop_root(root);
        assert_eq!(tables.translate(base, elf.entry), Some(PageFlags::USER_RX));
    }
}
