//! Traps by fault: compiled Wasm relies on the MMU and the CPU for its bounds checks (guard
//! regions), divisions and `unreachable`, so a Wasm trap arrives as #PF, #DE or #UD. The CPL 0
//! stub the IDT runs sends such a fault straight back to CPL 3, to `_start` on the vCPU's trap
//! stack (`arch`), which calls [`trap`]: wasmtime's handler, registered through
//! `wasmtime_init_traps`, turns a fault in Wasm code into a trap of the running call and never
//! returns; any other fault is a bug in this guest and stops the vCPU with the fault's details.

use crate::control;
use core::sync::atomic::{AtomicUsize, Ordering};
use wasmcell_abi::control::FaultReport;

/// The vector whose fault has a faulting address (CR2).
const PAGE_FAULT: u64 = 14;

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
pub extern "sysv64" fn trap(vector: u64, pc: u64, addr: u64, error_code: u64, fp: u64) -> ! {
    let handler = HANDLER.load(Ordering::Relaxed);
    if handler != 0 {
        // SAFETY: only `wasmtime_init_traps` stores here, and it stores a `Handler`.
        let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        // Returns only if the fault was not in Wasm code.
        handler(pc as usize, fp as usize, vector == PAGE_FAULT, addr as usize);
    }
    control::report_fault(FaultReport { vector, error_code, rip: pc, cr2: addr })
}
