//! The wasmcell VMM: boots the wasmcell guest unikernel in a KVM microVM and reports how it ended.
//!
//! The flow reads top to bottom, as in rust-vmm's vmm-reference:
//! [`VmConfig`] (what the user asked for) → [`Vm::try_from`] (validate, create the KVM VM and
//! guest memory, load the guest ELF, build the guest's address space and boot info, create the
//! devices and the vCPU in 64-bit CPL 3) → [`Vm::run`] (one vCPU thread, this thread as the event
//! loop, until the guest exits, panics, faults, times out or is killed) → [`RunReport`].
//!
//! The VMM knows nothing about containerd or OCI; the only contract with the guest is the
//! `wasmcell-abi` crate. Everything the guest writes is treated as hostile: guest memory is only
//! touched through vm-memory's bounds-checked accessors.

mod arch;
mod boot_info;
mod config;
mod devices;
mod files;
mod guest_image;
mod layout;
mod loader;
mod memory;
mod outcome;
pub mod signals;
#[cfg(test)]
mod test_utils;
mod vcpu;
mod vm;

pub use config::{ConfigError, GuestImage, MemorySize, VmConfig, Workload};
pub use devices::virtio::console::Input;
pub use files::{FilesError, Preopen};
pub use guest_image::EMBEDDED_GUEST;
pub use layout::LayoutError;
pub use loader::LoadError;
pub use outcome::{Outcome, RunReport};
pub use vm::{Error, Vm, VmHandle};
