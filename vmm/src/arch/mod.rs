//! Architecture-specific parts of the VMM behind the same names on every architecture
//! (Firecracker's split): the boot flow in `vm.rs` calls `arch::configure_address_space`,
//! `arch::configure_vcpu`, `arch::fault_outcome` and never spells a `cfg`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("wasmcell's VMM supports x86_64 hosts only so far; aarch64 slots in beside arch/x86_64");
