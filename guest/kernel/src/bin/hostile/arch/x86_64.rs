//! x86-64: the attacker's loads, stores and jumps, its way to the control device (port I/O) and
//! its vCPU block (GS), and the instructions CPL 3 must not be able to use.

use core::arch::asm;
use wasmcell_abi::control::X86_PORT_BASE;

/// `_start`'s first argument is a vector below this when a CPL 0 stub sent a fault back.
pub const FAULT_LIMIT: u64 = 32;

/// One 8-byte store.
pub fn store(addr: u64, value: u64) {
    // SAFETY: the attack: a store the page tables must refuse (the VM stops on the fault).
    unsafe { asm!("mov qword ptr [{}], {}", in(reg) addr, in(reg) value, options(nostack)) }
}

/// One 8-byte load.
pub fn load(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: the attack: a load the page tables must refuse.
    unsafe { asm!("mov {}, qword ptr [{}]", out(reg) value, in(reg) addr, options(nostack, readonly)) };
    value
}

/// Jumps to `addr`.
pub fn jump(addr: u64) -> ! {
    // SAFETY: the attack: an instruction fetch the page tables must refuse (NX, SMEP).
    unsafe { asm!("jmp {}", in(reg) addr, options(noreturn, nostack)) }
}

/// Writes a control-device register.
pub fn control(register: u16, value: u32) {
    // SAFETY: an `out` to the control device (IOPL 3 and the TSS bitmap allow it).
    unsafe { asm!("out dx, eax", in("dx") X86_PORT_BASE + register, in("eax") value, options(nostack)) }
}

/// Writes a 32-bit device register.
pub fn mmio_write32(register: *mut u32, value: u32) {
    // SAFETY: the register page is mapped (uncached) in this vCPU's address space, or the store
    // faults; each access is one MMIO exit.
    unsafe { register.write_volatile(value) }
}

/// The running vCPU's block.
pub fn vcpu_block() -> u64 {
    let block: u64;
    // SAFETY: a GS-relative load of the block's own address, which the VMM writes there.
    unsafe { asm!("mov {}, gs:[0]", out(reg) block, options(nostack, readonly)) };
    block
}

/// Runs instruction attack `name` (no x86-64 attack takes an argument); `None` if this
/// architecture has no such attack. An attack that gets through returns its exit code.
pub fn instruction(name: &[u8], _arg: u64) -> Option<u32> {
    match name {
        b"wrmsr" => {
            // SAFETY: the attack: IA32_LSTAR from CPL 3 must raise #GP.
            unsafe { asm!("wrmsr", in("ecx") 0xc000_0082u32, in("eax") 0x4141u32, in("edx") 0u32, options(nostack)) };
            Some(super::BREACH)
        }
        b"mov-dr" => {
            // SAFETY: the attack: a hardware breakpoint from CPL 3 must raise #GP.
            unsafe { asm!("mov dr0, {}", in(reg) 0x40_0000u64, options(nostack)) };
            Some(super::BREACH)
        }
        b"cli" => {
            // SAFETY: the attack: with IOPL 3, `cli` is allowed in CPL 3; interrupts are off
            // anyway, so it changes nothing — the VM must simply go on.
            unsafe { asm!("cli", options(nostack)) };
            Some(0)
        }
        b"cpuid-max" => Some(core::arch::x86_64::__cpuid(0).eax & 0xff),
        b"cpuid-kvm" => {
            let leaf = core::arch::x86_64::__cpuid(0x4000_0000);
            let kvm = [leaf.ebx, leaf.ecx, leaf.edx] == [0x4b4d_564b, 0x564b_4d56, 0x4d];
            Some(u32::from(kvm))
        }
        _ => None,
    }
}
