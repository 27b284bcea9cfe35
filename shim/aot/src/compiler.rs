//! The compiler itself: a Cranelift engine configured for the guest from the shared
//! configuration (`wasmcell-engine`), and how artifacts are recognised and keyed.

use crate::{private_fs, process, AotError, CompileLimits, CompilerProcess};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use wasmcell_engine::wasmtime::{Engine, Precompiled};
use wasmcell_engine::Target;

/// A Cranelift engine configured for the guest, and the target and CPU features it compiles
/// for.
pub struct Compiler {
    engine: Engine,
    target: Target,
    cpu_features: u64,
}

impl Compiler {
    /// A compiler for this host's CPU (its guests run on it).
    pub fn for_host() -> Result<Self, AotError> {
        Self::with_cpu_features(wasmcell_engine::host::cpu_features())
    }

    /// A compiler for a guest on this host's architecture told `cpu_features`
    /// (`wasmcell_abi::cpu_features` bits).
    pub fn with_cpu_features(cpu_features: u64) -> Result<Self, AotError> {
        Self::for_target(Target::NATIVE, cpu_features)
    }

    /// A compiler for a `target` guest told `cpu_features`: another architecture's nodes
    /// (`wasmcell compile --target`).
    pub fn for_target(target: Target, cpu_features: u64) -> Result<Self, AotError> {
        let config =
            wasmcell_engine::host::compiler_config(target, cpu_features).map_err(|e| AotError::Engine(e.into()))?;
        let engine = Engine::new(&config).map_err(|e| AotError::Engine(e.into()))?;
        Ok(Self { engine, target, cpu_features })
    }

    /// The architecture artifacts are compiled for.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The target and CPU features, as a compiler process is asked for them.
    pub(crate) fn target_and_features(&self) -> (Target, u64) {
        (self.target, self.cpu_features)
    }

    /// The CPU features artifacts are compiled for; the guest must be told the same.
    pub fn cpu_features(&self) -> u64 {
        self.cpu_features
    }

    /// Compiles a `.wasm` (binary) or `.wat` (text) module or component in this process,
    /// without limits: for input this process trusts (and inside the compiler process). Input
    /// from elsewhere goes through [`Cache::get_or_compile`] or [`Compiler::compile_isolated`].
    pub fn compile(&self, module: &[u8]) -> Result<Vec<u8>, AotError> {
        let binary = wat::parse_bytes(module).map_err(|e| AotError::Compile(e.into()))?;
        let compiled = if wasmparser::Parser::is_component(&binary) {
            self.engine.precompile_component(&binary)
        } else {
            self.engine.precompile_module(&binary)
        };
        compiled.map_err(|e| AotError::Compile(e.into()))
    }

    /// Compiles `module` in a compiler process of this executable, within `limits`.
    pub fn compile_isolated(&self, module: &[u8], limits: CompileLimits) -> Result<Vec<u8>, AotError> {
        let dir = std::env::temp_dir();
        let (path, mut file) = private_fs::create_temp(&dir).map_err(AotError::Process)?;
        let result = (|| {
            let process = CompilerProcess::this_executable().map_err(AotError::Process)?;
            process::compile(&process, self.target_and_features(), module, &path, limits)?;
            let mut artifact = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut artifact).map_err(AotError::Process)?;
            Ok(artifact)
        })();
        let _ = std::fs::remove_file(&path);
        result
    }

    /// What an artifact's compatibility depends on besides the module: wasmtime's own
    /// compatibility hash (version, settings, ISA flags), the target and the feature bits.
    pub fn compatibility_key(&self) -> [u8; 32] {
        let mut hasher = Sha256Hasher(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(self.target.triple().as_bytes());
        hasher.0.update(self.cpu_features.to_le_bytes());
        hasher.0.finalize().into()
    }
}

/// The architecture an artifact's native code is for (its ELF machine), if it is one of ours.
pub fn precompiled_target(bytes: &[u8]) -> Option<Target> {
    match bytes.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]])) {
        Some(62) => Some(Target::X86_64),
        Some(183) => Some(Target::Aarch64),
        _ => None,
    }
}

/// Whether `bytes` are already an artifact (a `.cwasm`, of a module or a component) rather than
/// Wasm to compile.
pub fn is_precompiled(bytes: &[u8]) -> bool {
    matches!(Engine::detect_precompiled(bytes), Some(Precompiled::Module | Precompiled::Component))
}

/// Feeds `Hash` input into SHA-256, so that the cache key is stable across processes and Rust
/// versions (unlike `DefaultHasher`).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 state is read")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;

    #[test]
    fn wat_and_wasm_compile_to_the_same_artifact() {
        let compiler = Compiler::for_host().unwrap();
        let from_wat = compiler.compile(ANSWER.as_bytes()).unwrap();
        // The same module, assembled by hand.
        let wasm = b"\0asm\x01\0\0\0\x01\x05\x01\x60\0\x01\x7f\x03\x02\x01\0\x07\x0a\x01\x06answer\0\0\x0a\x06\x01\x04\0\x41\x2a\x0b";
        assert_eq!(compiler.compile(wasm).unwrap(), from_wat);
        assert!(is_precompiled(&from_wat));
        assert!(!is_precompiled(wasm));
    }

    #[test]
    fn artifacts_name_the_architecture_they_were_compiled_for() {
        for target in [Target::X86_64, Target::Aarch64] {
            let artifact = Compiler::for_target(target, 0).unwrap().compile(b"(module)").unwrap();
            assert!(is_precompiled(&artifact));
            assert_eq!(precompiled_target(&artifact), Some(target));
        }
        assert_eq!(precompiled_target(b"\0asm"), None);
    }

    #[test]
    fn invalid_modules_are_refused() {
        let compiler = Compiler::for_host().unwrap();
        for bad in [&b"not wasm at all"[..], b"\0asm\x01\0\0\0\x01", b"(module (func (result i32)))"] {
            assert!(matches!(compiler.compile(bad), Err(AotError::Compile(_))), "{bad:?}");
        }
    }

    #[test]
    fn compatibility_key_depends_on_features() {
        let a = Compiler::with_cpu_features(0).unwrap();
        let sse41 = wasmcell_abi::cpu_features::X86_FEATURES.iter().find(|f| f.name == "sse4.1").unwrap().bit;
        let b = Compiler::with_cpu_features(sse41).unwrap();
        assert_eq!(a.compatibility_key(), Compiler::with_cpu_features(0).unwrap().compatibility_key());
        assert_ne!(a.compatibility_key(), b.compatibility_key());
    }
}
