//! The wasmcell guest unikernel.
//!
//! The VMM has already built this guest's whole address space (page tables, GDT/IDT/TSS, stack,
//! boot info; see `wasmcell_abi::memory_map`) and enters [`_start`] directly in 64-bit CPL 3 with
//! `RDI` = the boot info and interrupts off. Nothing here ever runs in CPL 0: on nested KVM
//! without hardware virtualisation CPL 0 code is emulated, CPL 3 code runs natively. Boot is:
//! check the boot info → claim the heap → tell the VMM "boot done" → run the work → exit through
//! the control device.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod control;
mod heap;
mod log;
mod panic;
mod runtime;
mod selftest;
mod virtio;
mod wasi;

use wasmcell_abi::boot_info::BootInfoError;
use wasmcell_abi::{exit, BootInfo};

/// The guest's entry point, called by nobody: the VMM points the vCPU's `RIP` here.
///
/// # Safety
/// `boot_info` must point to a readable page holding at least a `BootInfo`, which the VMM
/// guarantees by mapping `BOOT_INFO` before entry.
#[no_mangle]
pub unsafe extern "sysv64" fn _start(boot_info: *const BootInfo) -> ! {
    // SAFETY: the caller (the VMM) maps the whole boot-info page; `BootInfo` is plain data, so
    // any bytes there form a value, which `check` then validates before anything else is used.
    let info = unsafe { boot_info.read() };
    match info.check() {
        Ok(()) => {}
        Err(BootInfoError::VersionMismatch) => control::exit(exit::ABI_MISMATCH),
        Err(BootInfoError::BadMagic) => control::exit(exit::BAD_BOOT_INFO),
    }
    log::set_enabled(info.log_level >= wasmcell_abi::boot_info::LOG_INFO);
    heap::init(info.heap_start, info.heap_end, info.payload_addr != 0);
    if info.payload_addr != 0 {
        // The runtime marks boot done itself, right before `_start`.
        control::exit(runtime::run(&info));
    }
    control::boot_done();
    log!(
        "wasmcell guest {}: ready ({} KiB heap, {} MiB RAM)",
        env!("CARGO_PKG_VERSION"),
        (info.heap_end - info.heap_start) / 1024,
        info.ram_size >> 20
    );
    control::exit(selftest::run(info.selftest))
}
