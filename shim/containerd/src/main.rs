//! The shim binary: containerd's actions (`start`, `delete`, serving), or `vmm PLAN` for a
//! container's VMM process.

use wasmcell_shim::{shim::WasmcellShim, vmm_child, RUNTIME_ID, VMM_ACTION};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == VMM_ACTION {
        std::process::exit(vmm_child::run(std::path::Path::new(&args[2])));
    }
    containerd_shim::run::<WasmcellShim>(RUNTIME_ID, None);
}
