//! Turning a fault into an [`Outcome`]: one the EL1 vectors reported (their slot on the FAULT
//! register; the VMM reads the syndrome, fault address and PC from KVM), one the guest's trap
//! entry found was no Wasm trap (its own report), or a guest exit KVM cannot hand on.
//!
//! A fault's `vector` is the exception class (`ESR_EL1.EC`), its error code the whole syndrome;
//! an interrupt or SError (which nothing here enables) is [`ASYNC_VECTOR`].

use super::regs::{self, ELR_EL1, ESR, FAR, PC};
use crate::memory::GuestMemory;
use crate::outcome::Outcome;
use kvm_ioctls::{VcpuExit, VcpuFd};
use wasmcell_abi::control::FaultReport;
use wasmcell_abi::exit::VECTOR_TRIPLE_FAULT;

/// The vector of an exception that is not synchronous (an interrupt or an SError).
pub const ASYNC_VECTOR: u8 = 0xfe;

/// KVM's exit for a data abort it could not decode (`KVM_CAP_ARM_NISV_TO_USER`).
const KVM_EXIT_ARM_NISV: u32 = 28;

/// The fault the EL1 vector in `slot` (0–15) reported.
pub fn fault_outcome(vcpu: &VcpuFd, _memory: &GuestMemory, slot: u32) -> Outcome {
    let syndrome = regs::read(vcpu, ESR);
    let vector = if slot.is_multiple_of(4) { (syndrome >> 26) as u8 } else { ASYNC_VECTOR };
    Outcome::GuestFault { vector, error_code: syndrome, rip: regs::read(vcpu, ELR_EL1), cr2: regs::read(vcpu, FAR) }
}

/// A fault the guest's trap entry found was no Wasm trap (the guest's own account of it).
pub fn reported_fault_outcome(report: &FaultReport) -> Outcome {
    let vector = u8::try_from(report.vector).unwrap_or(VECTOR_TRIPLE_FAULT);
    Outcome::GuestFault { vector, error_code: report.error_code, rip: report.rip, cr2: report.cr2 }
}

/// The guest could not deliver an exception at all (not an aarch64 exit; kept for the flow).
pub fn shutdown_outcome(vcpu: &VcpuFd) -> Outcome {
    Outcome::GuestFault { vector: VECTOR_TRIPLE_FAULT, error_code: 0, rip: regs::read(vcpu, PC), cr2: 0 }
}

/// What a guest exit the run loop does not handle means, if it is the guest's doing: an MMIO
/// access KVM cannot decode (a load/store pair, a SIMD or writeback access to a device page)
/// ends the workload as a device error, not the VMM.
pub fn guest_exit_outcome(exit: &VcpuExit<'_>) -> Option<Outcome> {
    match exit {
        VcpuExit::Unsupported(KVM_EXIT_ARM_NISV) => {
            Some(Outcome::DeviceError(String::from("an MMIO access KVM cannot decode (use single loads and stores)")))
        }
        _ => None,
    }
}

/// The name of exception class `vector`, for messages.
pub fn fault_name(vector: u8) -> &'static str {
    match vector {
        0x00 => "undefined instruction",
        0x01 => "WFI/WFE",
        0x07 => "FP/SIMD access",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 | 0x17 => "HVC/SMC",
        0x18 => "system register access",
        0x20 => "instruction abort from EL0",
        0x21 => "instruction abort at EL1",
        0x22 => "PC alignment",
        0x24 => "data abort from EL0",
        0x25 => "data abort at EL1",
        0x26 => "SP alignment",
        0x2c => "floating point",
        0x3c => "BRK",
        ASYNC_VECTOR => "interrupt or SError",
        VECTOR_TRIPLE_FAULT => "unrecoverable",
        _ => "exception",
    }
}
