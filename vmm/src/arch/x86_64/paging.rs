//! x86-64 4-level page tables for the guest's identity map, built on the host before boot.
//!
//! Large (2 MiB) pages wherever a whole aligned 2 MiB range shares its rights, 4 KiB pages
//! elsewhere, so that W^X and supervisor-only pages cost a page table only where they are needed.
//! Tables come from a fixed pool of guest-physical pages that is itself never mapped: the guest
//! cannot read or rewrite its own page tables.

use std::collections::BTreeMap;
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

/// Errors while building page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// The page-table pool is exhausted.
    #[error("Page-table pool exhausted")]
    PoolExhausted,
    /// Two mappings cover the same page, or a range is not page aligned.
    #[error("Mapping at {0:#x} is unaligned or overlaps another")]
    BadMapping(u64),
}

/// The tables, keyed by their guest-physical address; the first one is the root (PML4).
pub struct PageTables {
    tables: BTreeMap<u64, Box<[u64; ENTRIES]>>,
    root: u64,
    next_free: u64,
    pool_end: u64,
}

impl PageTables {
    /// Builds tables that map exactly `mappings`, allocating them from `pool`.
    pub fn build(mappings: &[Mapping], pool: Range<u64>) -> Result<Self, PagingError> {
        let mut tables = Self { tables: BTreeMap::new(), root: pool.start, next_free: pool.start, pool_end: pool.end };
        tables.allocate()?;
        for m in mappings {
            if m.start % PAGE_SIZE != 0 || m.end % PAGE_SIZE != 0 || m.end < m.start {
                return Err(PagingError::BadMapping(m.start));
            }
            let mut addr = m.start;
            while addr < m.end {
                if addr % LARGE_PAGE_SIZE == 0 && m.end - addr >= LARGE_PAGE_SIZE {
                    tables.map(addr, 2, m.flags.leaf_bits() | LARGE)?;
                    addr += LARGE_PAGE_SIZE;
                } else {
                    tables.map(addr, 1, m.flags.leaf_bits())?;
                    addr += PAGE_SIZE;
                }
            }
        }
        Ok(tables)
    }

    /// Each table's guest-physical address and bytes, to be written into guest memory.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.tables.iter().map(|(&addr, table)| {
            // SAFETY: `[u64; 512]` is plain data; viewing it as its 4096 bytes is always valid.
            let bytes = unsafe { std::slice::from_raw_parts(table.as_ptr().cast::<u8>(), PAGE_SIZE as usize) };
            (addr, bytes)
        })
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

    fn allocate(&mut self) -> Result<u64, PagingError> {
        if self.next_free >= self.pool_end {
            return Err(PagingError::PoolExhausted);
        }
        let addr = self.next_free;
        self.next_free += PAGE_SIZE;
        self.tables.insert(addr, Box::new([0; ENTRIES]));
        Ok(addr)
    }

    /// Installs a leaf for `addr` at `leaf_level` (1 = 4 KiB page, 2 = 2 MiB page).
    fn map(&mut self, addr: u64, leaf_level: u32, leaf_bits: u64) -> Result<(), PagingError> {
        let mut table = self.root;
        for level in (leaf_level + 1..=4).rev() {
            let slot = index(addr, level);
            let entry = self.tables[&table][slot];
            table = if entry & PRESENT == 0 {
                let child = self.allocate()?;
                // Intermediate entries grant everything; the leaf decides.
                self.tables.get_mut(&table).expect("allocated")[slot] = child | PRESENT | WRITABLE | USER;
                child
            } else if entry & LARGE != 0 {
                return Err(PagingError::BadMapping(addr));
            } else {
                entry & ADDRESS_MASK
            };
        }
        let leaf = &mut self.tables.get_mut(&table).expect("allocated")[index(addr, leaf_level)];
        if *leaf & PRESENT != 0 {
            return Err(PagingError::BadMapping(addr));
        }
        *leaf = addr | leaf_bits;
        Ok(())
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

    #[test]
    fn large_pages_where_aligned_small_pages_elsewhere() {
        let maps = [
            Mapping::new(0x1000, 0x2000, PageFlags::SUPERVISOR_RW),
            Mapping::new(0x20_0000, 0x60_0000, PageFlags::USER_RW),
            Mapping::new(0x60_0000, 0x60_3000, PageFlags::USER_RX),
        ];
        let t = PageTables::build(&maps, POOL).unwrap();
        // PML4, PDPT, PD, a PT for [0, 2M) and a PT for [6M, 8M); [2M, 6M) uses two large pages.
        assert_eq!(t.tables.len(), 5);
        assert_eq!(t.translate(0x0), None);
        assert_eq!(t.translate(0x1fff), Some(PageFlags::SUPERVISOR_RW));
        assert_eq!(t.translate(0x2000), None);
        assert_eq!(t.translate(0x3f_ffff), Some(PageFlags::USER_RW));
        assert_eq!(t.translate(0x60_2fff), Some(PageFlags::USER_RX));
        assert_eq!(t.translate(0x60_3000), None);
        assert_eq!(t.translate(1 << 40), None);
    }

    #[test]
    fn overlapping_or_unaligned_mappings_are_refused() {
        let overlap =
            [Mapping::new(0x0, 0x40_0000, PageFlags::USER_RW), Mapping::new(0x1000, 0x2000, PageFlags::USER_RO)];
        assert!(matches!(PageTables::build(&overlap, POOL), Err(PagingError::BadMapping(0x1000))));
        let unaligned = [Mapping::new(0x1001, 0x2000, PageFlags::USER_RO)];
        assert!(matches!(PageTables::build(&unaligned, POOL), Err(PagingError::BadMapping(0x1001))));
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let maps = [Mapping::new(0x1000, 0x40_0000, PageFlags::USER_RW)];
        assert!(matches!(PageTables::build(&maps, 0x1_0000..0x1_3000), Err(PagingError::PoolExhausted)));
    }

    #[test]
    fn leaf_bits_encode_rights() {
        assert_eq!(PageFlags::USER_RX.leaf_bits(), PRESENT | USER);
        assert_eq!(PageFlags::SUPERVISOR_RW.leaf_bits(), PRESENT | WRITABLE | NO_EXECUTE);
        assert_eq!(PageFlags::USER_MMIO.leaf_bits() & (CACHE_DISABLE | WRITE_THROUGH), CACHE_DISABLE | WRITE_THROUGH);
    }
}
