//! The panic handler: the message goes to the VMM through the vCPU block, then the vCPU
//! stops with its own exit code. Nothing is logged to the serial port first, so a panic costs
//! two VM exits however long its message is.
//!
//! A workload that runs out of memory inside the guest's own code (wasmtime copying a huge
//! `list` argument, say) reaches here through the allocation-failure handler: that is the
//! workload's end, reported as a trap with status 134 — what a host process that cannot
//! allocate gets (SIGABRT) — not a kernel panic.

use crate::control::{self, MessageWriter};
use core::fmt::Write;
use core::panic::PanicInfo;
use wasmcell_abi::control::PANIC;
use wasmcell_abi::exit;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    if let (Some(size), true) = (crate::heap::failed_allocation(), crate::runtime::running()) {
        let mut w = MessageWriter::new();
        let _ = write!(w, "out of memory: an allocation of {size} bytes failed (the workload's memory is exhausted)");
        w.send(wasmcell_abi::control::TRAP);
        control::exit(crate::runtime::TRAP_EXIT_CODE)
    }
    let mut w = MessageWriter::new();
    let _ = write!(w, "{}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(w, " at {}:{}", location.file(), location.line());
    }
    w.send(PANIC);
    control::exit(exit::PANIC)
}
