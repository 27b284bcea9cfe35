//! 4-level page tables with 4 KiB granules for the guest's identity maps, kept by the VMM for
//! the VM's whole life: the base address space built before boot, then one more per workload
//! window while the guest runs, each sharing the base's tables. x86-64 and aarch64 (48-bit
//! virtual addresses, 4 KiB granule) walk the same tree: 9 bits per level, 512 entries per table;
//! only the bits of an entry differ, and those are the architecture's (`pte`).
//!
//! Large (2 MiB) pages wherever a whole aligned 2 MiB range shares its rights, 4 KiB pages
//! elsewhere, so that W^X and supervisor-only pages cost a page table only where they are needed.
//! Tables come from a fixed pool of guest-physical pages that is itself never mapped: the guest
//! cannot read or rewrite its own page tables. Every change marks the tables it touched; the
//! caller writes exactly those into guest memory.
//!
//! A workload's address space ([`PageTables::fork`]) starts as a copy of the base root: it sees
//! base RAM through the base's own tables and its window through tables of its own, copied from
//! the base's on the way down where they were shared (copy on write). So a workload's vCPU
//! reaches no other workload's window. Its own tables come from a pool inside its window, never
//! from the base's: the base's tables are never changed after boot, and a window's go with its
//! memory slot. That matters under shadow paging, where KVM keeps its own copy of every guest
//! page table it has walked and does not see the VMM rewrite one: a page-table page must never
//! be given new contents while KVM may still shadow its old ones, and removing a memory slot is
//! what makes KVM drop every shadow of the tables in it.

use super::pte;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use wasmcell_abi::memory_map::{LARGE_PAGE_SIZE, PAGE_SIZE};

const ENTRIES: usize = 512;

/// Rights of a mapped page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFlags {
    pub user: bool,
    pub writable: bool,
    pub executable: bool,
    pub uncached: bool,
}

impl PageFlags {
    const fn new(user: bool, writable: bool, executable: bool, uncached: bool) -> Self {
        Self { user, writable, executable, uncached }
    }
    // The descriptor tables' (x86-64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub const SUPERVISOR_RO: Self = Self::new(false, false, false, false);
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub const SUPERVISOR_RW: Self = Self::new(false, true, false, false);
    pub const SUPERVISOR_RX: Self = Self::new(false, false, true, false);
    pub const USER_RO: Self = Self::new(true, false, false, false);
    pub const USER_RW: Self = Self::new(true, true, false, false);
    pub const USER_RX: Self = Self::new(true, false, true, false);
    pub const USER_MMIO: Self = Self::new(true, true, false, true);
}

/// A mapped range `[start, end)` of guest-virtual addresses, page aligned, to guest-physical
/// `phys..` (the same addresses, for an identity mapping).
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub phys: u64,
    pub flags: PageFlags,
}

impl Mapping {
    /// `[start, end)` identity-mapped.
    pub fn new(start: u64, end: u64, flags: PageFlags) -> Self {
        Self { start, end, phys: start, flags }
    }

    /// `[start, end)` mapped to the guest-physical pages from `phys` on.
    pub fn to(start: u64, end: u64, phys: u64, flags: PageFlags) -> Self {
        Self { start, end, phys, flags }
    }
}

/// Errors while changing page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// The page-table pool is exhausted.
    #[error("Page-table pool exhausted")]
    PoolExhausted,
    /// Two mappings cover the same page, or a range is not page aligned.
    #[error("Mapping at {0:#x} is unaligned or overlaps another")]
    BadMapping(u64),
}

/// The tables, keyed by their guest-physical address, with the pool they come from.
pub struct PageTables {
    tables: BTreeMap<u64, Box<[u64; ENTRIES]>>,
    /// The base address space's root.
    base: u64,
    /// The tables each root owns (its own root included); a table not in its root's set is
    /// shared with the base.
    owned: BTreeMap<u64, BTreeSet<u64>>,
    /// Each root's free pool pages.
    free: BTreeMap<u64, BTreeSet<u64>>,
    dirty: BTreeSet<u64>,
}

fn pages(pool: Range<u64>) -> BTreeSet<u64> {
    (pool.start..pool.end).step_by(PAGE_SIZE as usize).collect()
}

