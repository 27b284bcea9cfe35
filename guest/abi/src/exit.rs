//! Exit codes the guest writes to [`crate::control::EXIT`] and fault vectors it reports.
//!
//! Codes 0–255 belong to the workload (a Wasm module's `proc_exit` code). Codes from 256 up are
//! the guest kernel's own verdicts about why it could not run the workload.

/// First code reserved for the guest kernel; everything below is a workload's exit code.
pub const KERNEL_BASE: u32 = 0x100;
/// The boot info's ABI version (or size) differs from the guest's.
pub const ABI_MISMATCH: u32 = KERNEL_BASE;
/// The boot info is not a wasmcell boot info (bad magic).
pub const BAD_BOOT_INFO: u32 = KERNEL_BASE + 1;
/// The guest panicked; the message was sent through [`crate::control::PANIC`] first.
pub const PANIC: u32 = KERNEL_BASE + 2;
/// The boot info asked for a self-test this guest does not know.
pub const UNKNOWN_SELFTEST: u32 = KERNEL_BASE + 3;

/// A short description of a kernel exit code, or `None` for a workload's code.
pub fn describe(code: u32) -> Option<&'static str> {
    match code {
        ABI_MISMATCH => Some("guest and VMM disagree on the boot ABI version"),
        BAD_BOOT_INFO => Some("guest found no valid boot info"),
        PANIC => Some("guest panicked"),
        UNKNOWN_SELFTEST => Some("guest does not know the requested self-test"),
        _ => None,
    }
}

/// Vector reported when the guest could not even deliver a fault (triple fault, shutdown).
pub const VECTOR_TRIPLE_FAULT: u8 = 0xff;

/// Whether the CPU pushes an error code for exception `vector` (x86-64, SDM vol. 3 §6.15).
pub const fn x86_has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The mnemonic of an x86 exception vector, for messages.
pub const fn x86_vector_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 floating point",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating point",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        VECTOR_TRIPLE_FAULT => "triple fault",
        _ => "reserved vector",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_codes_are_described_and_workload_codes_are_not() {
        for code in [ABI_MISMATCH, BAD_BOOT_INFO, PANIC, UNKNOWN_SELFTEST] {
            assert!(code >= KERNEL_BASE);
            assert!(describe(code).is_some());
        }
        for code in [0, 1, 42, 255] {
            assert_eq!(describe(code), None);
        }
    }

    #[test]
    fn page_fault_and_gp_push_error_codes_but_ud_does_not() {
        assert!(x86_has_error_code(14));
        assert!(x86_has_error_code(13));
        assert!(!x86_has_error_code(6));
        assert!(!x86_has_error_code(0));
    }
}
