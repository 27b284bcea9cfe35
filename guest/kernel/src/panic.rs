//! The panic handler: the message goes to the VMM through the control block, then the guest
//! stops with its own exit code. Nothing is logged to the serial port first, so a panic costs
//! two VM exits however long its message is.

use crate::control;
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use wasmcell_abi::{control::PANIC_MESSAGE_MAX, exit};

/// Writes into the control block's message buffer, dropping what does not fit.
struct MessageWriter {
    len: usize,
}

impl Write for MessageWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(PANIC_MESSAGE_MAX - self.len);
        // SAFETY: the control block page is mapped user read-write for the guest's whole life
        // and only this handler writes its message buffer; `take` keeps the copy inside it.
        unsafe {
            let dst = (*control::control_block()).panic_message.as_mut_ptr();
            core::ptr::copy_nonoverlapping(s.as_ptr(), dst.add(self.len), take);
        }
        self.len += take;
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut w = MessageWriter { len: 0 };
    let _ = write!(w, "{}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(w, " at {}:{}", location.file(), location.line());
    }
    control::report_panic(w.len);
    control::exit(exit::PANIC)
}
