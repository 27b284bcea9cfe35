//! CPU features the host compiled a module for, as a bitmask in the boot info.
//!
//! The host AOT compiler enables exactly these Cranelift flags; the guest answers wasmtime's
//! `detect_host_feature` from the same bits, so a module is only loaded where its instructions
//! are known to run. One table, used by both sides.

/// One CPU feature: the name `std::is_x86_feature_detected!` (or its aarch64 twin) and wasmtime's
/// `detect_host_feature` use, the Cranelift flag that enables it, and its bit.
#[derive(Clone, Copy, Debug)]
pub struct CpuFeature {
    pub name: &'static str,
    pub cranelift_flag: &'static str,
    pub bit: u64,
}

const fn feature(name: &'static str, cranelift_flag: &'static str, bit: u32) -> CpuFeature {
    CpuFeature { name, cranelift_flag, bit: 1 << bit }
}

/// Every feature the boot info can carry. Only those that need no extra guest state are here:
/// AVX-family features need XSAVE state set up by the VMM and are not offered yet.
pub const X86_FEATURES: [CpuFeature; 9] = [
    feature("cmpxchg16b", "has_cmpxchg16b", 0),
    feature("sse3", "has_sse3", 1),
    feature("ssse3", "has_ssse3", 2),
    feature("sse4.1", "has_sse41", 3),
    feature("sse4.2", "has_sse42", 4),
    feature("popcnt", "has_popcnt", 5),
    feature("bmi1", "has_bmi1", 6),
    feature("bmi2", "has_bmi2", 7),
    feature("lzcnt", "has_lzcnt", 8),
];

/// Every aarch64 feature the boot info can carry: the names wasmtime's `detect_host_feature`
/// asks on aarch64 (`std::arch::is_aarch64_feature_detected!`'s), none of which needs guest
/// state beyond what EL0 has. Pointer authentication and BTI are left out: they need EL1 keys
/// and guarded pages the VMM does not set up.
pub const AARCH64_FEATURES: [CpuFeature; 2] = [feature("lse", "has_lse", 0), feature("fp16", "has_fp16", 1)];

/// Whether aarch64 feature `name` is in `bits`: `None` for a name not in the table.
pub fn aarch64_has(bits: u64, name: &str) -> Option<bool> {
    AARCH64_FEATURES.iter().find(|f| f.name == name).map(|f| bits & f.bit != 0)
}

/// Whether feature `name` is in `bits`: `None` for a name not in the table.
pub fn x86_has(bits: u64, name: &str) -> Option<bool> {
    X86_FEATURES.iter().find(|f| f.name == name).map(|f| bits & f.bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_distinct_and_lookup_works() {
        let all = X86_FEATURES.iter().fold(0u64, |acc, f| {
            assert_eq!(acc & f.bit, 0, "{} reuses a bit", f.name);
            acc | f.bit
        });
        assert_eq!(x86_has(all, "sse4.1"), Some(true));
        assert_eq!(x86_has(0, "sse4.1"), Some(false));
        assert_eq!(x86_has(all, "avx512f"), None);
        assert_eq!(aarch64_has(1, "lse"), Some(true));
        assert_eq!(aarch64_has(1, "fp16"), Some(false));
        assert_eq!(aarch64_has(3, "paca"), None);
    }
}
