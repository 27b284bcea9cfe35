//! x86-64: the entry point, port I/O for the control device and the 16550 console, and the few
//! instructions the self-tests need. Everything here runs in CPL 3; `in`/`out` are allowed
//! because the VMM starts the guest with `RFLAGS.IOPL = 3`.

use core::arch::{asm, global_asm};
use wasmcell_abi::control::X86_PORT_BASE;

/// A page only CPL 0 may touch (the GDT), for the self-test that writes one.
pub const SYSTEM_PAGE: u64 = wasmcell_abi::memory_map::GDT;

// `_start`, the image's entry point, first in its code segment. The VMM enters it to boot a vCPU
// with `RDI` = the boot info (an address far above 32), and a CPL 0 stub enters it for a
// redirected fault with `RDI` = the vector (below 32), `RSI` = the faulting RIP, `RDX` = CR2,
// `RCX` = the error code, `RBP` as the fault left it, on the vCPU's trap stack; both with the
// stack aligned as after a call. The frame pointer goes to `trap` as its fifth argument.
global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "cmp rdi, 32",
    "jb 2f",
    "jmp {boot}",
    "2:",
    "mov r8, rbp",
    "jmp {trap}",
    boot = sym crate::boot,
    trap = sym crate::trap::trap,
);

/// The 16550's transmit register (COM1).
const COM1: u16 = 0x3f8;

/// The page-fault vector: the only fault with an address (CR2).
pub fn fault_has_address(vector: u64) -> bool {
    vector == 14
}

/// Whether the workload was compiled for CPU feature `name` (`wasmcell_abi::cpu_features`).
pub fn has_feature(bits: u64, name: &str) -> Option<bool> {
    wasmcell_abi::cpu_features::x86_has(bits, name)
}

/// Writes a control-device register (see `wasmcell_abi::control`).
pub fn control_write(register: u16, value: u32) {
    // SAFETY: an `out` to the control device has no effect on guest memory; it is not marked
    // `nomem` so that stores the VMM reads afterwards (the vCPU block) happen before it.
    unsafe {
        asm!("out dx, eax", in("dx") X86_PORT_BASE + register, in("eax") value, options(nostack, preserves_flags))
    }
}

/// Writes a 32-bit device register (a virtio-mmio register).
///
/// # Safety
/// `register` must be a mapped device register that takes 32-bit writes.
pub unsafe fn mmio_write32(register: *mut u32, value: u32) {
    // SAFETY: the caller vouches for `register`.
    unsafe { register.write_volatile(value) }
}

/// Writes bytes to the console with one `rep outsb`: KVM hands the whole buffer to the VMM in a
/// single exit. The VMM's UART never applies back-pressure, so the line-status register is not
/// polled (that would cost one exit per byte).
pub fn console_write(bytes: &[u8]) {
    // SAFETY: `rep outsb` reads `rcx` bytes from `rsi`, which is exactly `bytes`; the direction
    // flag is clear as the ABI requires at every call boundary.
    unsafe {
        asm!(
            "rep outsb",
            inout("rcx") bytes.len() => _,
            inout("rsi") bytes.as_ptr() => _,
            in("dx") COM1,
            options(nostack, readonly, preserves_flags)
        )
    }
}

/// The running vCPU's block: the VMM sets each vCPU's GS base to its block, whose first word is
/// the block's own address.
pub fn vcpu_block() -> u64 {
    let block: u64;
    // SAFETY: a GS-relative load of the block's first word; the block is mapped for the VM's
    // whole life and the GS base is set by the VMM before the vCPU's first instruction.
    unsafe { asm!("mov {}, gs:[0]", out(reg) block, options(nostack, readonly, preserves_flags)) }
    block
}

/// The time-stamp counter: readable in CPL 3 (CR4.TSD is clear), no VM exit.
pub fn timestamp() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: `rdtsc` only reads the counter into edx:eax.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) }
    (u64::from(high) << 32) | u64::from(low)
}

/// Reads a `u64` at `addr`, for self-tests that touch memory the guest must not reach.
pub fn read_u64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: a load has no effect other than faulting, which is what the self-test wants; the
    // fault is reported by the CPL 0 stubs and the VM stops.
    unsafe { asm!("mov {}, [{}]", out(reg) value, in(reg) addr, options(nostack, readonly, preserves_flags)) }
    value
}

/// Writes a `u64` at `addr`, for self-tests that must fault (read-only or supervisor pages).
pub fn write_u64(addr: u64, value: u64) {
    // SAFETY: only self-tests call this, on addresses the page tables protect; the write faults
    // and the VM stops before anything observes it.
    unsafe { asm!("mov [{}], {}", in(reg) addr, in(reg) value, options(nostack, preserves_flags)) }
}

/// Executes `ud2`.
pub fn invalid_opcode() -> ! {
    // SAFETY: `ud2` raises #UD, which the CPL 0 stub reports; control never returns.
    unsafe { asm!("ud2", options(noreturn, nostack)) }
}
