//! The guest unikernel built by `build.rs` from `guest/kernel`, embedded in the VMM.

/// The guest ELF this VMM was built with.
pub static EMBEDDED_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wasmcell-guest.elf"));
