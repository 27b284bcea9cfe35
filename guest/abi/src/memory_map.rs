//! The guest-physical memory map, identical to the guest-virtual one (the VMM's page tables map
//! every used page 1:1) except for the kernel's writable data in a workload's address space.
//!
//! ```text
//! 0x0000_0000  null guard page                     unmapped
//! 0x0000_1000  GDT                                 supervisor rw
//! 0x0000_2000  IDT                                 supervisor ro
//! 0x0000_4000  exception stubs                     supervisor rx
//! 0x0000_f000  boot info                           user ro
//! 0x0001_0000  vCPU areas, 64 KiB each (below)     the running vCPU's own only
//! 0x0021_0000  page tables (up to 1984 KiB)        not mapped; the MMU reads them physically
//! 0x0040_0000  guest image (ELF, linked here)      user, per segment: r-x / r-- / rw-
//! image end    kernel heap, up to the end of RAM   user rw, boot vCPU only
//! 0xc000_0000  MMIO window (1 GiB)                 a workload's own console page only
//! 0x1_0000_0000 + k × 4 GiB   workload window k    per part (a KVM memory slot of its own)
//! 0x4000_0000_0000 + k × 8 GiB guarded memory k    virtual only: its heap pages, as it grows
//! ```
//!
//! Every vCPU runs in an address space of its own that maps only what it needs: the shared,
//! read-only parts of base RAM (the image's code and read-only data, the boot info) and the
//! system pages the CPU itself uses (supervisor-only), plus its own vCPU area. The boot vCPU
//! (no workload) adds the image's writable data and the kernel heap, identity-mapped. A
//! workload's vCPU adds its own window, its own console's register page and, at the image's
//! writable-data addresses, a private copy of that data inside its window: workloads share no
//! writable page with each other or with the boot vCPU.
//!
//! A vCPU area holds what one vCPU needs for itself:
//!
//! ```text
//! +0x0000  vCPU block (`crate::vcpu::VcpuBlock`)   user rw   (the vCPU's GS base)
//! +0x1000  vCPU info (`crate::vcpu::VcpuInfo`)     user ro
//! +0x2000  TSS + I/O permission bitmap             supervisor rw
//! +0x3000  double-fault/NMI/MC stack (IST1)        supervisor rw
//! +0x4000  exception stack (RSP0), 8 KiB           supervisor rw
//! +0x6000  boot-stack guard page                   unmapped
//! +0x7000  boot stack, 36 KiB                      user rw   (a workload's vCPU: its trap stack)
//! ```
//!
//! Guarded linear memories are virtual ranges of a workload's address space only, far above
//! every physical address: memory `k` starts at [`guarded_memory`]`(k)` and the VMM maps its
//! pages, at the guest's request (`crate::control::MAP_MEMORY`), to pages of the workload's own
//! heap as it grows. The rest of each [`GUARDED_MEMORY_SPAN`] stays unmapped, so an access past
//! a memory's end faults, and compiled Wasm needs no bounds checks.
//!
//! A workload brings its own RAM: a window the VMM maps when it adds the workload and removes
//! when the workload ends, holding its module, inputs, kernel data, stack and heap
//! (`crate::vcpu::VcpuInfo` says where each part is). Everything user-visible is mapped
//! no-execute except the image's code segment and a workload's module. Base RAM is at most
//! [`RAM_MAX`] so that it never reaches the MMIO window.

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
/// The CPL 0 exception stubs, [`EXCEPTION_STUB_SIZE`] bytes per vector.
pub const EXCEPTION_STUBS: u64 = 0x4000;
/// Bytes per exception stub.
pub const EXCEPTION_STUB_SIZE: u64 = 128;
/// Number of exception vectors with a stub (all architectural exceptions).
pub const EXCEPTION_VECTORS: u64 = 32;
/// The [`crate::BootInfo`] page.
pub const BOOT_INFO: u64 = 0xf000;

