//! The CPUID a guest vCPU sees: a normalised template, not KVM's whole supported list.
//!
//! The guest never asks CPUID what to compile for (the host's AOT compiler picks the features
//! from the host CPU and says so in each vCPU's info), so CPUID serves two purposes only: KVM
//! checks the control registers the VMM sets against it (SMEP and SMAP in CR4, NX and long mode
//! in EFER), and it is what a tenant's native code learns about the machine. So the template
//! keeps the leaves that describe the instruction set and the caches, with only the feature
//! bits a CPL 3 program can use (SSE/AVX families, BMI, SHA, …), and drops everything else:
//!
//! - KVM's paravirtual leaves (0x4000_0000 on): the guest uses no paravirtual interface, and they
//!   tell a tenant which hypervisor and which host kernel features it is under;
//! - monitoring, power, tracing, SGX, PMU and topology leaves (5, 6, 0xa, 0xb, 0x12, 0x14, 0x15,
//!   0x16, 0x1f, …): nothing the guest can use from CPL 3, host details otherwise;
//! - bits of VMX/SVM, SMX, MONITOR, x2APIC/TSC-deadline and the APIC itself (the VM has no
//!   interrupt controller), debug-store, perf and thermal features.
//!
//! SMEP and SMAP are added when the host CPU has them even if KVM does not list them (nested KVM
//! without hardware virtualisation under-reports leaf 7 but enforces both), so that CR4 may
//! turn them on.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_BASIC_MAX: u32 = 0x0;
const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_EXTENDED_FEATURES: u32 = 0x7;
const LEAF_XSAVE: u32 = 0xd;
const LEAF_EXTENDED_MAX: u32 = 0x8000_0000;
const LEAF_EXTENDED_FEATURES_AMD: u32 = 0x8000_0001;
const LEAF_L1_CACHE_AMD: u32 = 0x8000_0005;
const LEAF_L2_CACHE: u32 = 0x8000_0006;
const LEAF_ADDRESS_SIZES: u32 = 0x8000_0008;

/// Leaf 7's SMEP bit (EBX 7) and SMAP bit (EBX 20).
pub const SMEP: u32 = 1 << 7;
pub const SMAP: u32 = 1 << 20;
/// Leaf 7's UMIP bit (ECX 2): `sgdt`, `sidt`, `sldt`, `smsw` and `str` fault in CPL 3.
pub const UMIP: u32 = 1 << 2;

/// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, AES, XSAVE,
/// AVX, F16C, RDRAND; plus the hypervisor bit, which is set.
const FEATURES_ECX: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 9)
    | (1 << 12)
    | (1 << 13)
    | (1 << 19)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 25)
    | (1 << 26)
    | (1 << 28)
    | (1 << 29)
    | (1 << 30);
const HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, SEP, MTRR, PGE, CMOV, PAT, PSE36,
/// CLFLUSH, MMX, FXSR, SSE, SSE2 (not MCE/MCA, APIC, ACPI, DS, HTT, TM, PBE).
const FEATURES_EDX: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 19)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26);
/// Leaf 7 EBX: BMI1, AVX2, SMEP, BMI2, ERMS, AVX-512 F/DQ/IFMA/CD/BW/VL, ADX, SMAP,
/// CLFLUSHOPT, CLWB, SHA.
const EXTENDED_EBX: u32 = (1 << 3)
    | (1 << 5)
    | SMEP
    | (1 << 8)
    | (1 << 9)
    | (1 << 16)
    | (1 << 17)
    | (1 << 19)
    | SMAP
    | (1 << 21)
    | (1 << 23)
    | (1 << 24)
    | (1 << 28)
    | (1 << 29)
    | (1 << 30)
    | (1 << 31);
/// Leaf 7 ECX: AVX-512 VBMI, UMIP, VBMI2, GFNI, VAES, VPCLMULQDQ, AVX-512 VNNI/BITALG/VPOPCNTDQ.
const EXTENDED_ECX: u32 =
    (1 << 1) | UMIP | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14);
/// Leaf 0x8000_0001 ECX: LAHF/SAHF, LZCNT, SSE4A, misaligned SSE, PREFETCHW.
const AMD_ECX: u32 = (1 << 0) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8);
/// Leaf 0x8000_0001 EDX: SYSCALL, NX, MMX extensions, 1 GiB pages, RDTSCP, long mode.
const AMD_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 26) | (1 << 27) | (1 << 29);

/// What the host CPU itself says of SMEP, SMAP and UMIP (leaf 7), read with user-mode `cpuid`.
pub fn host_protections() -> (u32, u32) {
    // Leaf 0 says whether leaf 7 exists before it is asked.
    if core::arch::x86_64::__cpuid(0).eax < LEAF_EXTENDED_FEATURES {
        return (0, 0);
    }
    let leaf7 = core::arch::x86_64::__cpuid_count(LEAF_EXTENDED_FEATURES, 0);
    (leaf7.ebx & (SMEP | SMAP), leaf7.ecx & UMIP)
}

