//! The running vCPU: its block (found through the GS base the VMM set; wasmtime's thread-local
//! slots and the messages for the VMM live there) and its info. Both are mapped in this vCPU's
//! address space only.

use crate::arch;
use wasmcell_abi::memory_map::{MAX_VCPUS, VCPU_INFO};
use wasmcell_abi::vcpu::{VcpuBlock, VcpuInfo, VCPU_INFO_MAGIC};

/// This vCPU's block.
pub fn block() -> *mut VcpuBlock {
    arch::vcpu_block() as *mut VcpuBlock
}

/// This vCPU's info (read-only, next to its block).
pub fn info() -> &'static VcpuInfo {
    // SAFETY: the VMM maps this vCPU's info page read-only, at `VCPU_INFO` past its block, for as
    // long as the vCPU runs, and writes it only before the vCPU starts.
    unsafe { &*((arch::vcpu_block() + VCPU_INFO) as *const VcpuInfo) }
}

/// Checks the info the VMM handed this vCPU; `None` if it is not one.
pub fn check(info: &VcpuInfo) -> Option<()> {
    (info.magic == VCPU_INFO_MAGIC && info.index < MAX_VCPUS && core::ptr::eq(info, self::info())).then_some(())
}

/// wasmtime's thread-local slot `slot` of this vCPU.
pub fn tls(slot: usize) -> Option<&'static core::sync::atomic::AtomicU64> {
    let offset = core::mem::offset_of!(VcpuBlock, tls) + slot.checked_mul(8)?;
    (slot < 2).then(|| {
        // SAFETY: the block page is this vCPU's, mapped read-write while it runs; the slot is an
        // aligned `u64` inside the block's `tls` array (checked above), touched by this vCPU only.
        unsafe { &*(block().cast::<u8>().add(offset) as *const core::sync::atomic::AtomicU64) }
    })
}
