//! The guest's side of the control device: how it ends, marks boot done, reports a panic and
//! waits. Register meanings are in `wasmcell_abi::control`.

use crate::arch;
use wasmcell_abi::control::{self as reg, ControlBlock, BOOT_DONE_MAGIC};
use wasmcell_abi::memory_map::CONTROL_BLOCK;

/// Stops the VM with `code`. The VMM never resumes the vCPU after this write.
pub fn exit(code: u32) -> ! {
    arch::control_write(reg::EXIT, code);
    // Unreachable with a correct VMM; spinning keeps the guest harmless if one resumes us.
    loop {
        core::hint::spin_loop();
    }
}

/// Tells the VMM the guest is ready for its workload (the end of the boot-time figure).
pub fn boot_done() {
    arch::control_write(reg::BOOT_DONE, BOOT_DONE_MAGIC);
}

/// Sleeps in the VMM until an event is pending or `micros` pass.
pub fn wait(micros: u32) {
    arch::control_write(reg::WAIT, micros);
}

/// The control block page the VMM reads panic messages from.
pub fn control_block() -> *mut ControlBlock {
    CONTROL_BLOCK as *mut ControlBlock
}

/// Reports a panic whose message is already in the control block (`len` bytes).
pub fn report_panic(len: usize) {
    arch::control_write(reg::PANIC, len as u32);
}