impl PageTables {
    /// Empty tables (a base root only) whose pages come from `pool`.
    pub fn new(pool: Range<u64>) -> Result<Self, PagingError> {
        let mut tables = Self {
            tables: BTreeMap::new(),
            base: 0,
            owned: BTreeMap::new(),
            free: BTreeMap::from([(0, pages(pool))]),
            dirty: BTreeSet::new(),
        };
        let base = tables.allocate(0)?;
        tables.rekey(0, base);
        tables.base = base;
        Ok(tables)
    }

    /// Files the pool and tables allocated under the placeholder root `from` under `root`.
    fn rekey(&mut self, from: u64, root: u64) {
        let free = self.free.remove(&from).unwrap_or_default();
        let owned = self.owned.remove(&from).unwrap_or_default();
        self.free.insert(root, free);
        self.owned.insert(root, owned);
    }

    /// Guest-physical address of the base root table (`CR3` of a vCPU without a workload).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// A new address space that maps what the base maps (and nothing else, until mapped), with
    /// its tables from `pool` (pages no address space has used): its root's address.
    pub fn fork(&mut self, pool: Range<u64>) -> Result<u64, PagingError> {
        let placeholder = u64::MAX;
        self.free.insert(placeholder, pages(pool));
        let root = match self.allocate(placeholder) {
            Ok(root) => root,
            Err(e) => {
                self.free.remove(&placeholder);
                return Err(e);
            }
        };
        self.rekey(placeholder, root);
        let entries = *self.tables[&self.base].clone();
        **self.tables.get_mut(&root).expect("allocated") = entries;
        Ok(root)
    }

    /// Forgets a forked address space: its root, its tables and its pool.
    pub fn drop_root(&mut self, root: u64) {
        if root == self.base {
            return;
        }
        self.free.remove(&root);
        for table in self.owned.remove(&root).unwrap_or_default() {
            self.tables.remove(&table);
            self.dirty.remove(&table);
        }
    }

