//! `wasmcell-vmm`: the processes the shim runs for what faces a tenant. A binary of its own
//! rather than an action of the shim's: it links neither containerd's client nor the task
//! service nor Cranelift, so each pod's VMM maps and relocates a fraction of the shim's code and
//! data (its relocated read-only data is private to every process that loads it).
//!
//! - `wasmcell-vmm PLAN`: a container's or a pod's VMM ([`wasmcell_shim::vmm_child`]).
//! - `wasmcell-vmm pack ROOTFS BUDGET [GUEST SOURCE]…`: packs a container's root filesystem
//!   and read-only volumes into the archive the guest reads, on stdout ([`wasmcell_shim::packer`]).

fn main() {
    // One malloc arena: the VMM's threads are few and mostly asleep.
    // SAFETY: mallopt only sets a malloc parameter; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let status = match args.as_slice() {
        [_, plan] => wasmcell_shim::vmm_child::run(std::path::Path::new(plan)),
        [_, pack, rootfs, budget, volumes @ ..] if pack == "pack" => {
            wasmcell_shim::packer::child(std::path::Path::new(rootfs), budget, volumes)
        }
        _ => {
            eprintln!(
                "usage: {} PLAN | pack ROOTFS BUDGET [GUEST SOURCE]... (run by containerd-shim-wasmcell-v1)",
                wasmcell_shim::VMM_BINARY
            );
            2
        }
    };
    std::process::exit(status);
}
