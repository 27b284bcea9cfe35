//! Turning a fault the CPL 0 stubs reported (or a triple fault) into an [`Outcome`].
//!
//! The stub leaves the CPU's exception frame on its stack; `RSP` points at it. The frame is read
//! through vm-memory, so a guest that reports a fake fault with a wild `RSP` gets zeros, not a
//! host read out of bounds.

use crate::memory::GuestMemory;
use crate::outcome::Outcome;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::FaultReport;
use wasmcell_abi::exit::{x86_has_error_code, VECTOR_TRIPLE_FAULT};

/// The fault reported on the FAULT register with `vector`.
pub fn fault_outcome(vcpu: &VcpuFd, memory: &GuestMemory, vector: u32) -> Outcome {
    let vector = vector as u8;
    let rsp = vcpu.get_regs().map(|r| r.rsp).unwrap_or(0);
    let cr2 = vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
    let word = |i: u64| memory.read_obj::<u64>(GuestAddress(rsp.wrapping_add(i * 8))).unwrap_or(0);
    let (error_code, rip) = if x86_has_error_code(vector) { (word(0), word(1)) } else { (0, word(0)) };
    Outcome::GuestFault { vector, error_code, rip, cr2 }
}

/// A fault the guest's trap entry found was no Wasm trap (the guest's own account of it).
pub fn reported_fault_outcome(report: &FaultReport) -> Outcome {
    let vector = u8::try_from(report.vector).unwrap_or(VECTOR_TRIPLE_FAULT);
    Outcome::GuestFault { vector, error_code: report.error_code, rip: report.rip, cr2: report.cr2 }
}

/// The guest could not deliver an exception at all (KVM reports a shutdown).
pub fn shutdown_outcome(vcpu: &VcpuFd) -> Outcome {
    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
    let cr2 = vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
    Outcome::GuestFault { vector: VECTOR_TRIPLE_FAULT, error_code: 0, rip, cr2 }
}

/// Every exit the run loop does not handle is the VMM's problem on x86-64.
pub fn guest_exit_outcome(_exit: &VcpuExit<'_>) -> Option<Outcome> {
    None
}

/// The mnemonic of exception `vector`, for messages.
pub fn fault_name(vector: u8) -> &'static str {
    wasmcell_abi::exit::x86_vector_name(vector)
}
