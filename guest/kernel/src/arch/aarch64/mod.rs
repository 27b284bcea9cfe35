//! aarch64: the entry point, MMIO for the control device and the boot console, and the few
//! instructions the self-tests need. Everything here runs at EL0: the VMM starts each vCPU
//! there with the MMU on, in an address space it built, and the EL1 vectors it wrote only send
//! faults back here (or report them).
//!
//! Device registers are reached with single, explicit `str`/`strb` instructions: KVM can only
//! hand the VMM an MMIO access whose syndrome it can decode, which a compiler-chosen pair or
//! SIMD store would not have.

use core::arch::{asm, global_asm};
use wasmcell_abi::control::{AARCH64_CONTROL_PAGE, AARCH64_SERIAL_PAGE};

/// A page only EL1 may touch (the exception vectors), for the self-test that writes one.
pub const SYSTEM_PAGE: u64 = wasmcell_abi::memory_map::EXCEPTION_STUBS;

// `_start`, the image's entry point, first in its code segment. The VMM enters it to boot a vCPU
// with `x0` = the boot info (an address far above 64), `x1` = the vCPU's info; the EL1 vectors
// enter it for a fault taken at EL0 with `x0` = the exception class (below 64), `x1` = the
// faulting PC, `x2` = FAR, `x3` = ESR, on the vCPU's trap stack. The frame pointer goes to `trap`
// as its fifth argument.
global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "cmp x0, #64",
    "b.lo 2f",
    "b {boot}",
    "2:",
    "mov x4, x29",
    "b {trap}",
    boot = sym crate::boot,
    trap = sym crate::trap::trap,
);

/// The 16550's transmit register.
const SERIAL_THR: u64 = AARCH64_SERIAL_PAGE;

/// Exception classes (ESR_EL1.EC) whose fault has an address in FAR_EL1: instruction and data
/// aborts from EL0.
pub fn fault_has_address(class: u64) -> bool {
    matches!(class, 0x20 | 0x24)
}

/// Whether the workload was compiled for CPU feature `name` (`wasmcell_abi::cpu_features`).
pub fn has_feature(bits: u64, name: &str) -> Option<bool> {
    wasmcell_abi::cpu_features::aarch64_has(bits, name)
}

/// Writes a control-device register (see `wasmcell_abi::control`).
pub fn control_write(register: u16, value: u32) {
    let addr = AARCH64_CONTROL_PAGE + u64::from(register);
    // SAFETY: a store to the control page, which the VMM maps as device memory and backs with
    // no RAM: it exits to the VMM and changes no guest memory. Not `nomem`, so that stores the
    // VMM reads afterwards (the vCPU block) happen before it.
    unsafe {
        asm!("str {value:w}, [{addr}]", value = in(reg) value, addr = in(reg) addr, options(nostack, preserves_flags))
    }
}

/// Writes a 32-bit device register (a virtio-mmio register) with one explicit `str`.
///
/// # Safety
/// `register` must be a mapped device register that takes 32-bit writes.
pub unsafe fn mmio_write32(register: *mut u32, value: u32) {
    // SAFETY: the caller vouches for `register`; a plain `str` without writeback is an access
    // KVM can decode.
    unsafe {
        asm!("str {value:w}, [{register}]", value = in(reg) value, register = in(reg) register, options(nostack, preserves_flags))
    }
}

/// Writes bytes to the boot console, one MMIO exit per byte (the log only: it is off unless the
/// VMM asks for it).
pub fn console_write(bytes: &[u8]) {
    for &byte in bytes {
        // SAFETY: a byte store to the console's transmit register, device memory as above.
        unsafe {
            asm!("strb {byte:w}, [{addr}]", byte = in(reg) u32::from(byte), addr = in(reg) SERIAL_THR, options(nostack, preserves_flags))
        }
    }
}

/// The running vCPU's block: the VMM puts its address in `TPIDRRO_EL0`, which EL0 reads and
/// cannot change.
pub fn vcpu_block() -> u64 {
    let block: u64;
    // SAFETY: reads a system register EL0 may read; no memory is touched.
    unsafe { asm!("mrs {}, tpidrro_el0", out(reg) block, options(nomem, nostack, preserves_flags)) }
    block
}

/// The virtual counter: readable at EL0 (the VMM sets `CNTKCTL_EL1.EL0VCTEN`), no VM exit. Its
/// frequency is the vCPU info's `tsc_khz`.
pub fn timestamp() -> u64 {
    let ticks: u64;
    // SAFETY: `isb` orders the read after earlier instructions; `mrs` only reads the counter.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack, preserves_flags)) }
    ticks
}

/// Reads a `u64` at `addr`, for self-tests that touch memory the guest must not reach.
pub fn read_u64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: a load has no effect other than faulting, which is what the self-test wants; the
    // fault is sent back to `_start` and reported.
    unsafe { asm!("ldr {}, [{}]", out(reg) value, in(reg) addr, options(nostack, readonly, preserves_flags)) }
    value
}

/// Writes a `u64` at `addr`, for self-tests that must fault (read-only or EL1-only pages).
pub fn write_u64(addr: u64, value: u64) {
    // SAFETY: only self-tests call this, on addresses the page tables protect; the write faults
    // and the VM stops before anything observes it.
    unsafe { asm!("str {}, [{}]", in(reg) value, in(reg) addr, options(nostack, preserves_flags)) }
}

/// Executes a permanently undefined instruction.
pub fn invalid_opcode() -> ! {
    // SAFETY: `udf` raises an undefined-instruction exception, which the EL1 vectors send back
    // to `_start` and the guest reports; control never returns.
    unsafe { asm!("udf #0", options(noreturn, nostack)) }
}
