//! Traps by fault: compiled Wasm relies on the MMU and the CPU for its bounds checks (guard
//! regions), divisions and `unreachable`, so a Wasm trap arrives as a fault (#PF, #DE or #UD on
//! x86-64; a data abort or an undefined instruction on aarch64). The CPL 0 stub the IDT runs (the
//! EL1 vector on aarch64) sends such a fault straight back to user mode, to `_start` on the
//! vCPU's trap stack (`arch`), which calls [`trap`]: wasmtime's handler, registered through
//! `wasmtime_init_traps`, turns a fault in Wasm code into a trap of the running call and never
//! returns; any other fault is a bug in this guest and stops the vCPU with the fault's details.

use crate::{arch, control};
use core::sync::atomic::{AtomicUsize, Ordering};
use wasmcell_abi::control::FaultReport;

/// wasmtime's handler (`wasmtime_trap_handler_t`), 0 until it registers one.
static HANDLER: AtomicUsize = AtomicUsize::new(0);

type Handler = extern "C" fn(ip: usize, fp: usize, has_faulting_addr: bool, faulting_addr: usize);

/// Called by wasmtime when an engine that uses signals-based traps is created.
#[no_mangle]
extern "C" fn wasmtime_init_traps(handler: Handler) -> i32 {
    HANDLER.store(handler as usize, Ordering::Relaxed);
    0
}

/// A fault sent back from CPL 0 (see the module doc). Runs on the trap stack; a fault in here
/// is reported by the CPL 0 stub itself.
pub extern "C" fn trap(vector: u64, pc: u64, addr: u64, error_code: u64, fp: u64) -> ! {
    let handler = HANDLER.load(Ordering::Relaxed);
    if handler != 0 {
        // SAFETY: only `wasmtime_init_traps` stores here, and it stores a `Handler`.
        let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        // Returns only if the fault was not in Wasm code.
        handler(pc as usize, fp as usize, arch::fault_has_address(vector), addr as usize);
    }
    control::report_fault(FaultReport { vector, error_code, rip: pc, cr2: addr })
}
