//! The wasmcell guest unikernel.
//!
//! The VMM has already built this guest's whole address space (page tables, GDT/IDT, each
//! vCPU's TSS, stacks and info, the boot info; see `wasmcell_abi::memory_map`) and enters
//! `_start` (`arch`) on every vCPU directly in 64-bit CPL 3 with `RDI` = the boot info, `RSI` =
//! the vCPU's info and interrupts off: [`boot`]. The CPL 0 stubs enter it again for a fault
//! compiled Wasm may have raised on purpose, with `RDI` = the vector: [`trap`]. Nothing here
//! ever runs in CPL 0: on nested KVM without hardware virtualisation CPL 0 code is emulated,
//! CPL 3 code runs natively.
//!
//! Each vCPU runs in an address space of its own, with a private copy of this image's writable
//! data (its statics: the allocator, the log, wasmtime's globals): nothing here is shared with
//! another vCPU. A vCPU with a workload checks the boot info, makes its window's heap its heap
//! and runs the workload (`runtime`), then exits through the control device. A vCPU without one
//! (a pod's boot vCPU, or `wasmcell boot`'s) checks the boot info, claims the kernel heap, tells
//! the VMM "boot done" and parks, or runs the self-test and exits.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod component;
mod control;
mod heap;
mod log;
mod net;
mod panic;
mod runtime;
mod selftest;
mod serve;
mod sync;
mod trap;
mod vcpu;
mod virtio;
mod volume;
mod wasi;

use wasmcell_abi::boot_info::{BootInfoError, LOG_INFO, POD};
use wasmcell_abi::vcpu::VcpuInfo;
use wasmcell_abi::{exit, BootInfo};

/// Where every vCPU starts, from `_start`.
///
/// # Safety
/// `boot_info` and `vcpu` must point to readable pages holding a `BootInfo` and a `VcpuInfo`,
/// and the GS base must be the vCPU's block, which the VMM guarantees before entry.
pub unsafe extern "C" fn boot(boot_info: *const BootInfo, vcpu: *const VcpuInfo) -> ! {
    // SAFETY: the caller (the VMM) maps the whole boot-info page; `BootInfo` is plain data, so
    // any bytes there form a value, which `check_boot_info` validates before anything else is used.
    let info = unsafe { boot_info.read() };
    check_boot_info(&info);
    // SAFETY: as for the boot info: the VMM maps this vCPU's info page read-only; `check`
    // validates it (and that it is the one at this vCPU's GS base) before it is trusted.
    let vcpu = unsafe { &*vcpu };
    if vcpu::check(vcpu).is_none() {
        control::exit(exit::BAD_BOOT_INFO);
    }
    if vcpu.has_workload() {
        heap::enter_workload(vcpu.heap_start, vcpu.heap_end);
        runtime::run(vcpu);
    }
    heap::init_kernel(info.heap_start, info.heap_end);
    control::boot_done();
    log!(
        "wasmcell guest {}: ready ({} KiB heap, {} MiB RAM)",
        env!("CARGO_PKG_VERSION"),
        (info.heap_end - info.heap_start) / 1024,
        info.ram_size >> 20
    );
    if info.flags & POD != 0 {
        control::park();
    }
    control::exit(selftest::run(info.selftest))
}

/// Checks the boot info (this address space's first act) and turns the log on if asked: a bad
/// boot info stops the vCPU.
fn check_boot_info(info: &BootInfo) {
    match info.check() {
        Ok(()) => log::set_enabled(info.log_level >= LOG_INFO),
        Err(BootInfoError::VersionMismatch) => control::exit(exit::ABI_MISMATCH),
        Err(BootInfoError::BadMagic) => control::exit(exit::BAD_BOOT_INFO),
    }
}
