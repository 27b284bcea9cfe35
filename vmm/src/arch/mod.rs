//! Architecture-specific parts of the VMM behind the same names on every architecture
//! (Firecracker's split): the boot flow in `vm.rs` calls `arch::configure_vcpu`,
//! `arch::fault_outcome`, builds an [`AddressSpace`] and never spells a `cfg`. What both
//! architectures share (the 4-level page-table tree, the address spaces built from it) lives
//! here; each architecture brings its entry bits (`pte`), its system pages and its registers.

mod paging;
mod space;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;
#[cfg(target_arch = "aarch64")]
use self::aarch64::{pte, system_mappings, vcpu_system_mappings, write_system_tables};
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;
#[cfg(target_arch = "x86_64")]
use self::x86_64::{pte, system_mappings, vcpu_system_mappings, write_system_tables};

pub use space::{AddressSpace, AddressSpaceError, WorkloadSpace};

/// Where a vCPU starts: its index, the guest's entry point, its stack and its address space.
#[derive(Clone, Copy, Debug)]
pub struct VcpuEntry {
    pub index: u32,
    pub entry: u64,
    pub stack_top: u64,
    /// The root of its address space (`CR3`, `TTBR0_EL1`).
    pub root: u64,
    /// How many runs the vCPU started before this one.
    pub starts: u64,
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("wasmcell's VMM supports x86_64 and aarch64 hosts");
