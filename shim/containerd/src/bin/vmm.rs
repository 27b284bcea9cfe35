//! `wasmcell-vmm PLAN`: a VMM process, spawned by the shim for a container or a pod
//! ([`wasmcell_shim::vmm_child`]). A binary of its own rather than an action of the shim's: it
//! links neither containerd's client nor the task service nor Cranelift, so each pod's VMM maps
//! and relocates a fraction of the shim's code and data (its relocated read-only data is private
//! to every process that loads it).

fn main() {
    // One malloc arena: the VMM's threads are few and mostly asleep.
    // SAFETY: mallopt only sets a malloc parameter; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() != 2 {
        eprintln!("usage: {} PLAN (spawned by containerd-shim-wasmcell-v1)", wasmcell_shim::VMM_BINARY);
        std::process::exit(2);
    }
    std::process::exit(wasmcell_shim::vmm_child::run(std::path::Path::new(&args[1])));
}
