//! The guest's devices and the port-I/O bus the vCPU thread dispatches exits to.
//!
//! Both devices live on the vCPU's thread: their registers are touched only by that vCPU's
//! exits, so no locking is needed. One folder per device.

pub mod control;
pub mod serial;
pub mod virtio;

use control::{ControlAction, ControlDevice};
use serial::SerialConsole;
use virtio::console::Console;
use virtio::mmio::MmioTransport;
use wasmcell_abi::control::{X86_PORT_BASE, X86_PORT_COUNT};
use wasmcell_abi::devices::console::{MMIO_BASE as CONSOLE_BASE, MMIO_SIZE as CONSOLE_SIZE};

/// Every device of one VM.
pub struct Devices {
    pub serial: SerialConsole,
    pub control: ControlDevice,
    pub console: MmioTransport<Console>,
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

impl Devices {
    /// The stdin fd to watch while the guest waits, if the guest is waiting for stdin.
    pub fn console_input_fd(&mut self) -> Option<std::os::fd::RawFd> {
        let (console, queues, memory) = self.console.device_and_queues();
        console.wants_input(queues, memory).then(|| console.input_fd()).flatten()
    }

    /// Delivers stdin that became readable while the guest waited.
    pub fn deliver_console_input(&mut self) {
        let (console, queues, memory) = self.console.device_and_queues();
        console.fill_stdin(queues, memory);
    }

    /// A guest MMIO read at guest-physical `addr`.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        match addr.checked_sub(CONSOLE_BASE).filter(|&o| o < CONSOLE_SIZE) {
            Some(offset) => self.console.read(offset, data),
            // Reads from nothing see a floating bus.
            None => data.fill(0xff),
        }
    }

    /// A guest MMIO write at guest-physical `addr`.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if let Some(offset) = addr.checked_sub(CONSOLE_BASE).filter(|&o| o < CONSOLE_SIZE) {
            self.console.write(offset, data);
        }
    }
}

fn offset_in(port: u16, base: u16, count: u16) -> Option<u16> {
    port.checked_sub(base).filter(|&offset| offset < count)
}
