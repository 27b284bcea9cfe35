//! x86-64 page-table entries: what `paging` writes for a table, a 4 KiB page and a 2 MiB page.

use super::super::paging::PageFlags;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const LARGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// An entry pointing at the table at `child`: it grants everything, the leaf decides.
pub fn table(child: u64) -> u64 {
    child | PRESENT | WRITABLE | USER
}

/// An entry mapping the page at `phys` with `flags`, at `level` (1 = 4 KiB, 2 = 2 MiB).
pub fn leaf(phys: u64, flags: PageFlags, level: u32) -> u64 {
    let mut bits = phys | PRESENT;
    if level > 1 {
        bits |= LARGE;
    }
    if flags.writable {
        bits |= WRITABLE;
    }
    if flags.user {
        bits |= USER;
    }
    if flags.uncached {
        bits |= WRITE_THROUGH | CACHE_DISABLE;
    }
    if !flags.executable {
        bits |= NO_EXECUTE;
    }
    bits
}

pub fn is_valid(entry: u64) -> bool {
    entry & PRESENT != 0
}

/// Whether a valid `entry` at `level` maps a page (rather than pointing at a table).
pub fn is_leaf(entry: u64, level: u32) -> bool {
    level == 1 || entry & LARGE != 0
}

/// The physical address an entry names.
pub fn address(entry: u64) -> u64 {
    entry & ADDRESS_MASK
}

/// The rights a leaf entry grants.
#[cfg(test)]
pub fn flags(entry: u64) -> PageFlags {
    PageFlags {
        user: entry & USER != 0,
        writable: entry & WRITABLE != 0,
        executable: entry & NO_EXECUTE == 0,
        uncached: entry & CACHE_DISABLE != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_encode_rights() {
        assert_eq!(leaf(0x5000, PageFlags::USER_RX, 1), 0x5000 | PRESENT | USER);
        assert_eq!(leaf(0, PageFlags::SUPERVISOR_RW, 1), PRESENT | WRITABLE | NO_EXECUTE);
        assert_eq!(leaf(0, PageFlags::USER_MMIO, 1) & (CACHE_DISABLE | WRITE_THROUGH), CACHE_DISABLE | WRITE_THROUGH);
        assert!(is_leaf(leaf(0x20_0000, PageFlags::USER_RW, 2), 2));
        assert!(!is_leaf(table(0x3000), 2));
        for flags in [PageFlags::USER_RO, PageFlags::USER_RW, PageFlags::USER_RX, PageFlags::SUPERVISOR_RX] {
            assert_eq!(super::flags(leaf(0x7000, flags, 1)), flags);
        }
    }
}
