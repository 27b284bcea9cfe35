//! The guest-physical memory map, identical to the guest-virtual one (the VMM's page tables map
//! every used page 1:1).
//!
//! ```text
//! 0x0000_0000  null guard page                     unmapped
//! 0x0000_1000  GDT                                 supervisor rw
//! 0x0000_2000  IDT                                 supervisor ro
//! 0x0000_3000  TSS                                 supervisor rw
//! 0x0000_4000  exception stubs                     supervisor rx
//! 0x0000_6000  exception stack (8 KiB)             supervisor rw   (guard page below)
//! 0x0000_9000  double-fault stack (4 KiB)          supervisor rw   (guard page below)
//! 0x0001_0000  page tables (up to 960 KiB)         not mapped; the MMU reads them physically
//! 0x0010_0000  boot info                           user ro
//! 0x0010_1000  control block                       user rw
//! 0x0020_0000  boot stack guard page               unmapped
//! 0x0020_1000  boot stack (2 MiB - 4 KiB)          user rw
//! 0x0040_0000  guest image (ELF, linked here)      user, per segment: r-x / r-- / rw-
//! image end    heap, up to the end of RAM          user rw
//! 0xc000_0000  MMIO window (1 GiB)                 user rw, uncached
//! ```
//! Everything user-visible is mapped no-execute except the image's code segment. RAM is at
//! most [`RAM_MAX`] so that it never reaches the MMIO window.

/// Size of a small page.
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a large page (one page-directory entry on x86-64).
pub const LARGE_PAGE_SIZE: u64 = 0x20_0000;

/// Never mapped: catches null-pointer accesses.
pub const NULL_GUARD: u64 = 0x0;
/// Global descriptor table (x86-64).
pub const GDT: u64 = 0x1000;
/// Interrupt descriptor table (x86-64).
pub const IDT: u64 = 0x2000;
/// Task-state segment (x86-64): the stacks used when a fault leaves CPL 3.
pub const TSS: u64 = 0x3000;
/// The CPL 0 exception stubs, [`EXCEPTION_STUB_SIZE`] bytes per vector.
pub const EXCEPTION_STUBS: u64 = 0x4000;
/// Bytes per exception stub.
pub const EXCEPTION_STUB_SIZE: u64 = 16;
/// Number of exception vectors with a stub (all architectural exceptions).
pub const EXCEPTION_VECTORS: u64 = 32;
/// Bottom of the stack used by exceptions taken from CPL 3.
pub const EXCEPTION_STACK: u64 = 0x6000;
/// Top of that stack (exclusive).
pub const EXCEPTION_STACK_TOP: u64 = 0x8000;
/// Bottom of the stack used for double faults, NMI and machine checks (IST 1).
pub const DOUBLE_FAULT_STACK: u64 = 0x9000;
/// Top of that stack (exclusive).
pub const DOUBLE_FAULT_STACK_TOP: u64 = 0xa000;
/// First page of the page-table pool.
pub const PAGE_TABLES: u64 = 0x1_0000;
/// End of the page-table pool (exclusive).
pub const PAGE_TABLES_END: u64 = 0x10_0000;
/// The [`crate::BootInfo`] page.
pub const BOOT_INFO: u64 = 0x10_0000;
/// The [`crate::control::ControlBlock`] page.
pub const CONTROL_BLOCK: u64 = 0x10_1000;
/// Unmapped page below the boot stack.
pub const STACK_GUARD: u64 = 0x20_0000;
/// Lowest byte of the boot stack.
pub const STACK_BOTTOM: u64 = STACK_GUARD + PAGE_SIZE;
/// One past the highest byte of the boot stack.
pub const STACK_TOP: u64 = 0x40_0000;
/// Where the guest image is linked and loaded.
pub const IMAGE_START: u64 = 0x40_0000;
/// The image must end below this address.
pub const IMAGE_LIMIT: u64 = 0x200_0000;
/// Start of the MMIO window.
pub const MMIO_START: u64 = 0xc000_0000;
/// End of the MMIO window (exclusive).
pub const MMIO_END: u64 = 0x1_0000_0000;
/// Largest amount of RAM the layout allows.
pub const RAM_MAX: u64 = MMIO_START;

const _: () = {
    assert!(EXCEPTION_STUBS + EXCEPTION_VECTORS * EXCEPTION_STUB_SIZE <= EXCEPTION_STUBS + PAGE_SIZE);
    assert!(STACK_TOP == IMAGE_START);
    assert!(STACK_TOP.is_multiple_of(16));
    assert!(PAGE_TABLES_END <= BOOT_INFO);
    assert!(IMAGE_LIMIT <= RAM_MAX);
};
