//! The panic handler: the message goes to the VMM through the vCPU block, then the vCPU
//! stops with its own exit code. Nothing is logged to the serial port first, so a panic costs
//! two VM exits however long its message is.

use crate::control::{self, MessageWriter};
use core::fmt::Write;
use core::panic::PanicInfo;
use wasmcell_abi::control::PANIC;
use wasmcell_abi::exit;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut w = MessageWriter::new();
    let _ = write!(w, "{}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(w, " at {}:{}", location.file(), location.line());
    }
    w.send(PANIC);
    control::exit(exit::PANIC)
}
