//! x86-64: the system pages of the guest's address spaces (GDT, IDT, each vCPU's TSS and the
//! CPL 0 exception stubs), page-table entries (`pte`), the vCPU's entry state (64-bit CPL 3, IOPL 3, interrupts off, SMEP and
//! SMAP on, a normalised CPUID, nothing left from its last run) and the decoding of faults the
//! stubs report.

mod cpuid;
mod descriptors;
mod fault;
pub(super) mod pte;
mod regs;

pub use fault::{fault_name, fault_outcome, guest_exit_outcome, reported_fault_outcome, shutdown_outcome};
pub use regs::{clock_sample, configure_vcpu, counter_khz, create_vcpu, guest_phys_bits, VcpuPristine, VcpuSetupError};

use super::paging::{Mapping, PageFlags};
use crate::memory::GuestMemory;
use wasmcell_abi::memory_map as map;

/// The system pages every address space maps: the descriptor tables and the exception stubs,
/// supervisor-only.
pub(super) fn system_mappings() -> Vec<Mapping> {
    use PageFlags as F;
    vec![
        Mapping::new(map::GDT, map::GDT + map::PAGE_SIZE, F::SUPERVISOR_RW),
        Mapping::new(map::IDT, map::IDT + map::PAGE_SIZE, F::SUPERVISOR_RO),
        Mapping::new(map::EXCEPTION_STUBS, map::EXCEPTION_STUBS + map::PAGE_SIZE, F::SUPERVISOR_RX),
    ]
}

/// The system pages of the vCPU area at `area`: its TSS and the stacks the CPU switches to on a
/// fault, supervisor-only.
pub(super) fn vcpu_system_mappings(area: u64) -> Vec<Mapping> {
    use PageFlags as F;
    let pages =
        |offset: u64, count: u64| Mapping::new(area + offset, area + offset + count * map::PAGE_SIZE, F::SUPERVISOR_RW);
    vec![pages(map::VCPU_TSS, 1), pages(map::VCPU_IST_STACK, 3)]
}

/// Writes the GDT, the IDT and the exception stubs, which send faults back to `entry`.
pub(super) fn write_system_tables(memory: &GuestMemory, entry: u64) -> Result<(), vm_memory::GuestMemoryError> {
    descriptors::write(memory, entry)
}

/// Nothing to set on the VM beyond what KVM does by default.
pub fn configure_vm(_vm: &kvm_ioctls::VmFd) {}

/// Nothing to complete between runs: an `out` is done when it exits.
pub fn settle_vcpu(_vcpu: &mut kvm_ioctls::VcpuFd) {}

/// The ELF machine a guest image must be built for.
pub const ELF_MACHINE: u16 = 62; // EM_X86_64
