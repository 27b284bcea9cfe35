//! The vCPU's state at the first instruction: 64-bit long mode, paging on, and CPL 3 straight
//! away (`CS.DPL = 3`, `RFLAGS.IOPL = 3`, `IF = 0`), with SMEP and SMAP (and UMIP) on where the
//! host CPU has them, under the normalised CPUID (`cpuid.rs`). No guest code runs in CPL 0 to
//! get there.
//!
//! A vCPU is set up again each time it is given a workload, and nothing of its last run stays:
//! general, segment, control and floating-point registers are written whole, and every MSR,
//! debug register, XCR and pending event KVM lets the VMM set is put back to what it was when
//! the vCPU was created (captured then, before any guest instruction). A workload that reached
//! CPL 0 through a bug could otherwise leave a `LSTAR`, a `PAT` or a hardware breakpoint for the
//! next one.

use super::super::VcpuEntry;
use super::cpuid;
use super::descriptors::{
    self, tss_address, GDT_ENTRIES, IDT_BYTES, TSS_LIMIT, TSS_SELECTOR, USER_CODE_SELECTOR, USER_DATA_SELECTOR,
};
use crate::memory::GuestMemory;
use kvm_bindings::{
    kvm_debugregs, kvm_fpu, kvm_msr_entry, kvm_segment, kvm_vcpu_events, kvm_xcrs, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
    KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW,
};
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
const CR4_UMIP: u64 = 1 << 11;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;
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
    #[error("Cannot read the new vCPU's state")]
    Capture(#[source] kvm_ioctls::Error),
    #[error("Cannot reset the vCPU's MSRs")]
    ResetMsrs(#[source] kvm_ioctls::Error),
    #[error("Cannot reset the vCPU's debug registers, XCRs or pending events")]
    ResetState(#[source] kvm_ioctls::Error),
    #[error("The vCPU ran before and its first state was not kept")]
    NotResettable,
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

/// What every guest vCPU runs under, worked out once per process.
struct CpuSetup {
    /// The normalised CPUID (`cpuid::template`).
    cpuid: CpuId,
    /// SMEP, SMAP and UMIP in CR4, where the host CPU has them.
    cr4_protections: u64,
}

fn cpu_setup(kvm: &Kvm) -> Result<&'static CpuSetup, VcpuSetupError> {
    static SETUP: OnceLock<CpuSetup> = OnceLock::new();
    if let Some(setup) = SETUP.get() {
        return Ok(setup);
    }
    let (host_ebx, host_ecx) = cpuid::host_protections();
    let mut cr4_protections = 0;
    for (has, bit) in [(host_ebx & cpuid::SMEP, CR4_SMEP), (host_ebx & cpuid::SMAP, CR4_SMAP), (host_ecx, CR4_UMIP)] {
        if has != 0 {
            cr4_protections |= bit;
        }
    }
    let cpuid = cpuid::template(supported_cpuid(kvm)?, (host_ebx, host_ecx));
    Ok(SETUP.get_or_init(|| CpuSetup { cpuid, cr4_protections }))
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

/// A vCPU's state as KVM created it, put back before each of its later runs.
pub struct VcpuPristine {
    msrs: Msrs,
    debug: kvm_debugregs,
    xcrs: Option<kvm_xcrs>,
    events: kvm_vcpu_events,
}

/// MSRs left out of the reset: the time-stamp counter runs on (each run samples it afresh), and
/// moving it back would only confuse KVM's TSC bookkeeping.
const MSRS_KEPT: [u32; 3] = [MSR_TSC, 0x3b /* IA32_TSC_ADJUST */, 0x6e0 /* IA32_TSC_DEADLINE */];

/// The values of every MSR KVM lets the VMM read and write back for `vcpu`. The list is
/// worked out once per process, on the first vCPU before it runs: KVM's index list names MSRs
/// a given CPU lacks (`KVM_GET_MSRS` stops at them) and MSRs it refuses to have written for a
/// guest whose CPUID does not announce them (KVM's paravirtual ones: `KVM_SET_MSRS` stops).
fn read_msrs(kvm: &Kvm, vcpu: &VcpuFd) -> Result<Msrs, VcpuSetupError> {
    static LIST: OnceLock<Vec<u32>> = OnceLock::new();
    let list = match LIST.get() {
        Some(list) => list,
        None => {
            let listed = kvm.get_msr_index_list().map_err(VcpuSetupError::Capture)?;
            let all: Vec<u32> = listed.as_slice().iter().copied().filter(|i| !MSRS_KEPT.contains(i)).collect();
            let readable = keep_accepted(&all, |msrs| vcpu.get_msrs(msrs))?;
            // Writing back what was just read changes nothing.
            let resettable = keep_accepted(&readable, |msrs| {
                vcpu.get_msrs(msrs)?;
                vcpu.set_msrs(msrs)
            })?;
            LIST.get_or_init(|| resettable)
        }
    };
    let mut msrs = msrs_of(list)?;
    let read = vcpu.get_msrs(&mut msrs).map_err(VcpuSetupError::Capture)?;
    if read != list.len() {
        return Err(VcpuSetupError::Capture(errno(libc::EIO)));
    }
    Ok(msrs)
}

fn msrs_of(indices: &[u32]) -> Result<Msrs, VcpuSetupError> {
    let entries: Vec<kvm_msr_entry> =
        indices.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
    Msrs::from_entries(&entries).map_err(|_| VcpuSetupError::Capture(errno(libc::E2BIG)))
}

/// The MSRs of `indices` that `ioctl` (`KVM_GET_MSRS` or `KVM_SET_MSRS`, which process entries
/// in order and return how many they did) accepts: the one it stops at is dropped, and the rest
/// asked again.
fn keep_accepted(
    indices: &[u32],
    mut ioctl: impl FnMut(&mut Msrs) -> Result<usize, kvm_ioctls::Error>,
) -> Result<Vec<u32>, VcpuSetupError> {
    let (mut accepted, mut rest) = (Vec::with_capacity(indices.len()), indices);
    while !rest.is_empty() {
        let mut msrs = msrs_of(rest)?;
        let done = ioctl(&mut msrs).map_err(VcpuSetupError::Capture)?.min(rest.len());
        accepted.extend_from_slice(&rest[..done]);
        rest = &rest[(done + 1).min(rest.len())..];
    }
    Ok(accepted)
}

fn errno(code: i32) -> kvm_ioctls::Error {
    kvm_ioctls::Error::new(code)
}

/// Creates vCPU `index` with the CPUID it runs under and writes its TSS. With `capture`, also
/// its state as created, for the resets before its later runs (a vCPU that will run once, as in
/// `Vm::run`, needs none: capturing costs a handful of ioctls on the boot path).
pub fn create_vcpu(
    kvm: &Kvm,
    vm: &VmFd,
    memory: &GuestMemory,
    index: u32,
    capture: bool,
) -> Result<(VcpuFd, Option<VcpuPristine>), VcpuSetupError> {
    let vcpu = vm.create_vcpu(u64::from(index)).map_err(VcpuSetupError::Create)?;
    // KVM checks EFER.LME/NXE and CR4 against the guest's CPUID, so CPUID comes first.
    vcpu.set_cpuid2(&cpu_setup(kvm)?.cpuid).map_err(VcpuSetupError::SetCpuid)?;
    descriptors::write_tss(memory, index).map_err(VcpuSetupError::WriteTss)?;
    if !capture {
        return Ok((vcpu, None));
    }
    let pristine = VcpuPristine {
        msrs: read_msrs(kvm, &vcpu)?,
        debug: vcpu.get_debug_regs().map_err(VcpuSetupError::Capture)?,
        xcrs: vcpu.get_xcrs().ok(),
        events: vcpu.get_vcpu_events().map_err(VcpuSetupError::Capture)?,
    };
    Ok((vcpu, Some(pristine)))
}

/// Puts back everything of `pristine` (before a vCPU's second and later runs).
fn reset(vcpu: &VcpuFd, pristine: &VcpuPristine) -> Result<(), VcpuSetupError> {
    let written = vcpu.set_msrs(&pristine.msrs).map_err(VcpuSetupError::ResetMsrs)?;
    if written != pristine.msrs.as_slice().len() {
        return Err(VcpuSetupError::ResetMsrs(errno(libc::EIO)));
    }
    vcpu.set_debug_regs(&pristine.debug).map_err(VcpuSetupError::ResetState)?;
    if let Some(xcrs) = &pristine.xcrs {
        vcpu.set_xcrs(xcrs).map_err(VcpuSetupError::ResetState)?;
    }
    let events =
        kvm_vcpu_events { flags: KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW, ..pristine.events };
    vcpu.set_vcpu_events(&events).map_err(VcpuSetupError::ResetState)
}

/// Puts vCPU `index` at `entry` in 64-bit CPL 3 with `RDI` = the boot info, `RSI` = its info,
/// GS base = its block, TR = its TSS and `RSP` just below `stack_top` (as if `entry` had been
/// called).
///
/// A vCPU that ran before is first put back as it was created (`pristine`: MSRs, debug
/// registers, XCRs, pending events; a vCPU without one is never run twice) and gets its
/// floating-point state cleared; `CR3` (the
/// page-table root) alternates between the root with and without PWT from one start to the
/// next: a changed `CR3` makes KVM drop the vCPU's cached translations, which may name a window
/// since unmapped.
pub fn configure_vcpu(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    at: &VcpuEntry,
    pristine: Option<&VcpuPristine>,
) -> Result<(), VcpuSetupError> {
    let VcpuEntry { index, entry, stack_top, root, starts } = *at;
    if starts > 0 {
        reset(vcpu, pristine.ok_or(VcpuSetupError::NotResettable)?)?;
    }
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
    sregs.cr3 = root | if starts % 2 == 1 { CR3_PWT } else { 0 };
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | cpu_setup(kvm)?.cr4_protections;
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

/// The TSC's frequency in kHz, as KVM gives it to the guest; 0 if it will not say.
pub fn counter_khz(vcpu: &VcpuFd) -> u64 {
    vcpu.get_tsc_khz().map(u64::from).unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    const MSR_LSTAR: u32 = 0xc000_0082;
    const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
    const MSR_SYSENTER_EIP: u32 = 0x176;
    const MSR_PAT: u32 = 0x277;

    fn msr(vcpu: &VcpuFd, index: u32) -> u64 {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index, ..Default::default() }]).unwrap();
        assert_eq!(vcpu.get_msrs(&mut msrs).unwrap(), 1);
        msrs.as_slice()[0].data
    }

    /// What a workload that reached CPL 0 could leave behind on its vCPU is gone when the vCPU
    /// is set up for the next one, and the control registers carry the protections.
    #[test]
    fn a_reused_vcpu_keeps_nothing_of_its_last_run() {
        let kvm = Kvm::new().expect("/dev/kvm: these tests use real KVM");
        let vm = kvm.create_vm().unwrap();
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let (vcpu, pristine) = create_vcpu(&kvm, &vm, &memory, 1, true).unwrap();
        let pristine = pristine.expect("captured");
        let at = VcpuEntry { index: 1, entry: map::IMAGE_START, stack_top: 0x20_0000, root: 0x21_0000, starts: 0 };
        configure_vcpu(&kvm, &vcpu, &at, Some(&pristine)).unwrap();
        let before: Vec<u64> = [MSR_LSTAR, MSR_KERNEL_GS_BASE, MSR_SYSENTER_EIP, MSR_PAT].map(|i| msr(&vcpu, i)).into();

        // The last run's leftovers: syscall and sysenter targets, a swapped GS base, memory
        // types, a hardware breakpoint.
        let dirty = [
            (MSR_LSTAR, 0x4141_4141_0000u64),
            (MSR_KERNEL_GS_BASE, 0x4242_0000),
            (MSR_SYSENTER_EIP, 0x4343_0000),
            (MSR_PAT, 0x0606_0606_0606_0606),
        ]
        .map(|(index, data)| kvm_msr_entry { index, data, ..Default::default() });
        assert_eq!(vcpu.set_msrs(&Msrs::from_entries(&dirty).unwrap()).unwrap(), dirty.len());
        let mut debug = vcpu.get_debug_regs().unwrap();
        debug.db[0] = 0x40_0000;
        debug.dr7 |= 0x3;
        vcpu.set_debug_regs(&debug).unwrap();
        assert_eq!(msr(&vcpu, MSR_LSTAR), 0x4141_4141_0000, "the leftovers are in place");

        configure_vcpu(&kvm, &vcpu, &VcpuEntry { starts: 1, ..at }, Some(&pristine)).unwrap();
        let after: Vec<u64> = [MSR_LSTAR, MSR_KERNEL_GS_BASE, MSR_SYSENTER_EIP, MSR_PAT].map(|i| msr(&vcpu, i)).into();
        assert_eq!(after, before, "every MSR is back as the vCPU was created");
        let debug = vcpu.get_debug_regs().unwrap();
        assert_eq!((debug.db[0], debug.dr7 & 0xff), (0, 0), "no breakpoint survives");

        // A vCPU whose first state was not kept is never run twice.
        let (once, none) = create_vcpu(&kvm, &vm, &memory, 2, false).unwrap();
        assert!(none.is_none());
        let again = configure_vcpu(&kvm, &once, &VcpuEntry { index: 2, starts: 1, ..at }, None);
        assert!(matches!(again, Err(VcpuSetupError::NotResettable)), "{again:?}");

        // SMEP and SMAP are on wherever the host CPU has them.
        let (host_ebx, _) = cpuid::host_protections();
        let cr4 = vcpu.get_sregs().unwrap().cr4;
        assert_eq!(cr4 & CR4_SMEP != 0, host_ebx & cpuid::SMEP != 0);
        assert_eq!(cr4 & CR4_SMAP != 0, host_ebx & cpuid::SMAP != 0);
    }
}
