//! The shim binary: containerd's actions (`start`, `delete`, serving), `vmm PLAN` for a
//! container's VMM process, or `__compile` for a compiler process (`wasmcell_aot`).

use wasmcell_shim::{shim::WasmcellShim, vmm_child, RUNTIME_ID, VMM_ACTION};

fn main() {
    wasmcell_aot::run_if_compile_action();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == VMM_ACTION {
        std::process::exit(vmm_child::run(std::path::Path::new(&args[2])));
    }
    // The `start` and `delete` actions have no children to reap. With the reaper on, a child
    // that exits while the action itself is exiting (a pod's second `start`, whose spawned
    // shim finds the pod's socket and leaves) can wedge containerd-shim 0.11's signal thread in
    // a busy loop: only the serving shim reaps.
    let action = args.last().and_then(|a| a.to_str()).unwrap_or_default();
    let config = containerd_shim::Config { no_reaper: matches!(action, "start" | "delete"), ..Default::default() };
    containerd_shim::run::<WasmcellShim>(RUNTIME_ID, Some(config));
}
