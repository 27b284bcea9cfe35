//! aarch64 stage-1 translation-table entries (4 KiB granule, 48-bit virtual addresses): what
//! `paging` writes for a table, a 4 KiB page and a 2 MiB block.
//!
//! Memory types come from `MAIR_EL1` (`regs.rs`): index 0 normal write-back memory, index 1
//! device-nGnRnE for MMIO pages. Every leaf has its access flag set, so the MMU never needs to
//! write a table (the guest cannot reach them). Execute rights are split by level: user code is
//! never executable at EL1 (`PXN`, as SMEP on x86-64) and the EL1 vectors never at EL0 (`UXN`).

use super::super::paging::PageFlags;

const VALID: u64 = 1 << 0;
/// Bit 1: a table (levels 2–4) or a page (level 1); clear in a block.
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_DEVICE: u64 = 1 << 2;
/// `AP[1]`: EL0 may access.
const AP_EL0: u64 = 1 << 6;
/// `AP[2]`: read-only.
const AP_READ_ONLY: u64 = 1 << 7;
const INNER_SHAREABLE: u64 = 3 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// An entry pointing at the table at `child`: no table-level restrictions, the leaf decides.
pub fn table(child: u64) -> u64 {
    child | VALID | TABLE_OR_PAGE
}

/// An entry mapping the page at `phys` with `flags`, at `level` (1 = 4 KiB page, 2 = 2 MiB block).
pub fn leaf(phys: u64, flags: PageFlags, level: u32) -> u64 {
    let mut bits = phys | VALID | ACCESS_FLAG;
    if level == 1 {
        bits |= TABLE_OR_PAGE;
    }
    bits |= if flags.uncached { ATTR_DEVICE } else { INNER_SHAREABLE };
    if flags.user {
        bits |= AP_EL0;
    }
    if !flags.writable {
        bits |= AP_READ_ONLY;
    }
    bits |= match (flags.executable, flags.user) {
        (false, _) => PXN | UXN,
        (true, true) => PXN,
        (true, false) => UXN,
    };
    bits
}

pub fn is_valid(entry: u64) -> bool {
    entry & VALID != 0
}

/// Whether a valid `entry` at `level` maps memory (a page or block, not a table).
pub fn is_leaf(entry: u64, level: u32) -> bool {
    level == 1 || entry & TABLE_OR_PAGE == 0
}

/// The physical address an entry names.
pub fn address(entry: u64) -> u64 {
    entry & ADDRESS_MASK
}

/// The rights a leaf entry grants.
#[cfg(test)]
pub fn flags(entry: u64) -> PageFlags {
    let user = entry & AP_EL0 != 0;
    PageFlags {
        user,
        writable: entry & AP_READ_ONLY == 0,
        executable: entry & if user { UXN } else { PXN } == 0,
        uncached: entry & ATTR_DEVICE != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_encode_rights() {
        // User code: EL0 may run it, EL1 never; read-only.
        let code = leaf(0x5000, PageFlags::USER_RX, 1);
        assert_eq!(code & (UXN | PXN | AP_EL0 | AP_READ_ONLY), PXN | AP_EL0 | AP_READ_ONLY);
        // EL1 vectors: EL1 only, never EL0.
        assert_eq!(leaf(0, PageFlags::SUPERVISOR_RX, 1) & (UXN | PXN | AP_EL0), UXN);
        assert_eq!(leaf(0, PageFlags::USER_MMIO, 1) & (ATTR_DEVICE | UXN | PXN), ATTR_DEVICE | UXN | PXN);
        assert!(is_leaf(leaf(0x20_0000, PageFlags::USER_RW, 2), 2));
        assert!(!is_leaf(table(0x3000), 2));
        for flags in [PageFlags::USER_RO, PageFlags::USER_RW, PageFlags::USER_RX, PageFlags::SUPERVISOR_RX] {
            assert_eq!(super::flags(leaf(0x7000, flags, 1)), flags);
        }
    }
}
