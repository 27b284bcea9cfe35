//! What a module imports, checked before any VM exists: the guest links only WASI preview 1
//! (`wasmcell_abi::wasi`), so any other import would fail inside the VM, later and more
//! expensively. The error names the first import the guest cannot satisfy.

use crate::AotError;
use std::borrow::Cow;
use wasmparser::{Parser, Payload, TypeRef};

/// Checks that every function `module` (`.wasm` or `.wat`) imports is one the guest links, and
/// that it imports nothing else (memories, tables, globals). Native code is refused: a
/// precompiled artifact (wasmtime's are ELF images) or any other executable, which nothing here
/// can check (callers that run artifacts they trust, as `wasmcell run --allow-precompiled`, do
/// not ask).
pub fn check_imports(module: &[u8]) -> Result<(), AotError> {
    if module.starts_with(b"\x7fELF") {
        return Err(AotError::Precompiled);
    }
    let binary: Cow<'_, [u8]> = if module.starts_with(b"\0asm") {
        Cow::Borrowed(module)
    } else {
        Cow::Owned(wat::parse_bytes(module).map_err(|e| AotError::Compile(e.into()))?.into_owned())
    };
    for payload in Parser::new(0).parse_all(&binary) {
        let Payload::ImportSection(imports) = payload.map_err(|e| AotError::Compile(e.into()))? else {
            continue;
        };
        for import in imports.into_imports() {
            let import = import.map_err(|e| AotError::Compile(e.into()))?;
            let linked =
                matches!(import.ty, TypeRef::Func(_)) && wasmcell_abi::wasi::is_linked(import.module, import.name);
            if !linked {
                return Err(AotError::UnknownImport(format!("{}::{}", import.module, import.name)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_imports_pass_and_others_are_named() {
        let wasi =
            br#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#;
        assert!(check_imports(wasi).is_ok());
        assert!(check_imports(b"(module)").is_ok());
        let env = br#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))) (import "env" "launch_missiles" (func)))"#;
        let err = check_imports(env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unknown import `env::launch_missiles`: the guest offers only WASI preview 1 functions"
        );
        let memory = br#"(module (import "wasi_snapshot_preview1" "memory" (memory 1)))"#;
        assert!(check_imports(memory).is_err(), "only functions are linked");
        assert!(check_imports(b"\0asm\x01\0\0\0\x02\x05").is_err(), "truncated import section");
    }

    #[test]
    #[cfg(feature = "compiler")]
    fn precompiled_artifacts_are_refused_not_waved_through() {
        let artifact = crate::Compiler::for_host().unwrap().compile(b"(module)").unwrap();
        let err = check_imports(&artifact).unwrap_err();
        assert!(matches!(err, AotError::Precompiled), "{err:?}");
        assert_eq!(err.to_string(), "The module is a precompiled artifact (native code), not WebAssembly");
    }
}
