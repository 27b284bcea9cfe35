//! The guest's address spaces, the same on every architecture: a shared base, the boot vCPU's,
//! and one per workload, added and dropped while the VM runs (`paging` builds the tables, the
//! architecture says what its system pages are: x86-64's GDT, IDT, TSS and CPL 0 stubs,
//! aarch64's EL1 vectors and device pages).

use super::paging::{Mapping, PageFlags, PageTables, PagingError};
use super::{system_mappings, vcpu_system_mappings, write_system_tables};
use crate::layout::{BaseLayout, WindowLayout};
use crate::loader::{GuestElf, Segment};
use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::MapRequest;
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
    /// The guest asked to map pages outside its guarded memories or its heap.
    #[error(
        "Refused to map {len:#x} bytes at {virt:#x} to {phys:#x}: outside the workload's guarded memories or heap"
    )]
    BadMapRequest { virt: u64, len: u64, phys: u64 },
}

/// The guest's page tables, owned by the VMM for the VM's life. Every vCPU runs in an address
/// space of its own, forked from a base that maps only what every vCPU may share (system pages,
/// supervisor-only; the boot info and the image's code and read-only data, read-only): the boot
/// vCPU's adds its own area, the image's writable data and the kernel heap; each workload's
/// adds its own vCPU area, its console's register page, its window, and its private copy of
/// the image's writable data at the image's addresses. No user-writable page is in two address
/// spaces.
pub struct AddressSpace {
    tables: PageTables,
    boot_root: u64,
    /// The image's writable segments, which each address space maps to a copy of its own.
    writable: Vec<Segment>,
}

/// What a workload's address space is made of.
pub struct WorkloadSpace<'a> {
    pub window: &'a WindowLayout,
    /// The workload's vCPU.
    pub vcpu: u32,
    /// Guest-physical base of its console's register page.
    pub console: u64,
}

/// What every address space maps: system pages, the boot info, and the image's code and
/// read-only data.
fn shared_mappings(elf: &GuestElf) -> Vec<Mapping> {
    use PageFlags as F;
    let mut list = system_mappings();
    list.push(Mapping::new(map::BOOT_INFO, map::BOOT_INFO + map::PAGE_SIZE, F::USER_RO));
    list.extend(elf.segments.iter().filter(|s| !s.access.writable).map(|s| {
        let flags = if s.access.executable { F::USER_RX } else { F::USER_RO };
        Mapping::new(s.start, s.end, flags)
    }));
    list
}

/// vCPU `index`'s own area: its block, its info, what the architecture needs for faults
/// (supervisor-only) and its boot stack.
fn vcpu_area_mappings(index: u32) -> Vec<Mapping> {
    use PageFlags as F;
    let area = map::vcpu_area(index);
    let page =
        |offset: u64, pages: u64, flags| Mapping::new(area + offset, area + offset + pages * map::PAGE_SIZE, flags);
    let mut list = vec![page(map::VCPU_BLOCK, 1, F::USER_RW), page(map::VCPU_INFO, 1, F::USER_RO)];
    list.extend(vcpu_system_mappings(area));
    list.push(Mapping::new(area + map::VCPU_STACK, area + map::VCPU_AREA_SIZE, F::USER_RW));
    list
}

/// The boot vCPU's own: its area, the image's writable data where it was loaded, the kernel heap.
fn boot_mappings(writable: &[Segment], layout: &BaseLayout) -> Vec<Mapping> {
    let mut list = vcpu_area_mappings(map::BOOT_VCPU);
    list.extend(writable.iter().map(|s| Mapping::new(s.start, s.end, PageFlags::USER_RW)));
    list.push(Mapping::new(layout.heap.start, layout.heap.end, PageFlags::USER_RW));
    list
}

