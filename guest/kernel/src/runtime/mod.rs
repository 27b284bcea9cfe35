//! The guest runtime: wasmtime with the module or component the host compiled, WASI, and its
//! entry point.
//!
//! Flow: engine from the shared configuration (`wasmcell-engine`) plus this platform's code
//! memory and CPU features → the artifact's kind → `Module::deserialize_raw` or
//! `Component::deserialize_raw` on the payload where the VMM placed it (read + execute, never
//! copied) → link WASI (preview 1 for a module, 0.2 for a component) → instantiate → boot-done
//! marker → `_start` or `wasi:cli/run` → the exit code. A trap or a workload that cannot start
//! is reported to the VMM with its message. A workload with a serve address (`wasmcell serve`)
//! binds it before the marker and then serves its component's `wasi:http/incoming-handler`
//! (`crate::serve`) until the VM is stopped.

mod memory;
mod platform;

use crate::component::{self, http::Proxy, ComponentCtx};
use crate::control;
use crate::serve::{self, Listener};
use crate::wasi::{self, WasiCtx, WasiExit};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;
use wasmcell_abi::archive::Archive;
use wasmcell_abi::vcpu::VcpuInfo;
use wasmcell_abi::workload::Workload;
use wasmtime::{Engine, Linker, Module, Precompiled, Store, Trap};

/// The exit status `wasmtime run` gives a trapping module on Unix (128 + SIGABRT).
pub const TRAP_EXIT_CODE: u32 = 134;

/// How a workload ended, once everything wasmtime held for it is gone.
enum Ended {
    Exit(u32),
    Trap(String),
    /// A host function refused to go on (e.g. an empty `poll` list, a bad resource handle):
    /// not a trap, so, as in `wasmtime run`, `Error: …` on stderr and status 1.
    Failed(String),
    CannotStart(String),
}

/// Whether this address space runs a workload (set before anything of it is loaded).
static RUNNING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether a workload runs in this address space: its failures are its own, not the kernel's.
pub fn running() -> bool {
    RUNNING.load(core::sync::atomic::Ordering::Relaxed)
}

/// Runs the workload this vCPU's info describes and reports how it ended on the control device.
/// Nothing is torn down first: everything the workload used (its engine, store and module, and
/// this address space's copy of the kernel's data, wasmtime's code registry included) lives in
/// its window, which the VMM removes when the vCPU stops.
pub fn run(info: &VcpuInfo) -> ! {
    RUNNING.store(true, core::sync::atomic::Ordering::Relaxed);
    match execute(info) {
        Ended::Exit(code) => control::exit(code),
        Ended::Trap(message) => control::report_trap(&message),
        Ended::Failed(_) => control::exit(1),
        Ended::CannotStart(message) => control::report_workload_error(&message),
    }
}

fn execute(info: &VcpuInfo) -> Ended {
    let ready = match prepare(info) {
        Ok(ready) => ready,
        Err(message) => return Ended::CannotStart(message),
    };
    control::boot_done();
    match ready {
        Ready::Module(mut store, start) => {
            let ended = ended(start.call(&mut store, ()).map(|()| 0));
            finish(store.data_mut(), &ended);
            // The store holds the instance, module and engine: freeing them would only cost time.
            core::mem::forget(store);
            ended
        }
        Ready::Component(mut store, command) => {
            // `run` returning its error result ends the program with status 1, as in `wasmtime run`.
            let ended = ended(command.wasi_cli_run().call_run(&mut store).map(|ok| if ok.is_ok() { 0 } else { 1 }));
            finish(&mut store.data_mut().wasi, &ended);
            core::mem::forget(store);
            ended
        }
        Ready::Serve(proxy, mut ctx, listener) => {
            ctx.wasi.write_stderr(format!("Serving HTTP on http://{}/\n", listener.local).as_bytes());
            Ended::CannotStart(serve::serve(&proxy, *ctx, listener))
        }
    }
}

/// How the entry point's result ends the workload.
fn ended(result: wasmtime::Result<u32>) -> Ended {
    match result {
        Ok(status) => Ended::Exit(status),
        Err(error) => match error.downcast_ref::<WasiExit>() {
            // As on a Unix host: only the low 8 bits of the status survive.
            Some(exit) => Ended::Exit(exit.0 & 0xff),
            None if error.is::<Trap>() => Ended::Trap(format!("{error:?}")),
            None => Ended::Failed(format!("{error:?}")),
        },
    }
}

