//! The wasmcell guest unikernel.
//!
//! The VMM has already built this guest's whole address space (page tables, GDT/IDT, each
//! vCPU's TSS, stacks and info, the boot info; see `wasmcell_abi::memory_map`) and enters
//! [`_start`] on every vCPU directly in 64-bit CPL 3 with `RDI` = the boot info, `RSI` = the
//! vCPU's info and interrupts off. Nothing here ever runs in CPL 0: on nested KVM without
//! hardware virtualisation CPL 0 code is emulated, CPL 3 code runs natively.
//!
//! Each vCPU: the first one in checks the boot info and claims the kernel heap (once, for
//! all) → a vCPU with a workload claims the workload's heap and runs it (`runtime`), then exits
//! through the control device → a vCPU without one (a pod's boot vCPU, or `wasmcell boot`)
//! tells the VMM "boot done" and parks, or runs the self-test and exits.
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
mod sync;
mod vcpu;
mod virtio;
mod wasi;

use core::sync::atomic::{AtomicU32, Ordering};
use wasmcell_abi::boot_info::{BootInfoError, LOG_INFO, POD};
use wasmcell_abi::vcpu::VcpuInfo;
use wasmcell_abi::{exit, BootInfo};

/// The guest's entry point on every vCPU, called by nobody: the VMM points `RIP` here.
///
/// # Safety
/// `boot_info` and `vcpu` must point to readable pages holding a `BootInfo` and a `VcpuInfo`,
/// and the GS base must be the vCPU's block, which the VMM guarantees before entry.
#[no_mangle]
pub unsafe extern "sysv64" fn _start(boot_info: *const BootInfo, vcpu: *const VcpuInfo) -> ! {
    // SAFETY: the caller (the VMM) maps the whole boot-info page; `BootInfo` is plain data, so
    // any bytes there form a value, which `init_kernel` validates before anything else is used.
    let info = unsafe { boot_info.read() };
    init_kernel(&info);
    // SAFETY: as for the boot info: the VMM maps this vCPU's info page read-only; `check`
    // validates it (and that it is the one at this vCPU's GS base) before it is trusted.
    let vcpu = unsafe { &*vcpu };
    if vcpu::check(vcpu).is_none() {
        control::exit(exit::BAD_BOOT_INFO);
    }
    if vcpu.has_workload() {
        heap::enter_workload(vcpu.heap_start, vcpu.heap_end);
        runtime::run(vcpu, info.flags & POD != 0);
    }
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

/// 0 until the kernel is set up, then [`READY`] or the exit code every vCPU must stop with.
static KERNEL_STATE: AtomicU32 = AtomicU32::new(UNSET);
const UNSET: u32 = 0;
const SETTING_UP: u32 = 1;
const READY: u32 = 2;

/// Checks the boot info and claims the kernel heap, once for the VM: the first vCPU does it,
/// any other arriving meanwhile waits for it. A bad boot info stops every vCPU.
fn init_kernel(info: &BootInfo) {
    let verdict = match KERNEL_STATE.compare_exchange(UNSET, SETTING_UP, Ordering::Acquire, Ordering::Acquire) {
        Ok(_) => {
            let verdict = match info.check() {
                Ok(()) => {
                    log::set_enabled(info.log_level >= LOG_INFO);
                    heap::init_kernel(info.heap_start, info.heap_end);
                    READY
                }
                Err(BootInfoError::VersionMismatch) => exit::ABI_MISMATCH,
                Err(BootInfoError::BadMagic) => exit::BAD_BOOT_INFO,
            };
            KERNEL_STATE.store(verdict, Ordering::Release);
            verdict
        }
        Err(_) => loop {
            match KERNEL_STATE.load(Ordering::Acquire) {
                SETTING_UP => core::hint::spin_loop(),
                verdict => break verdict,
            }
        },
    };
    if verdict != READY {
        control::exit(verdict);
    }
}
