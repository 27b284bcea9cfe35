//! x86-64 4-level page tables for the guest's identity map, kept by the VMM for the VM's whole
//! life: built before boot, then changed while the guest runs as workload windows come and go.
//!
//! Large (2 MiB) pages wherever a whole aligned 2 MiB range shares its rights, 4 KiB pages
//! elsewhere, so that W^X and supervisor-only pages cost a page table only where they are needed.
//! Tables come from a fixed pool of guest-physical pages that is itself never mapped: the guest
//! cannot read or rewrite its own page tables. Every change marks the tables it touched; the
//! caller writes exactly those into guest memory.
//!
//! Mapping a range that was unmapped needs no TLB flush (x86 caches no not-present entries).
//! Unmapping does: the VMM removes the range's memory slot too (KVM then drops its shadow or
//! EPT entries) and reloads the CR3 of the vCPU it gives the range to next.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use wasmcell_abi::memory_map::{LARGE_PAGE_SIZE, PAGE_SIZE};

const ENTRIES: usize = 512;
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const LARGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

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
    pub const SUPERVISOR_RO: Self = Self::new(false, false, false, false);
    pub const SUPERVISOR_RW: Self = Self::new(false, true, false, false);
    pub const SUPERVISOR_RX: Self = Self::new(false, false, true, false);
    pub const USER_RO: Self = Self::new(true, false, false, false);
    pub const USER_RW: Self = Self::new(true, true, false, false);
    pub const USER_RX: Self = Self::new(true, false, true, false);
    pub const USER_MMIO: Self = Self::new(true, true, false, true);

    fn leaf_bits(self) -> u64 {
        let mut bits = PRESENT;
        if self.writable {
            bits |= WRITABLE;
        }
        if self.user {
            bits |= USER;
        }
        if self.uncached {
            bits |= WRITE_THROUGH | CACHE_DISABLE;
        }
        if !self.executable {
            bits |= NO_EXECUTE;
        }
        bits
    }

    #[cfg(test)]
    fn from_leaf(entry: u64) -> Self {
        Self {
            user: entry & USER != 0,
            writable: entry & WRITABLE != 0,
            executable: entry & NO_EXECUTE == 0,
            uncached: entry & CACHE_DISABLE != 0,
        }
    }
}

/// An identity-mapped range `[start, end)`, page aligned.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub flags: PageFlags,
}

impl Mapping {
    pub fn new(start: u64, end: u64, flags: PageFlags) -> Self {
        Self { start, end, flags }
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
    root: u64,
    free: BTreeSet<u64>,
    dirty: BTreeSet<u64>,
}

impl PageTables {
    /// Empty tables (a root only) whose pages come from `pool`.
    pub fn new(pool: Range<u64>) -> Result<Self, PagingError> {
        let free = (pool.start..pool.end).step_by(PAGE_SIZE as usize).collect();
        let mut tables = Self { tables: BTreeMap::new(), root: pool.start, free, dirty: BTreeSet::new() };
        tables.root = tables.allocate()?;
        Ok(tables)
    }

