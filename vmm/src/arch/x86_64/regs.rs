//! The vCPU's state at the first instruction: 64-bit long mode, paging on, and CPL 3 straight
//! away (`CS.DPL = 3`, `RFLAGS.IOPL = 3`, `IF = 0`). No guest code runs in CPL 0 to get there.
//! A vCPU is set up again each time it is given a workload, so nothing of the last one stays.

use super::descriptors::{
    self, tss_address, GDT_ENTRIES, IDT_BYTES, TSS_LIMIT, TSS_SELECTOR, USER_CODE_SELECTOR, USER_DATA_SELECTOR,
};
use crate::memory::GuestMemory;
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_segment, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::sync::OnceLock;
use wasmcell_abi::memory_map as map;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR3_PWT: u64 = 1 << 3;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const RFLAGS_RESERVED: u64 = 1 << 1;
const RFLAGS_IOPL3: u64 = 3 << 12;

/// Errors while preparing the vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuSetupError {
    #[error("Cannot get the CPUID KVM supports")]
    GetCpuid(#[source] kvm_ioctls::Error),
    #[error("Cannot set the vCPU's CPUID")]
    SetCpuid(#[source] kvm_ioctls::Error),
    #[error("Cannot get the vCPU's special registers")]
    GetSregs(#[source] kvm_ioctls::Error),
    #[error("Cannot set the vCPU's special registers")]
    SetSregs(#[source] kvm_ioctls::Error),
    #[error("Cannot set the vCPU's registers")]
    SetRegs(#[source] kvm_ioctls::Error),
    #[error("Cannot reset the vCPU's floating-point state")]
    SetFpu(#[source] kvm_ioctls::Error),
    #[error("Cannot create the vCPU")]
    Create(#[source] kvm_ioctls::Error),
    #[error("Cannot write the vCPU's TSS")]
    WriteTss(#[source] vm_memory::GuestMemoryError),
}

/// KVM's supported CPUID, asked once per process: the ioctl costs ~0.5 ms on nested KVM.
fn supported_cpuid(kvm: &Kvm) -> Result<&'static CpuId, VcpuSetupError> {
    static CPUID: OnceLock<CpuId> = OnceLock::new();
    if let Some(cpuid) = CPUID.get() {
        return Ok(cpuid);
    }
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(VcpuSetupError::GetCpuid)?;
    Ok(CPUID.get_or_init(|| cpuid))
}

/// The guest's physical address width (CPUID leaf 0x8000_0008 as KVM offers it), from the
/// same cached list; 36 bits (the architectural minimum) if KVM does not say.
pub fn guest_phys_bits(kvm: &Kvm) -> u32 {
    supported_cpuid(kvm)
        .ok()
        .and_then(|cpuid| cpuid.as_slice().iter().find(|e| e.function == 0x8000_0008).map(|e| e.eax & 0xff))
        .unwrap_or(36)
        .clamp(36, 52)
}

fn segment(selector: u16, type_: u8, dpl: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        ..Default::default()
    }
}

/// Creates vCPU `index` with the CPUID it runs under and writes its TSS.
pub fn create_vcpu(kvm: &Kvm, vm: &VmFd, memory: &GuestMemory, index: u32) -> Result<VcpuFd, VcpuSetupError> {
    let vcpu = vm.create_vcpu(u64::from(index)).map_err(VcpuSetupError::Create)?;
    // KVM checks EFER.LME/NXE against the guest's CPUID, so CPUID comes first.
    vcpu.set_cpuid2(supported_cpuid(kvm)?).map_err(VcpuSetupError::SetCpuid)?;
    descriptors::write_tss(memory, index).map_err(VcpuSetupError::WriteTss)?;
    Ok(vcpu)
}

/// Puts vCPU `index` at `entry` in 64-bit CPL 3 with `RDI` = the boot info, `RSI` = its info,
/// GS base = its block, TR = its TSS and `RSP` just below `stack_top` (as if `entry` had been
/// called). `starts` is how many runs the vCPU started before this one.
///
/// A vCPU that ran before gets its floating-point state cleared, and `CR3` (the page-table
/// root) alternates between the root with and without PWT from one start to the next: a
/// changed `CR3` makes KVM drop the vCPU's cached translations, which may name a window since
/// unmapped.
pub fn configure_vcpu(
    vcpu: &VcpuFd,
    entry: u64,
    index: u32,
    stack_top: u64,
    cr3: u64,
    starts: u64,
) -> Result<(), VcpuSetupError> {
    let area = map::vcpu_area(index);
    let mut sregs = vcpu.get_sregs().map_err(VcpuSetupError::GetSregs)?;
    let code = segment(USER_CODE_SELECTOR, 0xb, 3, true);
    let data = segment(USER_DATA_SELECTOR, 0x3, 3, false);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = kvm_segment { base: area + map::VCPU_BLOCK, ..data };
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: tss_address(index),
        limit: TSS_LIMIT,
        selector: TSS_SELECTOR,
        type_: 0xb, // busy 64-bit TSS
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = map::GDT;
    sregs.gdt.limit = (GDT_ENTRIES * 8 - 1) as u16;
    sregs.idt.base = map::IDT;
    sregs.idt.limit = IDT_BYTES - 1;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = cr3 | if starts % 2 == 1 { CR3_PWT } else { 0 };
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
    vcpu.set_sregs(&sregs).map_err(VcpuSetupError::SetSregs)?;

    if starts > 0 {
        // x87 control word and MXCSR at their reset values, every register zero.
        let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
        vcpu.set_fpu(&fpu).map_err(VcpuSetupError::SetFpu)?;
    }

    let regs = kvm_bindings::kvm_regs {
        rip: entry,
        rsp: stack_top - 8,
        rdi: map::BOOT_INFO,
        rsi: area + map::VCPU_INFO,
        rflags: RFLAGS_RESERVED | RFLAGS_IOPL3,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(VcpuSetupError::SetRegs)
}

/// `IA32_TIME_STAMP_COUNTER`.
const MSR_TSC: u32 = 0x10;

/// The guest's TSC and the host's realtime clock (ns since the epoch), read back to back: the
/// guest derives its wall clock from this pair and the TSC frequency. `(0, now)` if KVM cannot
/// read the MSR (the guest TSC then starts near 0 at vCPU creation anyway).
pub fn clock_sample(vcpu: &VcpuFd) -> (u64, u64) {
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index: MSR_TSC, ..Default::default() }]).expect("one MSR");
    let tsc = match vcpu.get_msrs(&mut msrs) {
        Ok(1) => msrs.as_slice()[0].data,
        _ => 0,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (tsc, now.as_nanos() as u64)
}