/// The guest's CPUID from KVM's supported list and the host's own protections (`host_ebx`,
/// `host_ecx` of leaf 7, as [`host_protections`] gives them).
pub fn template(supported: &CpuId, (host_ebx, host_ecx): (u32, u32)) -> CpuId {
    let mut entries: Vec<kvm_cpuid_entry2> = Vec::new();
    for entry in supported.as_slice() {
        let mut e = *entry;
        match (e.function, e.index) {
            (LEAF_BASIC_MAX, _) => e.eax = e.eax.min(LEAF_XSAVE),
            (LEAF_FEATURES, _) => {
                // Stepping, model, family; CLFLUSH line size. No APIC id or logical count.
                e.ebx &= 0x0000_ff00;
                e.ecx = (e.ecx & FEATURES_ECX) | HYPERVISOR;
                e.edx &= FEATURES_EDX;
            }
            (LEAF_CACHE, _) | (LEAF_XSAVE, _) | (LEAF_L1_CACHE_AMD, _) | (LEAF_L2_CACHE, _) => {}
            (LEAF_EXTENDED_FEATURES, 0) => {
                e.eax = 0; // no sub-leaf 1
                e.ebx = (e.ebx & EXTENDED_EBX) | host_ebx;
                e.ecx = (e.ecx & EXTENDED_ECX) | host_ecx;
                e.edx = 0;
            }
            (LEAF_EXTENDED_MAX, _) => e.eax = e.eax.min(LEAF_ADDRESS_SIZES),
            (LEAF_EXTENDED_FEATURES_AMD, _) => {
                e.ebx = 0;
                e.ecx &= AMD_ECX;
                e.edx &= AMD_EDX;
            }
            (LEAF_ADDRESS_SIZES, _) => {
                // Physical and linear address widths only.
                e.eax &= 0xffff;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            _ => continue,
        }
        entries.push(e);
    }
    CpuId::from_entries(&entries).expect("fewer entries than KVM gave")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, index, eax, ebx, ecx, edx, ..Default::default() }
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> Option<kvm_cpuid_entry2> {
        cpuid.as_slice().iter().find(|e| e.function == function && e.index == index).copied()
    }

    #[test]
    fn the_template_keeps_instruction_set_leaves_and_drops_the_rest() {
        let supported = CpuId::from_entries(&[
            entry(0, 0, 0x1c, 1, 2, 3),
            entry(1, 0, 0x00b0_0f21, 0x0102_0800, u32::MAX, u32::MAX),
            entry(6, 0, 4, 0, 0, 0),
            entry(7, 0, 1, u32::MAX, u32::MAX, u32::MAX),
            entry(7, 1, 0, 0, 0, 0),
            entry(0xa, 0, 0x0703_0105, 0, 0, 0),
            entry(0xd, 0, 0xe7, 0x980, 0x980, 0),
            entry(0x4000_0000, 0, 0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d),
            entry(0x4000_0001, 0, 0x0100_7efb, 0, 0, 0),
            entry(0x8000_0000, 0, 0x8000_0021, 0, 0, 0),
            entry(0x8000_0001, 0, 0, u32::MAX, u32::MAX, u32::MAX),
            entry(0x8000_0008, 0, 0x3030, 0x5002_0005, 0x7001, 0),
            entry(0x8000_001f, 0, 1, 2, 3, 4),
        ])
        .unwrap();
        let guest = template(&supported, (0, 0));
        let functions: Vec<_> = guest.as_slice().iter().map(|e| (e.function, e.index)).collect();
        assert_eq!(functions, [(0, 0), (1, 0), (7, 0), (0xd, 0), (0x8000_0000, 0), (0x8000_0001, 0), (0x8000_0008, 0)]);
        assert_eq!(find(&guest, 0, 0).unwrap().eax, 0xd, "no basic leaf above XSAVE's");
        assert_eq!(find(&guest, 0x8000_0000, 0).unwrap().eax, 0x8000_0008);
        let features = find(&guest, 1, 0).unwrap();
        assert_eq!(features.ecx & (1 << 5), 0, "no VMX");
        assert_eq!(features.ecx & (1 << 21), 0, "no x2APIC");
        assert_eq!(features.edx & (1 << 9), 0, "no APIC");
        assert_ne!(features.ecx & HYPERVISOR, 0);
        assert_ne!(features.ecx & (1 << 20), 0, "SSE4.2 is kept");
        assert_eq!(features.ebx, 0x0800, "no APIC id");
        let extended = find(&guest, 7, 0).unwrap();
        assert_eq!(extended.eax, 0);
        assert_eq!(extended.ebx, EXTENDED_EBX);
        assert_eq!(extended.edx, 0);
        let amd = find(&guest, 0x8000_0001, 0).unwrap();
        assert_eq!(amd.ecx & (1 << 2), 0, "no SVM");
        assert_ne!(amd.edx & (1 << 29), 0, "long mode");
        assert_eq!(find(&guest, 0x8000_0008, 0).unwrap(), entry(0x8000_0008, 0, 0x3030, 0, 0, 0));
    }

    #[test]
    fn smep_smap_and_umip_follow_the_host_where_kvm_under_reports_them() {
        let supported = CpuId::from_entries(&[entry(7, 0, 0, 0x0180_0002, 0x104, 0)]).unwrap();
        let without = find(&template(&supported, (0, 0)), 7, 0).unwrap();
        assert_eq!(without.ebx & (SMEP | SMAP), 0);
        let with = find(&template(&supported, (SMEP | SMAP, UMIP)), 7, 0).unwrap();
        assert_eq!(with.ebx & (SMEP | SMAP), SMEP | SMAP);
        assert_eq!(with.ecx & UMIP, UMIP);
        assert_eq!(with.ebx & 0x2, 0, "TSC_ADJUST is dropped");
    }
}