    /// Maps every mapping of `mappings` in the address space of `root`. On error nothing is
    /// left half mapped, and nothing that was mapped before is touched.
    pub fn map(&mut self, root: u64, mappings: &[Mapping]) -> Result<(), PagingError> {
        for (i, m) in mappings.iter().enumerate() {
            if let Err((reached, e)) = self.map_one(root, m) {
                for done in &mappings[..i] {
                    self.unmap(root, done.start..done.end);
                }
                self.unmap(root, m.start..reached);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Maps `m`; on error, how far it got (everything from `m.start` up to there is mapped).
    fn map_one(&mut self, root: u64, m: &Mapping) -> Result<(), (u64, PagingError)> {
        let aligned = [m.start, m.end, m.phys].iter().all(|a| a.is_multiple_of(PAGE_SIZE));
        if !aligned
            || m.end < m.start
            || pte::address(m.phys) != m.phys
            || m.phys.checked_add(m.end - m.start).is_none()
        {
            return Err((m.start, PagingError::BadMapping(m.start)));
        }
        let mut addr = m.start;
        while addr < m.end {
            let phys = m.phys + (addr - m.start);
            let large = addr.is_multiple_of(LARGE_PAGE_SIZE)
                && phys.is_multiple_of(LARGE_PAGE_SIZE)
                && m.end - addr >= LARGE_PAGE_SIZE;
            let mapped = if large {
                self.set_leaf(root, addr, 2, pte::leaf(phys, m.flags, 2)).map(|()| LARGE_PAGE_SIZE)
            } else {
                self.set_leaf(root, addr, 1, pte::leaf(phys, m.flags, 1)).map(|()| PAGE_SIZE)
            };
            addr += mapped.map_err(|e| (addr, e))?;
        }
        Ok(())
    }

    /// Unmaps every page of `range` that `root` maps, and returns to the pool the tables of
    /// its own left empty. Large pages are removed whole (ranges follow the mappings they undo).
    pub fn unmap(&mut self, root: u64, range: Range<u64>) {
        let mut addr = range.start / PAGE_SIZE * PAGE_SIZE;
        while addr < range.end {
            let step = self.clear_leaf(root, addr).unwrap_or(PAGE_SIZE);
            addr = (addr / step + 1) * step;
        }
    }

    /// Each changed table's guest-physical address and bytes, to be written into guest memory;
    /// they are clean afterwards.
    pub fn take_dirty(&mut self) -> Vec<(u64, [u8; PAGE_SIZE as usize])> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|addr| {
                let mut bytes = [0u8; PAGE_SIZE as usize];
                if let Some(table) = self.tables.get(&addr) {
                    for (chunk, entry) in bytes.chunks_exact_mut(8).zip(table.iter()) {
                        chunk.copy_from_slice(&entry.to_le_bytes());
                    }
                }
                (addr, bytes)
            })
            .collect()
    }

    #[cfg(test)]
    /// Walks the tables of `root` like the MMU: the leaf entry mapping `addr` and its level.
    fn leaf(&self, root: u64, addr: u64) -> Option<(u64, u32)> {
        let mut table = root;
        for level in (1..=4).rev() {
            let entry = self.tables.get(&table)?[index(addr, level)];
            if !pte::is_valid(entry) {
                return None;
            }
            if pte::is_leaf(entry, level) {
                return Some((entry, level));
            }
            table = pte::address(entry);
        }
        None
    }

    #[cfg(test)]
    /// The rights of the page holding `addr` in `root`'s tables, if mapped.
    pub fn translate(&self, root: u64, addr: u64) -> Option<PageFlags> {
        self.leaf(root, addr).map(|(entry, _)| pte::flags(entry))
    }

    #[cfg(test)]
    /// The guest-physical address `addr` maps to in `root`'s tables.
    pub fn physical(&self, root: u64, addr: u64) -> Option<u64> {
        let (entry, level) = self.leaf(root, addr)?;
        let page = if level == 1 { PAGE_SIZE } else { LARGE_PAGE_SIZE };
        Some((pte::address(entry) & !(page - 1)) | (addr & (page - 1)))
    }

    #[cfg(test)]
    /// Tables in use, the root included.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// A zeroed table from `root`'s pool, owned by `root`.
    fn allocate(&mut self, root: u64) -> Result<u64, PagingError> {
        let addr = self.free.get_mut(&root).and_then(BTreeSet::pop_first).ok_or(PagingError::PoolExhausted)?;
        self.tables.insert(addr, Box::new([0; ENTRIES]));
        self.dirty.insert(addr);
        self.owned.entry(root).or_default().insert(addr);
        Ok(addr)
    }

    fn entry_mut(&mut self, table: u64, slot: usize) -> &mut u64 {
        self.dirty.insert(table);
        &mut self.tables.get_mut(&table).expect("allocated")[slot]
    }

    /// A table `root` owns, allocated (or, copy on write, copied from the shared `from`).
    fn own_table(&mut self, root: u64, from: Option<u64>) -> Result<u64, PagingError> {
        let table = self.allocate(root)?;
        if let Some(from) = from {
            let entries = *self.tables[&from].clone();
            **self.tables.get_mut(&table).expect("allocated") = entries;
        }
        Ok(table)
    }

    fn owns(&self, root: u64, table: u64) -> bool {
        self.owned.get(&root).is_some_and(|tables| tables.contains(&table))
    }

    /// Installs `leaf` (an entry mapping `addr`) at `leaf_level` (1 = 4 KiB page, 2 = 2 MiB
    /// page) in `root`'s address space, giving it tables of its own on the way down.
    fn set_leaf(&mut self, root: u64, addr: u64, leaf_level: u32, leaf: u64) -> Result<(), PagingError> {
        let mut table = root;
        for level in (leaf_level + 1..=4).rev() {
            let slot = index(addr, level);
            let entry = self.tables[&table][slot];
            let child = if !pte::is_valid(entry) {
                self.own_table(root, None)?
            } else if pte::is_leaf(entry, level) {
                return Err(PagingError::BadMapping(addr));
            } else if !self.owns(root, pte::address(entry)) {
                self.own_table(root, Some(pte::address(entry)))?
            } else {
                pte::address(entry)
            };
            if child != pte::address(entry) || !pte::is_valid(entry) {
                // Intermediate entries grant everything; the leaf decides.
                *self.entry_mut(table, slot) = pte::table(child);
            }
            table = child;
        }
        let slot = index(addr, leaf_level);
        if pte::is_valid(self.tables[&table][slot]) {
            return Err(PagingError::BadMapping(addr));
        }
        *self.entry_mut(table, slot) = leaf;
        Ok(())
    }

    /// Clears the leaf mapping `addr` in `root`'s own tables, freeing those that become empty;
    /// the size of the page it mapped, or `None` if nothing did (or the leaf is the base's).
    fn clear_leaf(&mut self, root: u64, addr: u64) -> Option<u64> {
        let mut path = Vec::with_capacity(4);
        let mut table = root;
        for level in (1..=4).rev() {
            let slot = index(addr, level);
            let entry = self.tables.get(&table)?[slot];
            if !pte::is_valid(entry) || !self.owns(root, table) {
                return None;
            }
            path.push((table, slot));
            if pte::is_leaf(entry, level) {
                let size = if level == 1 { PAGE_SIZE } else { LARGE_PAGE_SIZE };
                self.release(root, &path);
                return Some(size);
            }
            table = pte::address(entry);
        }
        None
    }

    /// Clears the last entry of `path` and frees each table on it (bottom up, never the root)
    /// that is left with no entry.
    fn release(&mut self, root: u64, path: &[(u64, usize)]) {
        for (depth, &(table, slot)) in path.iter().enumerate().rev() {
            *self.entry_mut(table, slot) = 0;
            let empty = self.tables[&table].iter().all(|&e| e == 0);
            if depth == 0 || !empty {
                break;
            }
            // `table` is empty: free it and clear its entry in the parent (next iteration).
            self.tables.remove(&table);
            self.dirty.remove(&table);
            if let Some(owned) = self.owned.get_mut(&root) {
                owned.remove(&table);
            }
            self.free.entry(root).or_default().insert(table);
        }
    }
}

/// The table index of `addr` at `level` (4 = the root … 1 = the last level).
fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Range<u64> = 0x1_0000..0x2_0000;