/// Says why a workload failed on its stderr, then sends queued output before the end is
/// reported (the VMM stops the vCPU at once).
fn finish(wasi: &mut WasiCtx, ended: &Ended) {
    if let Ended::Failed(message) = ended {
        wasi.write_stderr(format!("Error: {message}\n").as_bytes());
    }
    let _ = wasi.flush_output();
}

/// A workload instantiated and ready to enter.
enum Ready {
    Module(Store<WasiCtx>, wasmtime::TypedFunc<(), ()>),
    Component(Store<ComponentCtx>, component::Command),
    /// A component to instantiate for each request on the listener.
    Serve(Proxy, Box<ComponentCtx>, Listener),
}

/// Everything up to calling the entry point; an error is a message for the user.
fn prepare(info: &VcpuInfo) -> Result<Ready, String> {
    let engine = platform::engine(info).map_err(|e| format!("cannot configure wasmtime: {e:#}"))?;
    let payload = platform::payload(info).ok_or("the VMM passed no module")?;
    let workload = platform::workload(info).and_then(Workload::parse).ok_or("the VMM passed no valid workload")?;
    let files = match platform::files(info) {
        Some(bytes) => Some(Archive::parse(bytes).ok_or("the VMM passed a damaged file archive")?),
        None => None,
    };
    let component = Engine::detect_precompiled(payload) == Some(Precompiled::Component);
    if component && workload.listen().next().is_some() {
        return Err(String::from("a component cannot be given preopened TCP listeners: it opens its own"));
    }
    let wasi = WasiCtx::new(&workload, files, info)?;
    match component {
        true => prepare_component(&engine, payload, wasi, workload.serve()),
        false if workload.serve().is_some() => Err(String::from("only a component can be served, not a module")),
        false => prepare_module(&engine, payload, wasi),
    }
}

fn prepare_module(engine: &Engine, payload: &'static [u8], wasi: WasiCtx) -> Result<Ready, String> {
    // SAFETY: the payload is the VMM's copy of a host-compiled artifact, mapped read + execute
    // for the guest's whole life and never written by anyone after boot, as `deserialize_raw`
    // requires; wasmtime checks it was compiled by the same engine configuration.
    let module = unsafe { Module::deserialize_raw(engine, NonNull::from(payload)) }
        .map_err(|e| format!("cannot load the module: {e:#}"))?;
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker, &module).map_err(|e| format!("cannot link WASI: {e:#}"))?;
    let mut store = Store::new(engine, wasi);
    let instance = linker.instantiate(&mut store, &module).map_err(|e| format!("{e:#}"))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|_| String::from("the module has no `_start` function of type () -> ()"))?;
    Ok(Ready::Module(store, start))
}

fn prepare_component(
    engine: &Engine,
    payload: &'static [u8],
    wasi: WasiCtx,
    serve: Option<&[u8]>,
) -> Result<Ready, String> {
    // SAFETY: as for a module: the VMM's read + execute copy of a host-compiled artifact, never
    // written after boot, checked by wasmtime against this engine's configuration.
    let component = unsafe { wasmtime::component::Component::deserialize_raw(engine, NonNull::from(payload)) }
        .map_err(|e| format!("cannot load the component: {e:#}"))?;
    let mut linker = wasmtime::component::Linker::new(engine);
    if let Some(address) = serve {
        let proxy = Proxy::new(&mut linker, &component)?;
        let listener = Listener::bind(address)?;
        return Ok(Ready::Serve(proxy, Box::new(ComponentCtx::new(wasi)), listener));
    }
    component::link(&mut linker, &component)?;
    let mut store = Store::new(engine, ComponentCtx::new(wasi));
    let instance = linker.instantiate(&mut store, &component).map_err(|e| format!("{e:#}"))?;
    let command = component::Command::new(&mut store, &instance)
        .map_err(|_| String::from("the component is not a command: it exports no `wasi:cli/run`"))?;
    Ok(Ready::Component(store, command))
}