/// First vCPU area.
pub const VCPU_AREAS: u64 = 0x1_0000;
/// Bytes per vCPU area.
pub const VCPU_AREA_SIZE: u64 = 0x1_0000;
/// Most vCPUs a VM has: one per running workload, plus the boot vCPU of a pod.
pub const MAX_VCPUS: u32 = 32;
/// The vCPU that boots the VM (the first one created): the only one whose address space holds
/// the kernel heap and the image's own writable data.
pub const BOOT_VCPU: u32 = 0;
/// Offset of the vCPU block (user rw) in a vCPU area.
pub const VCPU_BLOCK: u64 = 0x0000;
/// Offset of the vCPU info (user ro).
pub const VCPU_INFO: u64 = 0x1000;
/// Offset of the TSS (supervisor rw).
pub const VCPU_TSS: u64 = 0x2000;
/// Offset of the IST1 stack's bottom; its top is [`VCPU_EXCEPTION_STACK`].
pub const VCPU_IST_STACK: u64 = 0x3000;
/// Offset of the exception stack's bottom; its top is [`VCPU_STACK_GUARD`].
pub const VCPU_EXCEPTION_STACK: u64 = 0x4000;
/// Offset of the unmapped page below the boot stack.
pub const VCPU_STACK_GUARD: u64 = 0x6000;
/// Offset of the boot stack's lowest byte; the stack runs to the end of the area.
pub const VCPU_STACK: u64 = 0x7000;

/// First page of the page-table pool.
pub const PAGE_TABLES: u64 = VCPU_AREAS + MAX_VCPUS as u64 * VCPU_AREA_SIZE;
/// End of the page-table pool (exclusive).
pub const PAGE_TABLES_END: u64 = 0x40_0000;
/// Where the guest image is linked and loaded.
pub const IMAGE_START: u64 = 0x40_0000;
/// The image must end below this address.
pub const IMAGE_LIMIT: u64 = 0x200_0000;
/// Start of the MMIO window.
pub const MMIO_START: u64 = 0xc000_0000;
/// End of the MMIO window (exclusive).
pub const MMIO_END: u64 = 0x1_0000_0000;
/// Largest amount of base RAM the layout allows.
pub const RAM_MAX: u64 = MMIO_START;

/// Guest-physical address of workload window 0.
pub const WINDOWS_START: u64 = 0x1_0000_0000;
/// Distance between two windows; a window's RAM is at most [`WINDOW_MAX`].
pub const WINDOW_SPAN: u64 = 0x1_0000_0000;
/// Largest window.
pub const WINDOW_MAX: u64 = 3 << 30;
/// Number of window addresses (all below 4 TiB + 4 GiB, inside any x86-64 guest's physical
/// address space).
pub const MAX_WINDOWS: u32 = 1024;

/// Guest-virtual base of the guarded linear memories.
pub const GUARDED_MEMORIES: u64 = 0x4000_0000_0000;
/// Distance between two guarded memories: at most [`GUARDED_MEMORY_MAX`] mapped, the rest guard.
pub const GUARDED_MEMORY_SPAN: u64 = 8 << 30;
/// Most bytes of a guarded memory the VMM maps (wasmtime's 4 GiB reservation).
pub const GUARDED_MEMORY_MAX: u64 = 4 << 30;
/// Guarded memories a workload may have.
pub const MAX_GUARDED_MEMORIES: u32 = 16;

/// The base address of vCPU `index`'s area.
pub const fn vcpu_area(index: u32) -> u64 {
    VCPU_AREAS + index as u64 * VCPU_AREA_SIZE
}

/// The guest-virtual base of guarded memory `index`.
pub const fn guarded_memory(index: u32) -> u64 {
    GUARDED_MEMORIES + index as u64 * GUARDED_MEMORY_SPAN
}

/// The guest-physical base of workload window `index`.
pub const fn window_base(index: u32) -> u64 {
    WINDOWS_START + index as u64 * WINDOW_SPAN
}

const _: () = {
    assert!(EXCEPTION_STUBS + EXCEPTION_VECTORS * EXCEPTION_STUB_SIZE <= EXCEPTION_STUBS + PAGE_SIZE);
    assert!(BOOT_INFO + PAGE_SIZE <= VCPU_AREAS);
    assert!(VCPU_STACK < VCPU_AREA_SIZE && VCPU_AREA_SIZE.is_multiple_of(16));
    assert!(PAGE_TABLES < PAGE_TABLES_END && PAGE_TABLES_END <= IMAGE_START);
    assert!(IMAGE_LIMIT <= RAM_MAX);
    assert!(WINDOW_MAX <= WINDOW_SPAN && MMIO_END <= WINDOWS_START);
    assert!(window_base(MAX_WINDOWS) <= 1 << 46);
    assert!(window_base(MAX_WINDOWS) <= GUARDED_MEMORIES);
    // The guard after the last memory's reservation stays in the lower canonical half.
    assert!(guarded_memory(MAX_GUARDED_MEMORIES) <= 1 << 47);
    assert!(GUARDED_MEMORY_MAX + (1 << 30) <= GUARDED_MEMORY_SPAN);
};