    fn build(maps: &[Mapping]) -> PageTables {
        let mut t = PageTables::new(POOL).unwrap();
        let base = t.base();
        t.map(base, maps).unwrap();
        t
    }

    #[test]
    fn large_pages_where_aligned_small_pages_elsewhere() {
        let maps = [
            Mapping::new(0x1000, 0x2000, PageFlags::SUPERVISOR_RW),
            Mapping::new(0x20_0000, 0x60_0000, PageFlags::USER_RW),
            Mapping::new(0x60_0000, 0x60_3000, PageFlags::USER_RX),
        ];
        let t = build(&maps);
        let at = |addr| t.translate(t.base(), addr);
        // PML4, PDPT, PD, a PT for [0, 2M) and a PT for [6M, 8M); [2M, 6M) uses two large pages.
        assert_eq!(t.table_count(), 5);
        assert_eq!(at(0x0), None);
        assert_eq!(at(0x1fff), Some(PageFlags::SUPERVISOR_RW));
        assert_eq!(at(0x2000), None);
        assert_eq!(at(0x3f_ffff), Some(PageFlags::USER_RW));
        assert_eq!(at(0x60_2fff), Some(PageFlags::USER_RX));
        assert_eq!(at(0x60_3000), None);
        assert_eq!(at(1 << 40), None);
    }

    #[test]
    fn overlapping_or_unaligned_mappings_are_refused_and_undone() {
        let overlap =
            [Mapping::new(0x0, 0x40_0000, PageFlags::USER_RW), Mapping::new(0x1000, 0x2000, PageFlags::USER_RO)];
        let mut t = PageTables::new(POOL).unwrap();
        let base = t.base();
        assert!(matches!(t.map(base, &overlap), Err(PagingError::BadMapping(0x1000))));
        assert_eq!(t.translate(base, 0x0), None, "the first mapping was undone");
        assert_eq!(t.table_count(), 1);
        let unaligned = [Mapping::new(0x1001, 0x2000, PageFlags::USER_RO)];
        assert!(matches!(t.map(base, &unaligned), Err(PagingError::BadMapping(0x1001))));
    }