/// A workload's own: its vCPU area, its console, its copy of the image's writable data, and its
/// window's parts with their rights (its stack guard and page tables stay unmapped).
fn workload_mappings(writable: &[Segment], space: &WorkloadSpace<'_>) -> Vec<Mapping> {
    use PageFlags as F;
    let window = space.window;
    let page_end = |end: u64| end.next_multiple_of(map::PAGE_SIZE);
    let mut list = vcpu_area_mappings(space.vcpu);
    list.push(Mapping::new(space.console, space.console + map::PAGE_SIZE, F::USER_MMIO));
    let mut copy = window.kernel_data.start;
    for segment in writable {
        list.push(Mapping::to(segment.start, segment.end, copy, F::USER_RW));
        copy += segment.end - segment.start;
    }
    list.extend([
        Mapping::new(window.payload.start, page_end(window.payload.end), F::USER_RX),
        Mapping::new(window.blob.start, page_end(window.blob.end), F::USER_RO),
    ]);
    if let Some(files) = &window.files {
        list.push(Mapping::new(files.start, page_end(files.end), F::USER_RO));
    }
    list.push(Mapping::new(window.stack.start, window.stack.end, F::USER_RW));
    list.push(Mapping::new(window.heap.start, window.heap.end, F::USER_RW));
    list
}

/// The page-table pool of the base address space and the boot vCPU's (each half of base RAM's).
fn base_pools() -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let middle = (map::PAGE_TABLES + map::PAGE_TABLES_END) / 2 / map::PAGE_SIZE * map::PAGE_SIZE;
    (map::PAGE_TABLES..middle, middle..map::PAGE_TABLES_END)
}

impl AddressSpace {
    /// Writes the page tables of the base and the boot vCPU's address spaces and the
    /// architecture's system tables (descriptor tables, exception stubs or vectors). Neither set
    /// of tables changes after this.
    pub fn build(memory: &GuestMemory, elf: &GuestElf, layout: &BaseLayout) -> Result<Self, AddressSpaceError> {
        let (base_pool, boot_pool) = base_pools();
        let mut tables = PageTables::new(base_pool)?;
        let base = tables.base();
        tables.map(base, &shared_mappings(elf))?;
        let writable: Vec<Segment> = elf.segments.iter().filter(|s| s.access.writable).copied().collect();
        let boot_root = tables.fork(boot_pool)?;
        tables.map(boot_root, &boot_mappings(&writable, layout))?;
        let mut space = Self { tables, boot_root, writable };
        space.write_tables(memory)?;
        write_system_tables(memory, elf.entry).map_err(AddressSpaceError::Write)?;
        Ok(space)
    }

    /// Bytes of the image's writable segments, which each workload's window holds a copy of.
    pub fn kernel_data_len(&self) -> u64 {
        self.writable.iter().map(|s| s.end - s.start).sum()
    }

    /// Copies the image's writable segments, as loaded in base RAM before the first vCPU ran,
    /// into `buffer` (`kernel_data_len` bytes): what each workload's copy starts as.
    pub fn read_kernel_data(&self, memory: &GuestMemory) -> Result<Vec<u8>, AddressSpaceError> {
        let mut data = vec![0; self.kernel_data_len() as usize];
        let mut at = 0;
        for segment in &self.writable {
            let len = (segment.end - segment.start) as usize;
            memory
                .read_slice(&mut data[at..at + len], GuestAddress(segment.start))
                .map_err(AddressSpaceError::Write)?;
            at += len;
        }
        Ok(data)
    }

    /// The address space of a workload (whose window's memory slot exists already, and is in
    /// `memory`), with its tables in its window's pool: its root (`CR3` of its vCPU).
    pub fn map_workload(&mut self, memory: &GuestMemory, space: &WorkloadSpace<'_>) -> Result<u64, AddressSpaceError> {
        let root = self.tables.fork(space.window.tables.clone())?;
        let mapped = self.tables.map(root, &workload_mappings(&self.writable, space)).map_err(AddressSpaceError::from);
        if let Err(e) = mapped.and_then(|()| self.write_tables(memory)) {
            self.tables.drop_root(root);
            return Err(e);
        }
        Ok(root)
    }

