//! The EL1 code of an aarch64 guest, written by the VMM into the exception-vector page
//! (`memory_map::EXCEPTION_STUBS`, `VBAR_EL1`): nothing of the guest image ever runs at EL1.
//!
//! - The vector for a synchronous exception from EL0 sends it straight back to EL0, to `_start`
//!   (`TPIDR_EL1`) on the vCPU's trap stack with `x0` = the exception class, `x1` = the faulting
//!   PC, `x2` = FAR, `x3` = ESR, as the x86-64 CPL 0 stubs do: a Wasm trap is the guest's to
//!   handle. One taken on the trap stack itself (a fault while handling one, or the boot vCPU's)
//!   is reported instead.
//! - Every other vector (an exception at EL1, an interrupt, an SError) reports: a 32-bit store of
//!   its slot (0–15) to the control device's FAULT register, then a loop the VMM never resumes.
//!   The VMM reads ESR/FAR/ELR itself.
//! - After the 16 vectors, at [`ENTRY_OFFSET`], the stub every vCPU start goes through: it drops
//!   the vCPU's TLB and instruction cache (a pooled vCPU's last workload ran in another address
//!   space, and EL0 cannot invalidate anything) and `eret`s to the guest's entry at EL0.
//!
//! The code is assembled with the VMM (it is aarch64 code in an aarch64 binary) and copied out of
//! its read-only data; it uses no stack and no memory but the control page.

use wasmcell_abi::control::{AARCH64_CONTROL_PAGE, FAULT};
use wasmcell_abi::memory_map as map;

/// Offset of the start stub in the vector page.
pub const ENTRY_OFFSET: u64 = 0x800;

/// `SPSR_EL1` for a return to EL0 (`EL0t`) with debug, SError, IRQ and FIQ masked.
pub const SPSR_EL0_MASKED: u64 = 0x3c0;

core::arch::global_asm!(
    ".pushsection .rodata.wasmcell_el1_vectors, \"a\"",
    // Reports `slot` on the FAULT register and never returns.
    ".macro wasmcell_report slot",
    "movz x9, #{control_low}",
    "movk x9, #{control_high}, lsl #16",
    "mov w10, #\\slot",
    "str w10, [x9, #{fault}]",
    "0: b 0b",
    ".endm",
    ".balign 2048",
    ".global wasmcell_el1_vectors_start",
    "wasmcell_el1_vectors_start:",
    // Current EL with SP_EL0, current EL with SP_ELx: report.
    ".irp slot, 0, 1, 2, 3, 4, 5, 6, 7",
    ".balign 128",
    "wasmcell_report \\slot",
    ".endr",
    // Lower EL (AArch64), synchronous: back to `_start`, unless taken on the trap stack.
    ".balign 128",
    "mrs x9, tpidrro_el0", // the vCPU's area (its block is first)
    "mrs x10, sp_el0",
    "sub x10, x10, x9",
    "sub x10, x10, #{trap_stack}",
    "cmp x10, #{trap_stack_len}",
    "b.ls 1f",
    "mrs x3, esr_el1",
    "lsr x0, x3, #26",
    "mrs x1, elr_el1",
    "mrs x2, far_el1",
    "add x9, x9, #{area_size}",
    "msr sp_el0, x9",
    "mrs x9, tpidr_el1",
    "msr elr_el1, x9",
    "mov x9, #{spsr_el0}",
    "msr spsr_el1, x9",
    "eret",
    "1: wasmcell_report 8",
    // Lower EL (AArch64) interrupts and SError, lower EL (AArch32): report.
    ".irp slot, 9, 10, 11, 12, 13, 14, 15",
    ".balign 128",
    "wasmcell_report \\slot",
    ".endr",
    // The start stub, at ENTRY_OFFSET.
    ".balign 128",
    "tlbi vmalle1",
    "dsb nsh",
    "ic iallu",
    "dsb nsh",
    "isb",
    "eret",
    ".global wasmcell_el1_vectors_end",
    "wasmcell_el1_vectors_end:",
    ".purgem wasmcell_report",
    ".popsection",
    control_low = const AARCH64_CONTROL_PAGE & 0xffff,
    control_high = const (AARCH64_CONTROL_PAGE >> 16) & 0xffff,
    fault = const FAULT,
    trap_stack = const map::VCPU_STACK,
    trap_stack_len = const map::VCPU_AREA_SIZE - map::VCPU_STACK,
    area_size = const map::VCPU_AREA_SIZE,
    spsr_el0 = const SPSR_EL0_MASKED,
);

extern "C" {
    static wasmcell_el1_vectors_start: u8;
    static wasmcell_el1_vectors_end: u8;
}

/// The vector page's code: 16 vectors of 128 bytes, then the start stub.
pub fn code() -> &'static [u8] {
    // SAFETY: both symbols are labels in the read-only section above, `end` after `start` in the
    // same section; the bytes between them are initialised and never written.
    unsafe {
        let start = &raw const wasmcell_el1_vectors_start;
        let end = &raw const wasmcell_el1_vectors_end;
        core::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}

const _: () = assert!(AARCH64_CONTROL_PAGE < 1 << 32, "two halves load the control page's address");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_vectors_then_the_start_stub_fit_the_page() {
        let code = code();
        assert_eq!(code.len() as u64, ENTRY_OFFSET + 6 * 4);
        assert!(code.len() as u64 <= map::PAGE_SIZE);
        // The start stub ends in `eret` (0xd69f03e0).
        assert_eq!(code[code.len() - 4..], 0xd69f_03e0u32.to_le_bytes());
    }
}
