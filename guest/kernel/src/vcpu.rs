//! The running vCPU: its block (found through the GS base the VMM set) and its info, and the
//! bookkeeping that lets the VMM stop one vCPU without stranding the others — the count of
//! kernel-wide locks it holds.
//!
//! The VMM stops a vCPU only where `locks_held` is 0. When it asks for a stop while the vCPU
//! holds a lock, the vCPU runs on until the last lock is released and then says so on the
//! control device's SAFE_POINT register.

use crate::arch;
use core::sync::atomic::{AtomicU32, Ordering};
use wasmcell_abi::memory_map::{MAX_VCPUS, VCPU_INFO};
use wasmcell_abi::vcpu::{VcpuBlock, VcpuInfo, VCPU_INFO_MAGIC};

/// This vCPU's block.
pub fn block() -> *mut VcpuBlock {
    arch::vcpu_block() as *mut VcpuBlock
}

/// This vCPU's info (read-only, next to its block).
pub fn info() -> &'static VcpuInfo {
    // SAFETY: the VMM maps each vCPU's info page read-only, at `VCPU_INFO` past its block, for
    // the VM's whole life, and writes it only before the vCPU starts.
    unsafe { &*((arch::vcpu_block() + VCPU_INFO) as *const VcpuInfo) }
}

/// This vCPU's index, below `MAX_VCPUS` (checked at entry).
pub fn index() -> usize {
    info().index as usize
}

/// Checks the info the VMM handed this vCPU; `None` if it is not one.
pub fn check(info: &VcpuInfo) -> Option<()> {
    (info.magic == VCPU_INFO_MAGIC && info.index < MAX_VCPUS && core::ptr::eq(info, self::info())).then_some(())
}

fn field(offset: usize) -> &'static AtomicU32 {
    // SAFETY: the block page is this vCPU's, mapped read-write for the VM's whole life; the
    // fields are aligned `u32`s, and only this vCPU's guest code and (while the vCPU is out of
    // KVM_RUN) the VMM access them.
    unsafe { &*(block().cast::<u8>().add(offset) as *const AtomicU32) }
}

fn locks_held() -> &'static AtomicU32 {
    field(core::mem::offset_of!(VcpuBlock, locks_held))
}

/// Whether this vCPU holds any kernel-wide lock.
pub fn holds_locks() -> bool {
    locks_held().load(Ordering::Relaxed) != 0
}

/// Called before acquiring a kernel-wide lock.
pub fn lock_acquiring() {
    locks_held().fetch_add(1, Ordering::Relaxed);
}

/// Called after releasing one: if it was the last and the VMM asked for a stop, stop here.
pub fn lock_released() {
    if locks_held().fetch_sub(1, Ordering::Relaxed) == 1
        && field(core::mem::offset_of!(VcpuBlock, stop_requested)).load(Ordering::Relaxed) != 0
    {
        crate::control::safe_point();
    }
}

/// wasmtime's thread-local slot `slot` of this vCPU.
pub fn tls(slot: usize) -> Option<&'static core::sync::atomic::AtomicU64> {
    let offset = core::mem::offset_of!(VcpuBlock, tls) + slot.checked_mul(8)?;
    (slot < 2).then(|| {
        // SAFETY: as in `field`; the slot is inside the block's `tls` array (checked above).
        unsafe { &*(block().cast::<u8>().add(offset) as *const core::sync::atomic::AtomicU64) }
    })
}