    /// Guest-physical address of the root table (`CR3`).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps every mapping of `mappings`. On error nothing is left half mapped.
    pub fn map(&mut self, mappings: &[Mapping]) -> Result<(), PagingError> {
        for (i, m) in mappings.iter().enumerate() {
            if let Err(e) = self.map_one(m) {
                for done in &mappings[..=i] {
                    self.unmap(done.start..done.end);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn map_one(&mut self, m: &Mapping) -> Result<(), PagingError> {
        if !m.start.is_multiple_of(PAGE_SIZE) || !m.end.is_multiple_of(PAGE_SIZE) || m.end < m.start {
            return Err(PagingError::BadMapping(m.start));
        }
        let mut addr = m.start;
        while addr < m.end {
            if addr.is_multiple_of(LARGE_PAGE_SIZE) && m.end - addr >= LARGE_PAGE_SIZE {
                self.set_leaf(addr, 2, m.flags.leaf_bits() | LARGE)?;
                addr += LARGE_PAGE_SIZE;
            } else {
                self.set_leaf(addr, 1, m.flags.leaf_bits())?;
                addr += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Unmaps every page of `range` that is mapped, and returns to the pool the tables left
    /// empty. Large pages are removed whole (ranges follow the mappings they undo).
    pub fn unmap(&mut self, range: Range<u64>) {
        let mut addr = range.start / PAGE_SIZE * PAGE_SIZE;
        while addr < range.end {
            let step = self.clear_leaf(addr).unwrap_or(PAGE_SIZE);
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
    /// Walks the tables like the MMU: the rights of the page holding `addr`, if mapped.
    pub fn translate(&self, addr: u64) -> Option<PageFlags> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let entry = self.tables.get(&table)?[index(addr, level)];
            if entry & PRESENT == 0 {
                return None;
            }
            if level == 1 || entry & LARGE != 0 {
                return Some(PageFlags::from_leaf(entry));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    #[cfg(test)]
    /// Tables in use, the root included.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    fn allocate(&mut self) -> Result<u64, PagingError> {
        let addr = self.free.pop_first().ok_or(PagingError::PoolExhausted)?;
        self.tables.insert(addr, Box::new([0; ENTRIES]));
        self.dirty.insert(addr);
        Ok(addr)
    }

    fn entry_mut(&mut self, table: u64, slot: usize) -> &mut u64 {
        self.dirty.insert(table);
        &mut self.tables.get_mut(&table).expect("allocated")[slot]
    }

    /// Installs a leaf for `addr` at `leaf_level` (1 = 4 KiB page, 2 = 2 MiB page).
    fn set_leaf(&mut self, addr: u64, leaf_level: u32, leaf_bits: u64) -> Result<(), PagingError> {
        let mut table = self.root;
        for level in (leaf_level + 1..=4).rev() {
            let slot = index(addr, level);
            let entry = self.tables[&table][slot];
            table = if entry & PRESENT == 0 {
                let child = self.allocate()?;
                // Intermediate entries grant everything; the leaf decides.
                *self.entry_mut(table, slot) = child | PRESENT | WRITABLE | USER;
                child
            } else if entry & LARGE != 0 {
                return Err(PagingError::BadMapping(addr));
            } else {
                entry & ADDRESS_MASK
            };
        }
        let slot = index(addr, leaf_level);
        if self.tables[&table][slot] & PRESENT != 0 {
            return Err(PagingError::BadMapping(addr));
        }
        *self.entry_mut(table, slot) = addr | leaf_bits;
        Ok(())
    }

    /// Clears the leaf mapping `addr`, freeing tables that become empty; the size of the page
    /// it mapped, or `None` if nothing did.
    fn clear_leaf(&mut self, addr: u64) -> Option<u64> {
        let mut path = Vec::with_capacity(4);
        let mut table = self.root;
        for level in (1..=4).rev() {
            let slot = index(addr, level);
            let entry = self.tables.get(&table)?[slot];
            if entry & PRESENT == 0 {
                return None;
            }
            path.push((table, slot));
            if level == 1 || entry & LARGE != 0 {
                let size = if level == 1 { PAGE_SIZE } else { LARGE_PAGE_SIZE };
                self.release(&path);
                return Some(size);
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// Clears the last entry of `path` and frees each table on it (bottom up, never the root)
    /// that is left with no entry.
    fn release(&mut self, path: &[(u64, usize)]) {
        for (depth, &(table, slot)) in path.iter().enumerate().rev() {
            *self.entry_mut(table, slot) = 0;
            let empty = self.tables[&table].iter().all(|&e| e == 0);
            if depth == 0 || !empty {
                break;
            }
            // `table` is empty: free it and clear its entry in the parent (next iteration).
            self.tables.remove(&table);
            self.dirty.remove(&table);
            self.free.insert(table);
        }
    }
}

/// The table index of `addr` at `level` (4 = PML4 … 1 = PT).
fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Range<u64> = 0x1_0000..0x2_0000;

    fn build(maps: &[Mapping]) -> PageTables {
        let mut t = PageTables::new(POOL).unwrap();
        t.map(maps).unwrap();
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
        // PML4, PDPT, PD, a PT for [0, 2M) and a PT for [6M, 8M); [2M, 6M) uses two large pages.
        assert_eq!(t.table_count(), 5);
        assert_eq!(t.translate(0x0), None);
        assert_eq!(t.translate(0x1fff), Some(PageFlags::SUPERVISOR_RW));
        assert_eq!(t.translate(0x2000), None);
        assert_eq!(t.translate(0x3f_ffff), Some(PageFlags::USER_RW));
        assert_eq!(t.translate(0x60_2fff), Some(PageFlags::USER_RX));
        assert_eq!(t.translate(0x60_3000), None);
        assert_eq!(t.translate(1 << 40), None);
    }

    #[test]
    fn overlapping_or_unaligned_mappings_are_refused_and_undone() {
        let overlap =
            [Mapping::new(0x0, 0x40_0000, PageFlags::USER_RW), Mapping::new(0x1000, 0x2000, PageFlags::USER_RO)];
        let mut t = PageTables::new(POOL).unwrap();
        assert!(matches!(t.map(&overlap), Err(PagingError::BadMapping(0x1000))));
        assert_eq!(t.translate(0x0), None, "the first mapping was undone");
        assert_eq!(t.table_count(), 1);
        let unaligned = [Mapping::new(0x1001, 0x2000, PageFlags::USER_RO)];
        assert!(matches!(t.map(&unaligned), Err(PagingError::BadMapping(0x1001))));
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let maps = [Mapping::new(0x1000, 0x40_0000, PageFlags::USER_RW)];
        let mut t = PageTables::new(0x1_0000..0x1_3000).unwrap();
        assert!(matches!(t.map(&maps), Err(PagingError::PoolExhausted)));
    }

    #[test]
    fn unmapping_a_window_frees_its_tables_and_keeps_the_rest() {
        let base = [Mapping::new(0x1000, 0x2000, PageFlags::SUPERVISOR_RW)];
        let mut t = build(&base);
        let before = t.table_count();
        let _ = t.take_dirty();
        let window = 0x1_0000_0000;
        let parts = [
            Mapping::new(window, window + 0x3000, PageFlags::USER_RX),
            Mapping::new(window + 0x20_0000, window + 0x80_0000, PageFlags::USER_RW),
        ];
        t.map(&parts).unwrap();
        assert_eq!(t.translate(window + 0x2000), Some(PageFlags::USER_RX));
        assert_eq!(t.translate(window + 0x7f_ffff), Some(PageFlags::USER_RW));
        // A PD and a PT for the window; the PDPT is shared with the base.
        assert_eq!(t.table_count(), before + 2);
        assert!(!t.take_dirty().is_empty());
        t.unmap(window..window + 0x80_0000);
        assert_eq!(t.translate(window), None);
        assert_eq!(t.translate(window + 0x20_0000), None);
        assert_eq!(t.translate(0x1000), Some(PageFlags::SUPERVISOR_RW));
        assert_eq!(t.table_count(), before, "the window's tables went back to the pool");
        // The changed parent (the PDPT) is rewritten; the freed tables are not.
        let dirty: Vec<u64> = t.take_dirty().into_iter().map(|(addr, _)| addr).collect();
        assert_eq!(dirty.len(), 1, "{dirty:x?}");
        // The same window maps again from the freed pages.
        t.map(&parts).unwrap();
        assert_eq!(t.table_count(), before + 2);
    }

    #[test]
    fn leaf_bits_encode_rights() {
        assert_eq!(PageFlags::USER_RX.leaf_bits(), PRESENT | USER);
        assert_eq!(PageFlags::SUPERVISOR_RW.leaf_bits(), PRESENT | WRITABLE | NO_EXECUTE);
        assert_eq!(PageFlags::USER_MMIO.leaf_bits() & (CACHE_DISABLE | WRITE_THROUGH), CACHE_DISABLE | WRITE_THROUGH);
    }
}
