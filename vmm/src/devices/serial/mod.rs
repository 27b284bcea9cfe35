//! The guest's log console: a 16550 UART (vm-superio) on COM1's ports, output only.
//!
//! The guest writes whole lines with `rep outsb`, so one VM exit carries many bytes; each byte
//! goes through the UART model as if written one at a time. The UART never raises interrupts
//! (the guest runs with them off) and its transmitter is always ready.

use std::io::Write;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

/// The UART's interrupt line, wired to nothing.
pub struct NoInterrupt;

impl Trigger for NoInterrupt {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// The serial console and where its output goes.
pub struct SerialConsole {
    uart: Serial<NoInterrupt, NoEvents, Box<dyn Write + Send>>,
}

impl SerialConsole {
    /// COM1.
    pub const PORT_BASE: u16 = 0x3f8;
    /// Registers of a 16550.
    pub const PORT_COUNT: u16 = 8;

    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { uart: Serial::new(NoInterrupt, out) }
    }

    /// A write of `data` to register `offset` (many bytes for a string instruction).
    pub fn write(&mut self, offset: u8, data: &[u8]) {
        for &byte in data {
            // The output is the user's log: if it fails (closed pipe), the guest goes on.
            let _ = self.uart.write(offset, byte);
        }
    }

    /// A read of register `offset`.
    pub fn read(&mut self, offset: u8, data: &mut [u8]) {
        data.fill(self.uart.read(offset));
    }

    /// Pushes buffered output out, at the end of a run.
    pub fn flush(&mut self) {
        let _ = self.uart.writer_mut().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::Capture;

    #[test]
    fn string_writes_reach_the_output_in_order_and_lsr_says_ready() {
        let capture = Capture::default();
        let mut console = SerialConsole::new(Box::new(capture.clone()));
        console.write(0, b"hello ");
        console.write(0, b"guest\n");
        assert_eq!(capture.contents(), b"hello guest\n");
        let mut lsr = [0u8];
        console.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
    }
}
