//! The guest runtime: wasmtime with the module the host compiled, WASI, `_start`.
//!
//! Flow: engine from the shared configuration (`wasmcell-engine`) plus this platform's code
//! memory and CPU features → `Module::deserialize_raw` on the payload where the VMM placed it
//! (read + execute, never copied) → link WASI → instantiate → boot-done marker → `_start` → the
//! exit code. A trap or a module that cannot start is reported to the VMM with its message.

mod memory;
mod platform;

use crate::control;
use crate::wasi::{self, WasiCtx, WasiExit};
use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;
use wasmcell_abi::archive::Archive;
use wasmcell_abi::workload::Workload;
use wasmcell_abi::BootInfo;
use wasmtime::{Linker, Module, Store, Trap};

/// The exit status `wasmtime run` gives a trapping module on Unix (128 + SIGABRT).
pub const TRAP_EXIT_CODE: u32 = 134;

/// Runs the workload the boot info describes; returns the exit code for the control device.
pub fn run(info: &BootInfo) -> u32 {
    let (mut store, start) = match prepare(info) {
        Ok(ready) => ready,
        Err(message) => control::report_workload_error(&message),
    };
    control::boot_done();
    match start.call(&mut store, ()) {
        Ok(()) => 0,
        Err(error) => {
            if let Some(exit) = error.downcast_ref::<WasiExit>() {
                // As on a Unix host: only the low 8 bits of the status survive.
                return exit.0 & 0xff;
            }
            let message = if error.is::<Trap>() { format!("{error:?}") } else { format!("{error:#}") };
            control::report_trap(&message)
        }
    }
}

/// Everything up to calling `_start`; an error is a message for the user.
fn prepare(info: &BootInfo) -> Result<(Store<WasiCtx>, wasmtime::TypedFunc<(), ()>), String> {
    let engine = platform::engine(info).map_err(|e| format!("cannot configure wasmtime: {e:#}"))?;
    let payload = platform::payload(info).ok_or("the VMM passed no module")?;
    // SAFETY: the payload is the VMM's copy of a host-compiled artifact, mapped read + execute
    // for the guest's whole life and never written by anyone after boot, as `deserialize_raw`
    // requires; wasmtime checks it was compiled by the same engine configuration.
    let module = unsafe { Module::deserialize_raw(&engine, NonNull::from(payload)) }
        .map_err(|e| format!("cannot load the module: {e:#}"))?;
    let workload = platform::workload(info).and_then(Workload::parse).ok_or("the VMM passed no valid workload")?;
    let mut linker = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, &module).map_err(|e| format!("cannot link WASI: {e:#}"))?;
    let files = match platform::files(info) {
        Some(bytes) => Some(Archive::parse(bytes).ok_or("the VMM passed a damaged file archive")?),
        None => None,
    };
    let mut store = Store::new(&engine, WasiCtx::new(&workload, files, info));
    let instance = linker.instantiate(&mut store, &module).map_err(|e| format!("{e:#}"))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|_| String::from("the module has no `_start` function of type () -> ()"))?;
    Ok((store, start))
}
