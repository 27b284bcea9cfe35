//! The sandbox of every wasmcell host process that handles a tenant's input: a VMM process
//! (per pod or per container), the packer that reads a container's root filesystem, and the
//! compiler process that runs Cranelift on a tenant's module. [`jail`] closes a process into a
//! mount namespace of its own with an empty (or read-only) root, unprivileged ids and no
//! capabilities; [`seccomp`] gives each kind of thread the smallest allow-list it needs.
//!
//! No KVM and no wasmtime here: the compiler process and the shim depend on this crate without
//! linking either.

pub mod jail;
pub mod seccomp;
