//! aarch64: the system pages of the guest's address spaces (the VMM's EL1 vectors and start stub,
//! the control device's and the boot console's MMIO pages), stage-1 entries (`pte`), the vCPU's
//! entry state (MMU on, EL0, reset between runs) and the decoding of faults the vectors report.
//!
//! The guest's address space is built exactly as on x86-64 (`space.rs`): the same memory map,
//! the same 4-level tree; EL0 stands where CPL 3 does and EL1 (the VMM's vectors only) where
//! CPL 0 does. There is no port I/O, so every guest→VMM request is a store to an MMIO page.

mod fault;
pub(super) mod pte;
mod regs;
mod vectors;

pub use fault::{fault_name, fault_outcome, guest_exit_outcome, reported_fault_outcome, shutdown_outcome};
pub use regs::{clock_sample, configure_vcpu, counter_khz, create_vcpu, guest_phys_bits, VcpuPristine, VcpuSetupError};

use super::paging::{Mapping, PageFlags};
use crate::memory::GuestMemory;
use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::{AARCH64_CONTROL_PAGE, AARCH64_SERIAL_PAGE};
use wasmcell_abi::memory_map as map;

/// The ELF machine a guest image must be built for (`EM_AARCH64`).
pub const ELF_MACHINE: u16 = 183;

/// The system pages every address space maps: the vectors (EL1 only, never EL0) and the device
/// pages EL0 writes its requests to.
pub(super) fn system_mappings() -> Vec<Mapping> {
    use PageFlags as F;
    let page = |at: u64, flags| Mapping::new(at, at + map::PAGE_SIZE, flags);
    vec![
        page(map::EXCEPTION_STUBS, F::SUPERVISOR_RX),
        page(AARCH64_SERIAL_PAGE, F::USER_MMIO),
        page(AARCH64_CONTROL_PAGE, F::USER_MMIO),
    ]
}

/// Nothing of a vCPU's area is the system's: the vectors need no stack.
pub(super) fn vcpu_system_mappings(_area: u64) -> Vec<Mapping> {
    Vec::new()
}

/// Writes the vectors and the start stub (the entry point they use is in each vCPU's
/// `TPIDR_EL1`).
pub(super) fn write_system_tables(memory: &GuestMemory, _entry: u64) -> Result<(), vm_memory::GuestMemoryError> {
    memory.write_slice(vectors::code(), GuestAddress(map::EXCEPTION_STUBS))
}

/// Asks KVM to hand an MMIO access it cannot decode to the VMM (as an exit the run loop turns
/// into a device error) rather than failing `KVM_RUN`. Older kernels lack it: the run then fails
/// as a VMM error, which still ends the VM.
pub fn configure_vm(vm: &VmFd) {
    let cap = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_ARM_NISV_TO_USER, ..Default::default() };
    let _ = vm.enable_cap(&cap);
}

/// Completes the vCPU's last exit without running the guest: KVM finishes an MMIO access (and
/// moves the PC past it) on the next `KVM_RUN`, which would otherwise be the next workload's
/// first, skipping its first instruction. `immediate_exit` makes that `KVM_RUN` return at once.
pub fn settle_vcpu(vcpu: &mut VcpuFd) {
    vcpu.set_kvm_immediate_exit(1);
    let _ = vcpu.run();
    vcpu.set_kvm_immediate_exit(0);
}
