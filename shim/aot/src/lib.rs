//! Ahead-of-time compilation on the host: a `.wasm` or `.wat` module or component becomes an
//! artifact the guest's wasmtime loads in place, compiled by Cranelift for `x86_64-unknown-none` with this
//! host's CPU features, from the engine configuration the guest shares (`wasmcell-engine`).
//!
//! In the flow: `wasmcell run` / the shim → **AOT (cached)** → VMM → guest → wasmtime. This crate
//! knows nothing about KVM.
//!
//! Modules come from tenants: Cranelift runs on them only in a compiler process with time and
//! memory limits ([`child`], [`process`]), the cache is private and bounded ([`cache`]), and
//! precompiled input is never taken for a module ([`check_imports`]). The limits are the
//! operator's ([`limits`]).

#[cfg(feature = "compiler")]
mod cache;
#[cfg(feature = "compiler")]
mod child;
#[cfg(feature = "compiler")]
mod compiler;
mod imports;
#[cfg(feature = "compiler")]
pub mod limits;
#[cfg(feature = "compiler")]
mod private_fs;
#[cfg(feature = "compiler")]
mod process;

#[cfg(feature = "compiler")]
pub use cache::{Cache, CacheError, Compiled, Pin};
#[cfg(feature = "compiler")]
pub use child::{run_if_compile_action, COMPILE_ACTION};
#[cfg(feature = "compiler")]
pub use compiler::{is_precompiled, precompiled_target, Compiler};
pub use imports::{check_entry, check_imports, Entry};
#[cfg(feature = "compiler")]
pub use limits::{CompileLimits, Limits};
#[cfg(feature = "compiler")]
pub use private_fs::PrivateDirError;
#[cfg(feature = "compiler")]
pub use process::CompilerProcess;
#[cfg(feature = "compiler")]
pub use wasmcell_engine::Target;

/// Errors while compiling.
#[derive(Debug, thiserror::Error)]
pub enum AotError {
    /// The engine could not be configured for the guest target.
    #[error("Cannot configure the compiler for the guest")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The module is invalid (not Wasm, truncated, a `.wat` syntax error, an unsupported feature).
    #[error("Cannot compile the module")]
    Compile(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The module imports something the guest does not link.
    #[error("Unknown import `{0}`: the guest offers only WASI preview 1 functions")]
    UnknownImport(String),
    /// The component imports something the guest does not link.
    #[error("Unknown import `{0}`: the guest offers only the interfaces of WASI 0.2's command and proxy worlds")]
    UnknownComponentImport(String),
    /// The component has no entry point.
    #[error("The component is not a command: it exports no `wasi:cli/run`")]
    NotCommand,
    /// The component cannot be served: no HTTP handler.
    #[error("The component cannot be served: it exports no `wasi:http/incoming-handler`")]
    NotProxy,
    /// A core module cannot be served.
    #[error("Only a component can be served: a core module has no `wasi:http/incoming-handler`")]
    ModuleNotServable,
    /// Preopened listeners are preview 1's; a component opens its own sockets.
    #[error("A component cannot be given preopened TCP listeners: it opens its own with `wasi:sockets`")]
    ComponentWithListeners,
    /// Write-through volumes are served to preview-1 modules only, so far.
    #[error(
        "A component cannot be given --volume yet: only preview-1 modules reach write-through volumes (use --dir)"
    )]
    ComponentWithVolumes,
    /// Native code where a module was expected.
    #[error("The module is a precompiled artifact (native code), not WebAssembly")]
    Precompiled,
    /// The compiler process ran past its time limit.
    #[error("Compiling the module took longer than {0}")]
    TimeLimit(String),
    /// The compiler process ran out of its address space.
    #[error("Compiling the module needed more than {0}")]
    MemoryLimit(String),
    /// The compiler process could not be started or watched.
    #[error("Cannot run the compiler process")]
    Process(#[source] std::io::Error),
    /// The compiler process died without saying why (its last words).
    #[error("The compiler process failed: {0}")]
    ProcessFailed(String),
}
