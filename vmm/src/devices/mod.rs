//! The guest's devices and the port-I/O bus the vCPU thread dispatches exits to.
//!
//! Both devices live on the vCPU's thread: their registers are touched only by that vCPU's
//! exits, so no locking is needed. One folder per device.

pub mod control;
pub mod serial;

use control::{ControlAction, ControlDevice};
use serial::SerialConsole;
use wasmcell_abi::control::{X86_PORT_BASE, X86_PORT_COUNT};

/// Every device of one VM.
pub struct Devices {
    pub serial: SerialConsole,
    pub control: ControlDevice,
}

impl Devices {
    /// A guest `out` (or `rep outs`) to `port`.
    pub fn io_out(&mut self, port: u16, data: &[u8]) -> ControlAction {
        if let Some(offset) = offset_in(port, SerialConsole::PORT_BASE, SerialConsole::PORT_COUNT) {
            self.serial.write(offset as u8, data);
        } else if let Some(offset) = offset_in(port, X86_PORT_BASE, X86_PORT_COUNT) {
            return self.control.write(offset, data);
        }
        // Writes to nothing are dropped, as on a bus with no device behind the address.
        ControlAction::Continue
    }

    /// A guest `in` from `port`.
    pub fn io_in(&mut self, port: u16, data: &mut [u8]) {
        if let Some(offset) = offset_in(port, SerialConsole::PORT_BASE, SerialConsole::PORT_COUNT) {
            self.serial.read(offset as u8, data);
        } else {
            // Reads from nothing see a floating bus.
            data.fill(0xff);
        }
    }
}

fn offset_in(port: u16, base: u16, count: u16) -> Option<u16> {
    port.checked_sub(base).filter(|&offset| offset < count)
}
