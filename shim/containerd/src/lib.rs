//! `containerd-shim-wasmcell-v1`: runs containerd tasks as Wasm workloads in wasmcell microVMs.
//!
//! Flow: containerd → `start` action (spawns the serving shim, one per container or per
//! Kubernetes pod) → task API over ttrpc ([`service`]) → `create`: config.json, root filesystem
//! mount, module lookup, import check, AOT compile through the cache ([`instance::VmInstance`])
//! → `start`: a VMM in a child process (`wasmcell-vmm PLAN`, [`vmm_child`])
//! with containerd's stdio FIFOs — for a pod, the sandbox's start boots the pod's VM and each
//! container's start runs its workload in it ([`pod`]) → exit → TaskExit event → `delete`:
//! unmount, clean up. The service sees only the [`instance::Instance`] trait; it knows nothing
//! about KVM.

pub mod cgroup;
pub mod instance;
pub mod packer;
pub mod pod;
pub mod process;
pub mod rootfs;
pub mod service;
pub mod shim;
pub mod vmm_child;
pub use wasmcell_bundle::{plan, spec};
pub mod workload;

/// containerd's name for this runtime.
pub const RUNTIME_ID: &str = "io.containerd.wasmcell.v1";

/// The VMM binary (`wasmcell-vmm PLAN`), installed next to the shim.
pub const VMM_BINARY: &str = "wasmcell-vmm";

/// The VMM binary next to this executable.
pub fn vmm_binary() -> std::io::Result<std::path::PathBuf> {
    let vmm = std::env::current_exe()?.with_file_name(VMM_BINARY);
    if !vmm.is_file() {
        let message = format!("{} is missing (wasmcell install puts it next to the shim)", vmm.display());
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, message));
    }
    Ok(vmm)
}
