//! The vCPU's state at the first instruction: the MMU on in an address space the VMM built
//! (`TTBR0_EL1`, `TCR_EL1`, `MAIR_EL1`, `SCTLR_EL1`), the VMM's EL1 vectors (`VBAR_EL1`), FP and
//! SIMD and the virtual counter open to EL0, and the vCPU's block in `TPIDRRO_EL0` (EL0 reads it
//! and cannot change it). The vCPU starts in the VMM's start stub at EL1 (`vectors.rs`), which
//! drops stale translations and `eret`s to the guest's entry at EL0: no guest code runs at EL1.
//!
//! A vCPU is set up again each time it is given a workload, and nothing of its last run stays:
//! `KVM_ARM_VCPU_INIT` again resets every register KVM keeps for it (general, FP/SIMD, system
//! and debug registers, timers) to its reset value, then the entry state is written whole.

use super::super::VcpuEntry;
use super::vectors::{ENTRY_OFFSET, SPSR_EL0_MASKED};
use crate::memory::GuestMemory;
use kvm_bindings::{
    kvm_regs, kvm_vcpu_init, user_pt_regs, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::mem::offset_of;
use wasmcell_abi::memory_map as map;

/// Errors while preparing the vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuSetupError {
    #[error("Cannot create the vCPU")]
    Create(#[source] kvm_ioctls::Error),
    #[error("Cannot find the preferred vCPU target")]
    PreferredTarget(#[source] kvm_ioctls::Error),
    #[error("Cannot initialise (reset) the vCPU")]
    Init(#[source] kvm_ioctls::Error),
    #[error("Cannot set the vCPU's {0}")]
    SetRegister(&'static str, #[source] kvm_ioctls::Error),
    #[error("The vCPU ran before and its first state was not kept")]
    NotResettable,
}

/// `SCTLR_EL1`: MMU (M), data and instruction caches (C, I), stack alignment checks (SA, SA0);
/// EL0 may use `DC ZVA`, read `CTR_EL0` and clean caches (DZE, UCT, UCI) as user space may on
/// Linux; PSTATE.PAN is left alone on exception entry (SPAN); exception entry and return are
/// context-synchronising (EIS, EOS); and the bits that are RES1 on ARMv8.0 (TSCXT, nTLSMD,
/// LSMAOE). EL0 `WFI`/`WFE` trap to EL1 (nTWI, nTWE clear): a workload cannot idle a core.
const SCTLR_EL1: u64 = 1 << 0 // M
    | 1 << 2 // C
    | 1 << 3 // SA
    | 1 << 4 // SA0
    | 1 << 11 // EOS
    | 1 << 12 // I
    | 1 << 14 // DZE
    | 1 << 15 // UCT
    | 1 << 20 // TSCXT
    | 1 << 22 // EIS
    | 1 << 23 // SPAN
    | 1 << 26 // UCI
    | 1 << 28 // nTLSMD
    | 1 << 29; // LSMAOE

/// `TCR_EL1`: 48-bit virtual addresses through TTBR0 (T0SZ = 16), 4 KiB granule, tables in
/// inner-shareable write-back memory; no walks through TTBR1 (EPD1); 48-bit intermediate
/// physical addresses at most (IPS; KVM caps them at the VM's IPA size).
const TCR_EL1: u64 = 16 // T0SZ
    | 1 << 8 // IRGN0: write-back, write-allocate
    | 1 << 10 // ORGN0: write-back, write-allocate
    | 3 << 12 // SH0: inner shareable
    | 1 << 23 // EPD1
    | 5 << 32; // IPS: 48 bits

/// `MAIR_EL1`: attribute 0 normal write-back memory, attribute 1 device-nGnRnE (`pte.rs`).
const MAIR_EL1: u64 = 0x00ff;

/// `CPACR_EL1.FPEN`: FP and SIMD at EL0 and EL1 without traps (Cranelift's code is NEON).
const CPACR_EL1: u64 = 3 << 20;

/// `CNTKCTL_EL1.EL0VCTEN`: EL0 may read the virtual counter (and its frequency).
const CNTKCTL_EL1: u64 = 1 << 1;

/// PSTATE of the start stub: EL1 with SP_EL1 (`EL1h`), debug, SError, IRQ and FIQ masked.
const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// A system register's `KVM_{GET,SET}_ONE_REG` id from its encoding.
const fn system_register(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG as u64 | op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}

/// A core register's id from its offset in `struct kvm_regs`.
const fn core_register(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

const fn general_register(n: usize) -> u64 {
    core_register(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, regs) + n * 8)
}

const SCTLR: u64 = system_register(3, 0, 1, 0, 0);
const CPACR: u64 = system_register(3, 0, 1, 0, 2);
const TTBR0: u64 = system_register(3, 0, 2, 0, 0);
const TCR: u64 = system_register(3, 0, 2, 0, 2);
pub(super) const ESR: u64 = system_register(3, 0, 5, 2, 0);
pub(super) const FAR: u64 = system_register(3, 0, 6, 0, 0);
const MAIR: u64 = system_register(3, 0, 10, 2, 0);
const VBAR: u64 = system_register(3, 0, 12, 0, 0);
const TPIDR_EL1: u64 = system_register(3, 0, 13, 0, 4);
const TPIDRRO_EL0: u64 = system_register(3, 3, 13, 0, 3);
const CNTKCTL: u64 = system_register(3, 0, 14, 1, 0);
/// KVM's id for the virtual counter (`CNTVCT_EL0`; KVM's encoding, not the architecture's).
const TIMER_CNT: u64 = system_register(3, 3, 14, 3, 2);
const SP_EL0: u64 = core_register(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, sp));
pub(super) const PC: u64 = core_register(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pc));
const PSTATE: u64 = core_register(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pstate));
pub(super) const ELR_EL1: u64 = core_register(offset_of!(kvm_regs, elr_el1));
const SPSR_EL1: u64 = core_register(offset_of!(kvm_regs, spsr));

/// Reads a 64-bit register; 0 if KVM will not say.
pub(super) fn read(vcpu: &VcpuFd, id: u64) -> u64 {
    let mut value = [0u8; 8];
    match vcpu.get_one_reg(id, &mut value) {
        Ok(_) => u64::from_le_bytes(value),
        Err(_) => 0,
    }
}

fn write(vcpu: &VcpuFd, name: &'static str, id: u64, value: u64) -> Result<(), VcpuSetupError> {
    vcpu.set_one_reg(id, &value.to_le_bytes()).map(|_| ()).map_err(|e| VcpuSetupError::SetRegister(name, e))
}

/// How a vCPU was initialised, to initialise it again (which resets it) before a later run.
pub struct VcpuPristine {
    init: kvm_vcpu_init,
}

/// The guest's intermediate physical address width: the 40 bits every KVM gives a VM created
/// without an IPA size.
pub fn guest_phys_bits(_kvm: &Kvm) -> u32 {
    40
}

/// Creates vCPU `index` as KVM's preferred target for this host. With `capture`, keeps how it
/// was initialised, for the resets before its later runs.
pub fn create_vcpu(
    _kvm: &Kvm,
    vm: &VmFd,
    _memory: &GuestMemory,
    index: u32,
    capture: bool,
) -> Result<(VcpuFd, Option<VcpuPristine>), VcpuSetupError> {
    let vcpu = vm.create_vcpu(u64::from(index)).map_err(VcpuSetupError::Create)?;
    let mut init = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut init).map_err(VcpuSetupError::PreferredTarget)?;
    vcpu.vcpu_init(&init).map_err(VcpuSetupError::Init)?;
    Ok((vcpu, capture.then_some(VcpuPristine { init })))
}

