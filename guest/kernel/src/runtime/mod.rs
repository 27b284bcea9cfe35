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
use wasmcell_abi::vcpu::VcpuInfo;
use wasmcell_abi::workload::Workload;
use wasmtime::{Linker, Module, Store, Trap};

/// The exit status `wasmtime run` gives a trapping module on Unix (128 + SIGABRT).
pub const TRAP_EXIT_CODE: u32 = 134;

/// How a workload ended, once everything wasmtime held for it is gone.
enum Ended {
    Exit(u32),
    Trap(String),
    CannotStart(String),
}

/// Runs the workload this vCPU's info describes and reports how it ended on the control device.
/// Nothing is torn down first: everything the workload used (its engine, store and module, and
/// this address space's copy of the kernel's data, wasmtime's code registry included) lives in
/// its window, which the VMM removes when the vCPU stops.
pub fn run(info: &VcpuInfo) -> ! {
    match execute(info) {
        Ended::Exit(code) => control::exit(code),
        Ended::Trap(message) => control::report_trap(&message),
        Ended::CannotStart(message) => control::report_workload_error(&message),
    }
}

fn execute(info: &VcpuInfo) -> Ended {
    let (mut store, start) = match prepare(info) {
        Ok(ready) => ready,
        Err(message) => return Ended::CannotStart(message),
    };
    control::boot_done();
    let ended = match start.call(&mut store, ()) {
        Ok(()) => Ended::Exit(0),
        Err(error) => match error.downcast_ref::<WasiExit>() {
            // As on a Unix host: only the low 8 bits of the status survive.
            Some(exit) => Ended::Exit(exit.0 & 0xff),
            None if error.is::<Trap>() => Ended::Trap(format!("{error:?}")),
            None => Ended::Trap(format!("{error:#}")),
        },
    };
    // Queued output goes out before the end is reported (the VMM stops the vCPU at once).
    let _ = store.data_mut().flush_output();
    // The store holds the instance, module and engine: freeing them would only cost time.
    core::mem::forget(store);
    ended
}

/// Everything up to calling `_start`; an error is a message for the user.
fn prepare(info: &VcpuInfo) -> Result<(Store<WasiCtx>, wasmtime::TypedFunc<(), ()>), String> {
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
