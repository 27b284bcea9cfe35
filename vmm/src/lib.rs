//! The wasmcell VMM: boots the wasmcell guest unikernel in a KVM microVM and reports how it ended.
//!
//! The flow reads top to bottom, as in rust-vmm's vmm-reference:
//! [`VmConfig`] (what the user asked for) → [`Vm::try_from`] (validate, create the KVM VM and
//! base RAM, load the guest ELF, build the guest's address space and boot info) → either
//! [`Vm::run`] (one vCPU in 64-bit CPL 3 on its own thread, with its workload's window, this
//! thread as the event loop, until the guest exits, panics, faults, times out or is killed) →
//! [`RunReport`]; or, for a pod, [`Vm::boot`] (the kernel comes up and waits) and
//! [`Vm::start`] per workload (a window and a vCPU of its own each) → [`VcpuRun::join`].
//!
//! The VMM knows nothing about containerd or OCI; the only contract with the guest is the
//! `wasmcell-abi` crate. Everything the guest writes is treated as hostile: guest memory is only
//! touched through vm-memory's bounds-checked accessors.

mod arch;
mod artifact;
mod boot_info;
mod config;
#[cfg(feature = "fuzzing")]
pub mod devices;
#[cfg(not(feature = "fuzzing"))]
mod devices;
mod drain_timer;
mod files;
mod guest_image;
mod layout;
mod loader;
#[cfg(feature = "fuzzing")]
pub mod memory;
#[cfg(not(feature = "fuzzing"))]
mod memory;
mod outcome;
mod run;
pub mod signals;
#[cfg(test)]
mod test_utils;
mod vcpu;
mod vm;
mod window;

pub use artifact::Artifact;
pub use config::{ConfigError, GuestImage, MemorySize, VmConfig, Workload};
pub use devices::file::{HostVolume, VolumeError};
pub use devices::socket::{Network, Outgoing, Resolver};
pub use devices::virtio::console::{Input, Output};
pub use files::{pack as pack_files, FilesError, Preopen};
pub use guest_image::EMBEDDED_GUEST;
pub use layout::LayoutError;
pub use loader::LoadError;
pub use outcome::{Outcome, RunReport};
pub use run::{Stopper, VcpuRun};
pub use vm::{Error, Vm, VmHandle};
pub use wasmcell_jail::{jail, seccomp};
pub use window::PrepareError;
