//! The one wasmtime engine configuration that both the host AOT compiler (`shim/aot`) and the
//! guest runtime (`guest/kernel`) start from, so that what the host compiles is exactly what the
//! guest can load: every setting that changes generated code lives here and nowhere else.
//!
//! `no_std`; each side adds only what is its own (the host: target triple and CPU flags; the
//! guest: code memory and host-feature detection).
#![no_std]

pub use wasmtime;

/// An architecture the guest runs on, and so one modules are compiled for: the guest is a
/// freestanding unikernel (`*-unknown-none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    X86_64,
    Aarch64,
}

impl Target {
    /// The architecture this crate is built for: the guest's own, or the host's (whose guests
    /// run on the same CPU).
    #[cfg(target_arch = "x86_64")]
    pub const NATIVE: Self = Self::X86_64;
    #[cfg(target_arch = "aarch64")]
    pub const NATIVE: Self = Self::Aarch64;

    /// The target triple Cranelift compiles for.
    pub const fn triple(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-unknown-none",
            Self::Aarch64 => "aarch64-unknown-none",
        }
    }

    /// The architecture's name (`x86_64`, `aarch64`), as `uname -m` and Rust spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    /// The target named `name`: an architecture (`x86_64`, `aarch64`, and the OCI names
    /// `amd64`, `arm64`) or one of the triples above.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "x86_64" | "amd64" | "x86_64-unknown-none" => Some(Self::X86_64),
            "aarch64" | "arm64" | "aarch64-unknown-none" => Some(Self::Aarch64),
            _ => None,
        }
    }

    /// The CPU features a module for this target may be compiled with.
    pub fn features(self) -> &'static [wasmcell_abi::cpu_features::CpuFeature] {
        match self {
            Self::X86_64 => &wasmcell_abi::cpu_features::X86_FEATURES,
            Self::Aarch64 => &wasmcell_abi::cpu_features::AARCH64_FEATURES,
        }
    }
}

/// The target triple this build's guest runs (and modules are compiled for by default).
pub const TARGET: &str = Target::NATIVE.triple();

/// Each linear memory's virtual reservation (host wasmtime's default on 64-bit).
pub const MEMORY_RESERVATION: u64 = 4 << 30;
/// The unmapped region after each reservation (host wasmtime's default).
pub const MEMORY_GUARD: u64 = 32 << 20;

/// Largest native stack wasm may use in the guest; the guest's boot stack is 2 MiB.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// WebAssembly proposals the guest runtime does not support: GC and everything built on it,
/// threads and shared memory, stack switching, relaxed SIMD, and the component model's async and
/// threading extensions (the guest runs core modules and synchronous WASI 0.2 components).
pub const PINNED_OFF: wasmtime::WasmFeatures = wasmtime::WasmFeatures::GC_TYPES
    .union(wasmtime::WasmFeatures::GC)
    .union(wasmtime::WasmFeatures::FUNCTION_REFERENCES)
    .union(wasmtime::WasmFeatures::EXCEPTIONS)
    .union(wasmtime::WasmFeatures::LEGACY_EXCEPTIONS)
    .union(wasmtime::WasmFeatures::THREADS)
    .union(wasmtime::WasmFeatures::SHARED_EVERYTHING_THREADS)
    .union(wasmtime::WasmFeatures::STACK_SWITCHING)
    .union(wasmtime::WasmFeatures::RELAXED_SIMD)
    .union(wasmtime::WasmFeatures::CM_ASYNC)
    .union(wasmtime::WasmFeatures::CM_MORE_ASYNC_BUILTINS)
    .union(wasmtime::WasmFeatures::CM_ASYNC_STACKFUL)
    .union(wasmtime::WasmFeatures::CM_THREADING)
    .union(wasmtime::WasmFeatures::CM_ERROR_CONTEXT)
    .union(wasmtime::WasmFeatures::CM_GC);

/// The shared configuration.
///
/// - Traps by fault, as host wasmtime does: each linear memory has a 4 GiB reservation and a
///   32 MiB guard region after it in the guest's address space, so compiled code needs no
///   bounds checks for 32-bit memories; an out-of-bounds access, a division by zero and
///   `unreachable` fault, and the guest's trap entry hands the fault to wasmtime. No
///   copy-on-write initialisation (the guest cannot remap pages).
/// - Relaxed SIMD off: its fused multiply-add would need AVX state or a float libcall, and the
///   guest has neither.
/// - Every proposal whose default follows a cargo feature of wasmtime is pinned off
///   ([`PINNED_OFF`]): the host build unifies features with whatever else links wasmtime (the
///   differential tests pull in `gc`, `threads` and `component-model-async`), and the guest
///   must not depend on that; so is concurrency support (a component-model tunable).
pub fn config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_features(PINNED_OFF, false)
        .wasm_component_model(true)
        .concurrency_support(false)
        .signals_based_traps(true)
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0)
        .guard_before_linear_memory(false)
        .memory_init_cow(false)
        .max_wasm_stack(MAX_WASM_STACK);
    config
}

/// The host half: what the AOT compiler adds to [`config`].
#[cfg(feature = "host")]
pub mod host {
    extern crate std;

    use super::Target;

    /// Whether this host's CPU has feature `name` (a name from `X86_FEATURES`).
    #[cfg(target_arch = "x86_64")]
    fn detected(name: &str) -> bool {
        match name {
            "cmpxchg16b" => std::is_x86_feature_detected!("cmpxchg16b"),
            "sse3" => std::is_x86_feature_detected!("sse3"),
            "ssse3" => std::is_x86_feature_detected!("ssse3"),
            "sse4.1" => std::is_x86_feature_detected!("sse4.1"),
            "sse4.2" => std::is_x86_feature_detected!("sse4.2"),
            "popcnt" => std::is_x86_feature_detected!("popcnt"),
            "bmi1" => std::is_x86_feature_detected!("bmi1"),
            "bmi2" => std::is_x86_feature_detected!("bmi2"),
            "lzcnt" => std::is_x86_feature_detected!("lzcnt"),
            _ => false,
        }
    }

    /// Whether this host's CPU has feature `name` (a name from `AARCH64_FEATURES`).
    #[cfg(target_arch = "aarch64")]
    fn detected(name: &str) -> bool {
        match name {
            "lse" => std::arch::is_aarch64_feature_detected!("lse"),
            "fp16" => std::arch::is_aarch64_feature_detected!("fp16"),
            _ => false,
        }
    }

    /// The guest-usable features of this host's CPU, as the boot info carries them. Read with
    /// std's user-mode detection, not from KVM: KVM's supported-CPUID list under-reports on
    /// nested KVM although user-mode code can use every one of these.
    pub fn cpu_features() -> u64 {
        Target::NATIVE.features().iter().filter(|f| detected(f.name)).fold(0, |bits, f| bits | f.bit)
    }

    /// [`super::config`] for compiling on the host for a `target` guest with `features`.
    pub fn compiler_config(target: Target, features: u64) -> wasmtime::Result<wasmtime::Config> {
        let mut config = super::config();
        config.target(target.triple())?;
        for feature in target.features().iter().filter(|f| features & f.bit != 0) {
            // SAFETY: the guest is told exactly these features (boot info) and wasmtime checks
            // them against its `detect_host_feature` before running any code compiled with them.
            unsafe { config.cranelift_flag_enable(feature.cranelift_flag) };
        }
        Ok(config)
    }
}
