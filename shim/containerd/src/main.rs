//! The shim binary: containerd's actions (`start`, `delete`, serving), or `__compile` for a
//! compiler process (`wasmcell_aot`). VMM processes are `wasmcell-vmm` (src/bin/vmm.rs).

use wasmcell_shim::{shim::WasmcellShim, RUNTIME_ID};

fn main() {
    // One malloc arena for all threads: glibc gives each thread that allocates an arena of its
    // own, and a pod's shim has a score of mostly idle ttrpc threads — each arena's pages were a
    // few hundred KiB per pod, for no speed this process needs.
    // SAFETY: mallopt only sets a malloc parameter; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    wasmcell_aot::run_if_compile_action();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The `start` and `delete` actions have no children to reap. With the reaper on, a child
    // that exits while the action itself is exiting (a pod's second `start`, whose spawned
    // shim finds the pod's socket and leaves) can wedge containerd-shim 0.11's signal thread in
    // a busy loop: only the serving shim reaps.
    let action = args.last().and_then(|a| a.to_str()).unwrap_or_default();
    let config = containerd_shim::Config { no_reaper: matches!(action, "start" | "delete"), ..Default::default() };
    containerd_shim::run::<WasmcellShim>(RUNTIME_ID, Some(config));
}