    /// Maps what a workload's vCPU asked for (`MAP_MEMORY`: a guarded memory grows) in its
    /// address space `root`: pages of its own `heap`, user read-write and no-execute, inside one
    /// guarded memory's mappable part, none mapped already. The guest gains nothing it could not
    /// write before (a second address for its own heap pages); what it asks for is checked all
    /// the same, and a request that is refused changes nothing.
    ///
    /// The tables change while KVM may shadow them: only empty entries are filled, so a stale
    /// shadow entry can only be a missing one, which KVM fills from the guest's tables on the
    /// next access.
    pub fn map_guarded(
        &mut self,
        memory: &GuestMemory,
        root: u64,
        heap: &std::ops::Range<u64>,
        request: &MapRequest,
    ) -> Result<(), AddressSpaceError> {
        let MapRequest { virt, len, phys } = *request;
        let refused = AddressSpaceError::BadMapRequest { virt, len, phys };
        let aligned = [virt, len, phys].iter().all(|a| a.is_multiple_of(map::PAGE_SIZE));
        let slot = virt.checked_sub(map::GUARDED_MEMORIES).map(|o| o / map::GUARDED_MEMORY_SPAN);
        let in_memory = slot.is_some_and(|slot| {
            let offset = virt - map::GUARDED_MEMORIES - slot * map::GUARDED_MEMORY_SPAN;
            slot < u64::from(map::MAX_GUARDED_MEMORIES)
                && offset.checked_add(len).is_some_and(|end| end <= map::GUARDED_MEMORY_MAX)
        });
        let in_heap = phys >= heap.start && phys.checked_add(len).is_some_and(|end| end <= heap.end);
        if !aligned || len == 0 || !in_memory || !in_heap {
            return Err(refused);
        }
        match self.tables.map(root, &[Mapping::to(virt, virt + len, phys, PageFlags::USER_RW)]) {
            Ok(()) => self.write_tables(memory),
            Err(PagingError::BadMapping(_)) => Err(refused),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops a workload's address space (its vCPU has stopped), returning its tables to its pool.
    pub fn unmap_workload(&mut self, root: u64) {
        self.tables.drop_root(root);
    }

    /// The root of the boot vCPU's address space (`CR3` of a vCPU without a workload).
    pub fn boot_root(&self) -> u64 {
        self.boot_root
    }

    fn write_tables(&mut self, memory: &GuestMemory) -> Result<(), AddressSpaceError> {
        for (addr, table) in self.tables.take_dirty() {
            memory.write_slice(&table, GuestAddress(addr)).map_err(AddressSpaceError::Write)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{WindowLayout, WorkloadSizes};
    use crate::loader;

    struct Spaces {
        tables: PageTables,
        boot: u64,
        workload: u64,
        elf: GuestElf,
        layout: BaseLayout,
        window: WindowLayout,
    }

    /// The boot vCPU's address space and that of a workload on vCPU 3, as `AddressSpace` builds
    /// them (without guest memory).
    fn spaces() -> Spaces {
        let elf = loader::parse(crate::EMBEDDED_GUEST).unwrap();
        let layout = BaseLayout::new(64 << 20, elf.end).unwrap();
        let (base_pool, boot_pool) = base_pools();
        let mut tables = PageTables::new(base_pool).unwrap();
        let base = tables.base();
        tables.map(base, &shared_mappings(&elf)).unwrap();
        let writable: Vec<Segment> = elf.segments.iter().filter(|s| s.access.writable).copied().collect();
        let boot = tables.fork(boot_pool).unwrap();
        tables.map(boot, &boot_mappings(&writable, &layout)).unwrap();
        let data: u64 = writable.iter().map(|s| s.end - s.start).sum();
        let sizes = WorkloadSizes { blob: 100, files: 10_000, payload: 3 << 20, kernel_data: data };
        let window = WindowLayout::new(map::window_base(0), 64 << 20, sizes).unwrap();
        let workload = tables.fork(window.tables.clone()).unwrap();
        let space = WorkloadSpace { window: &window, vcpu: 3, console: map::MMIO_START + 3 * map::PAGE_SIZE };
        tables.map(workload, &workload_mappings(&writable, &space)).unwrap();
        Spaces { tables, boot, workload, elf, layout, window }
    }

    #[test]
    fn every_address_space_is_w_xor_x_and_protects_the_system() {
        let Spaces { tables, boot, workload, elf, window, .. } = spaces();
        for root in [boot, workload] {
            let at = |addr| tables.translate(root, addr);
            // Null page and page-table pool are unmapped; system pages are supervisor-only.
            assert_eq!(at(0), None);
            assert_eq!(at(map::PAGE_TABLES), None);
            for system in system_mappings().iter().filter(|m| !m.flags.uncached) {
                assert!(!at(system.start).unwrap().user, "{:#x} must be supervisor-only", system.start);
            }
            assert!(at(map::EXCEPTION_STUBS).unwrap().executable);
            assert_eq!(at(map::BOOT_INFO), Some(PageFlags::USER_RO));
            assert_eq!(at(elf.entry), Some(PageFlags::USER_RX));
            for addr in (0..map::MMIO_END).step_by(map::PAGE_SIZE as usize).chain(window.range().step_by(4096)) {
                if let Some(flags) = at(addr) {
                    assert!(!(flags.writable && flags.executable), "{addr:#x} is writable and executable");
                }
            }
        }
    }

    #[test]
    fn a_vcpu_maps_its_own_area_and_no_other() {
        let Spaces { tables, boot, workload, .. } = spaces();
        for (root, own) in [(boot, map::BOOT_VCPU), (workload, 3)] {
            for index in 0..map::MAX_VCPUS {
                let area = map::vcpu_area(index);
                let at = |offset| tables.translate(root, area + offset);
                if index != own {
                    assert!(
                        (0..map::VCPU_AREA_SIZE).step_by(4096).all(|o| at(o).is_none()),
                        "vCPU {index}'s area is mapped in vCPU {own}'s address space"
                    );
                    continue;
                }
                assert_eq!(at(map::VCPU_BLOCK), Some(PageFlags::USER_RW));
                assert_eq!(at(map::VCPU_INFO), Some(PageFlags::USER_RO));
                for system in vcpu_system_mappings(area) {
                    assert!(!at(system.start - area).unwrap().user);
                }
                assert_eq!(at(map::VCPU_STACK_GUARD), None);
                assert_eq!(at(map::VCPU_AREA_SIZE - 8), Some(PageFlags::USER_RW));
            }
        }
    }

    #[test]
    fn a_workload_shares_no_writable_page_with_the_boot_vcpu() {
        let Spaces { tables, boot, workload, elf, layout, window } = spaces();
        let data = elf.segments.iter().find(|s| s.access.writable).expect("the image has data");
        // The boot vCPU: the image's data where it was loaded, and the kernel heap.
        assert_eq!(tables.physical(boot, data.start), Some(data.start));
        assert_eq!(tables.translate(boot, layout.heap.start), Some(PageFlags::USER_RW));
        assert_eq!(tables.translate(boot, layout.heap.end - 8), Some(PageFlags::USER_RW));
        assert_eq!(tables.translate(boot, window.payload.start), None, "the boot vCPU maps no window");
        // The workload: the same data addresses, backed by its window; no kernel heap.
        assert_eq!(tables.physical(workload, data.start), Some(window.kernel_data.start));
        assert_eq!(tables.translate(workload, data.start), Some(PageFlags::USER_RW));
        assert_eq!(tables.translate(workload, layout.heap.start), None);
        assert_eq!(tables.translate(workload, layout.heap.end - 8), None);
        // No page of RAM is user-writable in both (device pages are not RAM: every vCPU may
        // write aarch64's control page).
        let writable_pages = |root| {
            let virtual_pages = (0..map::MMIO_END).step_by(4096).chain(window.range().step_by(4096));
            virtual_pages
                .filter(|&addr| tables.translate(root, addr).is_some_and(|f| f.user && f.writable && !f.uncached))
                .map(|addr| tables.physical(root, addr).unwrap())
                .collect::<std::collections::BTreeSet<u64>>()
        };
        let (boot_pages, workload_pages) = (writable_pages(boot), writable_pages(workload));
        assert!(boot_pages.len() > 100 && workload_pages.len() > 100);
        let shared: Vec<&u64> = boot_pages.intersection(&workload_pages).collect();
        assert!(shared.is_empty(), "{shared:x?}");
    }

    #[test]
    fn a_workload_maps_its_window_and_console_only() {
        let Spaces { tables, workload, window, .. } = spaces();
        let at = |addr| tables.translate(workload, addr);
        assert_eq!(at(window.payload.start), Some(PageFlags::USER_RX));
        assert_eq!(at(window.blob.start), Some(PageFlags::USER_RO));
        assert_eq!(at(window.files.clone().unwrap().start), Some(PageFlags::USER_RO));
        assert_eq!(at(window.kernel_data.start), None, "its data copy is reached at the image's addresses only");
        assert_eq!(at(window.stack.start - map::PAGE_SIZE), None, "stack guard");
        assert_eq!(at(window.stack.end - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(window.heap.end - 8), Some(PageFlags::USER_RW));
        assert_eq!(at(window.tables.start), None, "the window's page tables are not mapped");
        assert_eq!(at(window.tables.end), None, "nothing past the end of the window");
        assert_eq!(at(map::window_base(1)), None, "no other window");
        let console = map::MMIO_START + 3 * map::PAGE_SIZE;
        assert_eq!(at(console), Some(PageFlags::USER_MMIO));
        assert_eq!(at(console - map::PAGE_SIZE), None, "another vCPU's console");
        assert_eq!(at(map::MMIO_START), None);
    }

    #[test]
    fn guarded_memories_map_heap_pages_only_and_a_refusal_changes_nothing() {
        use std::collections::BTreeMap;
        use vm_memory::GuestAddress;
        let elf = loader::parse(crate::EMBEDDED_GUEST).unwrap();
        let layout = BaseLayout::new(64 << 20, elf.end).unwrap();
        let base = map::window_base(0);
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 64 << 20), (GuestAddress(base), 64 << 20)]).unwrap();
        let mut space = AddressSpace::build(&memory, &elf, &layout).unwrap();
        let sizes = WorkloadSizes { blob: 100, files: 0, payload: 1 << 20, kernel_data: space.kernel_data_len() };
        let window = WindowLayout::new(base, 64 << 20, sizes).unwrap();
        let workload = WorkloadSpace { window: &window, vcpu: 1, console: map::MMIO_START + map::PAGE_SIZE };
        let root = space.map_workload(&memory, &workload).unwrap();
        let heap = window.heap.clone();

        // Random requests, most of them near valid ones; a model of what must be mapped.
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let memory_index = next(u64::from(map::MAX_GUARDED_MEMORIES) + 2) as u32;
            let offset = match next(3) {
                0 => next(64) * map::PAGE_SIZE,
                1 => map::GUARDED_MEMORY_MAX - next(64) * map::PAGE_SIZE,
                _ if next(10) == 0 => next(map::GUARDED_MEMORY_SPAN / map::PAGE_SIZE) * map::PAGE_SIZE,
                _ => next(64) * map::PAGE_SIZE,
            };
            let virt = map::guarded_memory(memory_index) + offset + if next(20) == 0 { 8 } else { 0 };
            let len = next(16) * map::PAGE_SIZE;
            let phys = match next(8) {
                0 => next(base + (64 << 20)) / map::PAGE_SIZE * map::PAGE_SIZE,
                _ => heap.start + next((heap.end - heap.start) / map::PAGE_SIZE) * map::PAGE_SIZE,
            };
            let request = MapRequest { virt, len, phys };
            let pages: Vec<u64> = (0..len / map::PAGE_SIZE).map(|i| virt + i * map::PAGE_SIZE).collect();
            let valid = virt.is_multiple_of(map::PAGE_SIZE)
                && len > 0
                && memory_index < map::MAX_GUARDED_MEMORIES
                && offset + len <= map::GUARDED_MEMORY_MAX
                && phys + len <= heap.end
                && phys >= heap.start
                && pages.iter().all(|p| !model.contains_key(p));
            let result = space.map_guarded(&memory, root, &heap, &request);
            // Scattered pages each need tables of their own: the pool is sized for memories
            // that grow from their start, and running out of it is a refusal like any other.
            let exhausted = matches!(result, Err(AddressSpaceError::Paging(PagingError::PoolExhausted)));
            assert_eq!(result.is_ok() || exhausted, valid, "{request:x?}: {result:?}");
            if result.is_ok() {
                accepted += 1;
                for (i, page) in pages.iter().enumerate() {
                    model.insert(*page, phys + i as u64 * map::PAGE_SIZE);
                }
            } else {
                refused += 1;
            }
            for page in pages.iter().take(4).chain(pages.last()) {
                if page.is_multiple_of(map::PAGE_SIZE) {
                    assert_eq!(space.tables.physical(root, *page), model.get(page).copied(), "{page:#x}");
                }
            }
        }
        assert!(accepted > 200 && refused > 500, "{accepted} accepted, {refused} refused");
        for (&virt, &phys) in &model {
            assert_eq!(space.tables.physical(root, virt), Some(phys));
            assert_eq!(space.tables.translate(root, virt), Some(PageFlags::USER_RW));
        }
        // The boot vCPU's address space maps none of it.
        let some = *model.keys().next().unwrap();
        assert_eq!(space.tables.translate(space.boot_root(), some), None);
    }
}
