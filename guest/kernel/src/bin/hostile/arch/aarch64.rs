//! aarch64: the attacker's loads, stores and jumps, its way to the control device (a store to
//! its MMIO page) and its vCPU block (`TPIDRRO_EL0`), and what EL0 must not be able to do:
//! system registers, exception-generating and cache or TLB maintenance instructions, MMIO
//! accesses KVM cannot decode.

use core::arch::asm;
use wasmcell_abi::control::AARCH64_CONTROL_PAGE;

/// `_start`'s first argument is an exception class below this when the EL1 vectors sent a fault
/// back.
pub const FAULT_LIMIT: u64 = 64;

/// One 8-byte store.
pub fn store(addr: u64, value: u64) {
    // SAFETY: the attack: a store the page tables must refuse (the VM stops on the fault).
    unsafe { asm!("str {}, [{}]", in(reg) value, in(reg) addr, options(nostack)) }
}

/// One 8-byte load.
pub fn load(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: the attack: a load the page tables must refuse.
    unsafe { asm!("ldr {}, [{}]", out(reg) value, in(reg) addr, options(nostack, readonly)) };
    value
}

/// Jumps to `addr`.
pub fn jump(addr: u64) -> ! {
    // SAFETY: the attack: an instruction fetch the page tables must refuse (UXN).
    unsafe { asm!("br {}", in(reg) addr, options(noreturn, nostack)) }
}

/// Writes a control-device register: one explicit `str` to the control page.
pub fn control(register: u16, value: u32) {
    // SAFETY: a store to the control page, device memory with no RAM behind it: one MMIO exit.
    unsafe {
        asm!("str {:w}, [{}]", in(reg) value, in(reg) AARCH64_CONTROL_PAGE + u64::from(register), options(nostack))
    }
}

/// Writes a 32-bit device register with one explicit `str` (an access KVM can decode).
pub fn mmio_write32(register: *mut u32, value: u32) {
    // SAFETY: the register page is device memory in this vCPU's address space, or the store
    // faults; each access is one MMIO exit.
    unsafe { asm!("str {:w}, [{}]", in(reg) value, in(reg) register, options(nostack)) }
}

/// The running vCPU's block: the VMM puts its address in `TPIDRRO_EL0`.
pub fn vcpu_block() -> u64 {
    let block: u64;
    // SAFETY: reads a system register EL0 may read.
    unsafe { asm!("mrs {}, tpidrro_el0", out(reg) block, options(nomem, nostack)) };
    block
}

/// Runs instruction attack `name` (`arg` is its number, an address for those that take one);
/// `None` if this architecture has no such attack. An attack that gets through returns its exit
/// code.
pub fn instruction(name: &[u8], arg: u64) -> Option<u32> {
    // SAFETY: the attack. Each instruction must trap at EL0 (UNDEFINED, or trapped to EL1 by the
    // VMM's SCTLR_EL1 and CNTKCTL_EL1), fault on the page tables, or end the workload as a device
    // error; if it does none of these, the attack got through and the exit code says so.
    unsafe {
        match name {
            // The address space, the vectors, and the registers the vectors trust.
            b"msr-ttbr0" => asm!("msr ttbr0_el1, {}", in(reg) arg, options(nostack)),
            b"msr-vbar" => asm!("msr vbar_el1, {}", in(reg) arg, options(nostack)),
            b"msr-tpidrro" => asm!("msr tpidrro_el0, {}", in(reg) arg, options(nostack)),
            b"mrs-tpidr-el1" => {
                let entry: u64;
                asm!("mrs {}, tpidr_el1", out(reg) entry, options(nomem, nostack));
                return Some(super::BREACH ^ (entry as u32 & 1));
            }
            // Interrupt masks and the physical timer.
            b"daif" => asm!("msr daifclr, #0xf", options(nomem, nostack)),
            b"cntp" => asm!("msr cntp_ctl_el0, {}", in(reg) 1u64, options(nomem, nostack)),
            // Calls to higher exception levels, and a return from one.
            b"svc" => asm!("svc #0", options(nomem, nostack)),
            b"hvc" => asm!("hvc #0", options(nomem, nostack)),
            b"smc" => asm!("smc #0", options(nomem, nostack)),
            b"eret" => asm!("eret", options(nomem, nostack)),
            b"brk" => asm!("brk #0", options(nomem, nostack)),
            // Idling the core.
            b"wfi" => asm!("wfi", options(nomem, nostack)),
            // The first `wfe` may only clear the event register the `eret` into EL0 set; the
            // second would wait. Trapped (nTWE clear), or (QEMU) a mere yield: the workload goes on.
            b"wfe" => {
                asm!("wfe", "wfe", options(nomem, nostack));
                return Some(0);
            }
            // Cache and TLB maintenance: the EL1-only kinds, and the EL0 kinds aimed at memory the
            // workload may not write or read.
            b"ic-iallu" => asm!("ic iallu", options(nomem, nostack)),
            b"tlbi" => asm!("tlbi vmalle1", options(nomem, nostack)),
            b"at" => asm!("at s1e1r, {}", in(reg) arg, options(nomem, nostack)),
            b"dc-zva" => asm!("dc zva, {}", in(reg) arg, options(nostack)),
            // Invalidating without cleaning would throw away other memory's writes: EL1 only.
            b"dc-ivac" => asm!("dc ivac, {}", in(reg) arg, options(nostack)),
            // Cleaning first loses and shows nothing: a permission fault on hardware, a no-op
            // under QEMU; either way the workload may go on.
            b"dc-civac" => {
                asm!("dc civac, {}", in(reg) arg, options(nostack));
                return Some(0);
            }
            // MMIO stores KVM cannot decode (no valid syndrome): a pair, and one with writeback.
            b"stp-control" => {
                asm!("stp xzr, xzr, [{}]", in(reg) AARCH64_CONTROL_PAGE, options(nostack));
            }
            b"str-writeback" => {
                asm!("str wzr, [{}, #4]!", inout(reg) arg => _, options(nostack));
            }
            _ => return None,
        }
    }
    Some(super::BREACH)
}