/// Puts vCPU `index` in the start stub, which enters `entry` at EL0 with `x0` = the boot info,
/// `x1` = its info and `SP_EL0` = `stack_top`. A vCPU that ran before is first reset
/// (`KVM_ARM_VCPU_INIT` again; a vCPU without a `pristine` is never run twice).
pub fn configure_vcpu(
    _kvm: &Kvm,
    vcpu: &VcpuFd,
    at: &VcpuEntry,
    pristine: Option<&VcpuPristine>,
) -> Result<(), VcpuSetupError> {
    let VcpuEntry { index, entry, stack_top, root, starts } = *at;
    if starts > 0 {
        let pristine = pristine.ok_or(VcpuSetupError::NotResettable)?;
        vcpu.vcpu_init(&pristine.init).map_err(VcpuSetupError::Init)?;
    }
    let area = map::vcpu_area(index);
    let registers = [
        ("SCTLR_EL1", SCTLR, SCTLR_EL1),
        ("TCR_EL1", TCR, TCR_EL1),
        ("MAIR_EL1", MAIR, MAIR_EL1),
        ("TTBR0_EL1", TTBR0, root),
        ("VBAR_EL1", VBAR, map::EXCEPTION_STUBS),
        ("CPACR_EL1", CPACR, CPACR_EL1),
        ("CNTKCTL_EL1", CNTKCTL, CNTKCTL_EL1),
        ("TPIDRRO_EL0", TPIDRRO_EL0, area + map::VCPU_BLOCK),
        ("TPIDR_EL1", TPIDR_EL1, entry),
        ("x0", general_register(0), map::BOOT_INFO),
        ("x1", general_register(1), area + map::VCPU_INFO),
        ("SP_EL0", SP_EL0, stack_top),
        ("ELR_EL1", ELR_EL1, entry),
        ("SPSR_EL1", SPSR_EL1, SPSR_EL0_MASKED),
        ("PC", PC, map::EXCEPTION_STUBS + ENTRY_OFFSET),
        ("PSTATE", PSTATE, PSTATE_EL1H_MASKED),
    ];
    for (name, id, value) in registers {
        write(vcpu, name, id, value)?;
    }
    Ok(())
}

/// The guest's virtual counter and the host's realtime clock (ns since the epoch), read back to
/// back: the guest derives its wall clock from this pair and the counter's frequency.
pub fn clock_sample(vcpu: &VcpuFd) -> (u64, u64) {
    let counter = read(vcpu, TIMER_CNT);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (counter, now.as_nanos() as u64)
}

/// The counter's frequency in kHz: the system counter's, which the guest's virtual counter
/// shares (`CNTFRQ_EL0`, readable by the VMM itself).
pub fn counter_khz(_vcpu: &VcpuFd) -> u64 {
    let hz: u64;
    // SAFETY: reads a system register EL0 may read; no memory is touched.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack, preserves_flags)) };
    hz / 1000
}
