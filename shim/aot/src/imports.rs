//! What a module or component imports, checked before any VM exists: the guest links only WASI
//! preview 1 for modules and WASI 0.2's command world for components (`wasmcell_abi::wasi`), so
//! any other import would fail inside the VM, later and more expensively. The error names the
//! first import the guest cannot satisfy. A component must also export what it is entered by:
//! `wasi:cli/run` to be run, `wasi:http/incoming-handler` to be served ([`Entry`]).

use crate::AotError;
use std::borrow::Cow;
use wasmparser::{ComponentExternalKind, Parser, Payload, TypeRef};

/// Checks that every function `module` (`.wasm` or `.wat`) imports is one the guest links, and
/// that it imports nothing else (memories, tables, globals). Native code is refused: a
/// precompiled artifact (wasmtime's are ELF images) or any other executable, which nothing here
/// can check (callers that run artifacts they trust, as `wasmcell run --allow-precompiled`, do
/// not ask).
pub fn check_imports(module: &[u8]) -> Result<(), AotError> {
    check_entry(module, Entry::Run)
}

/// How a workload is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `_start` or `wasi:cli/run` (`wasmcell run`, containers).
    Run,
    /// `wasi:http/incoming-handler` (`wasmcell serve`): components only.
    Serve,
    /// `_start`, with preopened TCP listeners (`wasmcell run --tcplisten`): modules only, as
    /// in wasmtime, since preview 1 alone has `sock_accept` on a descriptor it was given.
    RunWithListeners,
    /// `_start`, with write-through volumes (`wasmcell run --volume`): modules only for now,
    /// since only preview 1 reaches the file device.
    RunWithVolumes,
}

/// [`check_imports`], for a workload entered by `entry`.
pub fn check_entry(module: &[u8], entry: Entry) -> Result<(), AotError> {
    if module.starts_with(b"\x7fELF") {
        return Err(AotError::Precompiled);
    }
    let binary: Cow<'_, [u8]> = if module.starts_with(b"\0asm") {
        Cow::Borrowed(module)
    } else {
        Cow::Owned(wat::parse_bytes(module).map_err(|e| AotError::Compile(e.into()))?.into_owned())
    };
    if Parser::is_component(&binary) {
        if entry == Entry::RunWithListeners {
            return Err(AotError::ComponentWithListeners);
        }
        if entry == Entry::RunWithVolumes {
            return Err(AotError::ComponentWithVolumes);
        }
        return check_component(&binary, entry);
    }
    if entry == Entry::Serve {
        return Err(AotError::ModuleNotServable);
    }
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

/// A component's own imports (not those of the modules and components nested in it, which it
/// satisfies itself) must be WASI 0.2 interfaces, and it must export its entry.
fn check_component(binary: &[u8], entry: Entry) -> Result<(), AotError> {
    let mut depth = 0usize;
    let mut runs = false;
    let mut serves = false;
    for payload in Parser::new(0).parse_all(binary) {
        match payload.map_err(|e| AotError::Compile(e.into()))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 0 => {
                for import in imports {
                    let name = import.map_err(|e| AotError::Compile(e.into()))?.name.name;
                    if wasmcell_abi::wasi::offered_interface(name).is_none() {
                        return Err(AotError::UnknownComponentImport(name.to_string()));
                    }
                }
            }
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let export = export.map_err(|e| AotError::Compile(e.into()))?;
                    let instance = export.kind == ComponentExternalKind::Instance;
                    runs |= instance && wasmcell_abi::wasi::is_run_export(export.name.name);
                    serves |= instance && wasmcell_abi::wasi::is_http_handler_export(export.name.name);
                }
            }
            _ => {}
        }
    }
    match entry {
        Entry::Run if !runs => Err(AotError::NotCommand),
        Entry::Serve if !serves => Err(AotError::NotProxy),
        _ => Ok(()),
    }
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

    /// A command component importing `imports` (instance imports with no functions: enough
    /// for the check, which reads names).
    fn component(imports: &[&str], run: bool) -> Vec<u8> {
        let mut text = String::from("(component\n");
        for (i, name) in imports.iter().enumerate() {
            text += &format!("(import \"{name}\" (instance $i{i}))\n");
        }
        if run {
            text += "(core module $m (func (export \"run\") (result i32) i32.const 0))\n";
            text += "(core instance $mi (instantiate $m))\n";
            text += "(func $run (result (result)) (canon lift (core func $mi \"run\")))\n";
            text += "(instance $run_instance (export \"run\" (func $run)))\n";
            text += "(export \"wasi:cli/run@0.2.3\" (instance $run_instance))\n";
        }
        text += ")";
        wat::parse_str(&text).unwrap()
    }

    #[test]
    fn components_import_only_the_command_world_and_export_run() {
        assert!(check_imports(&component(&["wasi:cli/environment@0.2.3", "wasi:io/streams@0.2.0"], true)).is_ok());
        let err =
            check_imports(&component(&["wasi:cli/environment@0.2.3", "wasi:keyvalue/store@0.2.0"], true)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unknown import `wasi:keyvalue/store@0.2.0`: the guest offers only the interfaces of WASI 0.2's command and proxy worlds"
        );
        assert!(check_imports(&component(&["wasi:http/types@0.2.3", "wasi:http/outgoing-handler@0.2.0"], true)).is_ok());
        let err = check_entry(&component(&["wasi:http/types@0.2.3"], true), Entry::Serve).unwrap_err();
        assert_eq!(err.to_string(), "The component cannot be served: it exports no `wasi:http/incoming-handler`");
        let err = check_entry(b"(module)", Entry::Serve).unwrap_err();
        assert!(matches!(err, AotError::ModuleNotServable), "{err:?}");
        assert!(check_entry(b"(module)", Entry::RunWithListeners).is_ok());
        let err = check_entry(&component(&[], true), Entry::RunWithListeners).unwrap_err();
        assert!(matches!(err, AotError::ComponentWithListeners), "{err:?}");
        assert!(check_entry(b"(module)", Entry::RunWithVolumes).is_ok());
        let err = check_entry(&component(&[], true), Entry::RunWithVolumes).unwrap_err();
        assert!(matches!(err, AotError::ComponentWithVolumes), "{err:?}");
        let err = check_imports(&component(&["wasi:cli/environment@0.2.3"], false)).unwrap_err();
        assert_eq!(err.to_string(), "The component is not a command: it exports no `wasi:cli/run`");
        // The imports of a nested core module are the component's business, not the guest's.
        let nested = wat::parse_str(
            r#"(component (core module (import "env" "anything" (func)))
                 (core module $m (func (export "run") (result i32) i32.const 0))
                 (core instance $mi (instantiate $m))
                 (func $run (result (result)) (canon lift (core func $mi "run")))
                 (instance $r (export "run" (func $run)))
                 (export "wasi:cli/run@0.2.0" (instance $r)))"#,
        )
        .unwrap();
        assert!(check_imports(&nested).is_ok());
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