    #[test]
    fn a_refused_mapping_leaves_what_was_mapped_before() {
        let mut t = build(&[Mapping::new(0x1000, 0x2000, PageFlags::SUPERVISOR_RW)]);
        let base = t.base();
        t.map(base, &[Mapping::to(0x40_0000_3000, 0x40_0000_5000, 0x9000, PageFlags::USER_RW)]).unwrap();
        // Overlaps the page at +0x3000 after mapping +0x1000 and +0x2000: those two are undone.
        let overlapping = [Mapping::to(0x40_0000_1000, 0x40_0000_6000, 0x2_0000, PageFlags::USER_RW)];
        assert!(matches!(t.map(base, &overlapping), Err(PagingError::BadMapping(0x40_0000_3000))));
        assert_eq!(t.translate(base, 0x40_0000_1000), None);
        assert_eq!(t.translate(base, 0x40_0000_2000), None);
        assert_eq!(t.physical(base, 0x40_0000_3000), Some(0x9000), "mapped before: untouched");
        assert_eq!(t.physical(base, 0x40_0000_4000), Some(0xa000));
        assert_eq!(t.translate(base, 0x40_0000_5000), None);
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let maps = [Mapping::new(0x1000, 0x40_0000, PageFlags::USER_RW)];
        let mut t = PageTables::new(0x1_0000..0x1_3000).unwrap();
        let base = t.base();
        assert!(matches!(t.map(base, &maps), Err(PagingError::PoolExhausted)));
    }

    #[test]
    fn each_window_has_an_address_space_of_its_own_over_the_shared_base() {
        let mut t = build(&[Mapping::new(0x1000, 0x2000, PageFlags::SUPERVISOR_RW)]);
        let (base, before) = (t.base(), t.table_count());
        let _ = t.take_dirty();
        let window = |k: u64| 0x1_0000_0000 * (k + 1);
        let parts = |w: u64| {
            [
                Mapping::new(w, w + 0x3000, PageFlags::USER_RX),
                Mapping::new(w + 0x20_0000, w + 0x80_0000, PageFlags::USER_RW),
            ]
        };
        let pool = |k: u64| window(k) + 0x4000_0000..window(k) + 0x4001_0000;
        let (a, b) = (t.fork(pool(0)).unwrap(), t.fork(pool(1)).unwrap());
        t.map(a, &parts(window(0))).unwrap();
        t.map(b, &parts(window(1))).unwrap();
        // Each sees the base and its own window, and nothing of the other's.
        for (root, own, other) in [(a, window(0), window(1)), (b, window(1), window(0))] {
            assert_eq!(t.translate(root, 0x1000), Some(PageFlags::SUPERVISOR_RW));
            assert_eq!(t.translate(root, own + 0x2000), Some(PageFlags::USER_RX));
            assert_eq!(t.translate(root, own + 0x7f_ffff), Some(PageFlags::USER_RW));
            assert_eq!(t.translate(root, other), None);
        }
        assert_eq!(t.translate(base, window(0)), None, "the base maps no window");
        // A root, a PDPT copied from the base's, a PD and a PT each; the base's PD is shared.
        assert_eq!(t.table_count(), before + 8);
        let dirty: Vec<u64> = t.take_dirty().into_iter().map(|(addr, _)| addr).collect();
        assert_eq!(dirty.len(), 8, "only the windows' own tables are written: {dirty:x?}");
        assert!(dirty.iter().all(|&d| pool(0).contains(&d) || pool(1).contains(&d)), "{dirty:x?}");
        t.drop_root(a);
        assert_eq!(t.table_count(), before + 4, "a's tables are gone");
        assert_eq!(t.translate(b, window(1)), Some(PageFlags::USER_RX));
        // The same window maps again, from its next memory slot's pool.
        let again = t.fork(pool(0)).unwrap();
        t.map(again, &parts(window(0))).unwrap();
        assert_eq!(t.table_count(), before + 8);
        // A pool too small for the window fails cleanly.
        let tiny = t.fork(window(2) + 0x4000_0000..window(2) + 0x4000_2000).unwrap();
        assert!(matches!(t.map(tiny, &parts(window(2))), Err(PagingError::PoolExhausted)));
    }

    #[test]
    fn unmapping_frees_the_tables_left_empty() {
        let mut t = build(&[Mapping::new(0x1000, 0x2000, PageFlags::SUPERVISOR_RW)]);
        let (base, before) = (t.base(), t.table_count());
        t.map(base, &[Mapping::new(0x40_0000_0000, 0x40_0000_3000, PageFlags::USER_RO)]).unwrap();
        t.unmap(base, 0x40_0000_0000..0x40_0000_3000);
        assert_eq!(t.translate(base, 0x40_0000_0000), None);
        assert_eq!(t.translate(base, 0x1000), Some(PageFlags::SUPERVISOR_RW));
        assert_eq!(t.table_count(), before);
    }
}
