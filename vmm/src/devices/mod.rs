//! The devices one vCPU reaches, and the port-I/O and MMIO bus its thread dispatches exits to.
//! The control device and the serial log are ports on x86-64 and MMIO pages on aarch64 (which
//! has no ports); the bus decodes both, and each architecture's page tables decide which the
//! guest can reach.
//!
//! Each vCPU has its own control device and, if it runs a workload, that workload's console,
//! (with a network) its sockets and (with volumes) its files: they are touched only by that vCPU's exits, so they need no
//! locking, and no vCPU can reach another's console or sockets (its address decodes to nothing, and its page is not mapped in
//! the vCPU's address space). The serial log is the VM's one shared device, and a workload's
//! vCPU reaches it only when the guest was asked to log (diagnostics); otherwise its writes go
//! nowhere. One folder per device.

pub mod control;
pub mod file;
pub mod serial;
pub mod slots;
pub mod socket;
pub mod virtio;

use crate::memory::GuestMemory;
use control::{ControlAction, ControlDevice};
use serial::SerialConsole;
use std::sync::{Arc, Mutex};
use virtio::console::{Console, OutputProgress};
use virtio::mmio::MmioTransport;
use virtio::{DeviceError, VirtioDevice};
use virtio_queue::Queue;
use wasmcell_abi::control::{AARCH64_CONTROL_PAGE, AARCH64_SERIAL_PAGE, X86_PORT_BASE, X86_PORT_COUNT};
use wasmcell_abi::devices::console::MMIO_SIZE as CONSOLE_SIZE;

/// A workload's console and the guest-physical base of its register block.
pub struct ConsoleSlot {
    pub base: u64,
    /// Its memory is a view of the workload's window (`Window::device_view`)...
    pub transport: MmioTransport<Console>,
    /// ...whose host mapping this keeps alive; declared after `transport`, so dropped after it.
    pub _window: Arc<crate::memory::Region>,
}

/// Every device of one vCPU.
pub struct Devices {
    /// The serial log, if this vCPU may write it.
    pub serial: Option<Arc<Mutex<SerialConsole>>>,
    pub control: ControlDevice,
    /// The workload's sockets, if it has a network. Its memory is a view of the window whose
    /// host mapping the console's slot keeps alive: declared first, so dropped first.
    pub sockets: Option<socket::SocketDevice>,
    /// The workload's volumes, if it has any (its memory a view of the window, as the sockets').
    pub files: Option<file::FileDevice>,
    pub console: Option<ConsoleSlot>,
}

impl Devices {
    /// A guest `out` (or `rep outs`) to `port`.
    pub fn io_out(&mut self, port: u16, data: &[u8]) -> ControlAction {
        if let Some(offset) = offset_in(port, SerialConsole::PORT_BASE, SerialConsole::PORT_COUNT) {
            if let Some(serial) = &self.serial {
                serial.lock().unwrap_or_else(|e| e.into_inner()).write(offset as u8, data);
            }
        } else if let Some(offset) = offset_in(port, X86_PORT_BASE, X86_PORT_COUNT) {
            return self.control.write(offset, data);
        }
        // Writes to nothing are dropped, as on a bus with no device behind the address.
        ControlAction::Continue
    }

    /// A guest `in` from `port`.
    pub fn io_in(&mut self, port: u16, data: &mut [u8]) {
        let serial =
            self.serial.as_ref().filter(|_| port.wrapping_sub(SerialConsole::PORT_BASE) < SerialConsole::PORT_COUNT);
        if let Some(serial) = serial {
            serial.lock().unwrap_or_else(|e| e.into_inner()).read((port - SerialConsole::PORT_BASE) as u8, data);
        } else {
            // Reads from nothing see a floating bus.
            data.fill(0xff);
        }
    }

    /// The stdin fd to watch while the guest waits, if the guest may still receive stdin.
    pub fn console_input_fd(&mut self) -> Option<std::os::fd::RawFd> {
        let (console, queues, memory) = self.console.as_mut()?.transport.device_and_queues();
        console.wants_input(queues, memory).then(|| console.input_fd()).flatten()
    }

    /// `work` on the console, its queues and its memory; `Ok(idle)` without a console.
    fn with_console<T>(
        &mut self,
        idle: T,
        work: impl FnOnce(&mut Console, &mut [Queue], &GuestMemory) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        match &mut self.console {
            Some(slot) => {
                let (console, queues, memory) = slot.transport.device_and_queues();
                work(console, queues, memory)
            }
            None => Ok(idle),
        }
    }

    /// Delivers stdin that became readable while the guest waited.
    pub fn deliver_console_input(&mut self) -> Result<(), DeviceError> {
        self.with_console((), |console, queues, memory| console.fill_stdin(queues, memory))
    }

    /// Sends one budget's worth of the output the guest is waiting on, if any.
    pub fn resume_console_output(&mut self) -> Result<OutputProgress, DeviceError> {
        self.with_console(OutputProgress::default(), |console, queues, memory| {
            if !console.output_pending(queues, memory) {
                return Ok(OutputProgress::default());
            }
            console.resume_output(queues, memory)
        })
    }

    /// Whether the console's output is drained on the vCPU thread's timer.
    pub fn console_batching(&self) -> bool {
        self.console.as_ref().is_some_and(|slot| slot.transport.device().batching())
    }

    /// A tick of the vCPU thread's timer; whether the console still batches.
    pub fn tick_console_output(&mut self) -> Result<bool, DeviceError> {
        self.with_console(false, |console, queues, memory| console.tick_output(queues, memory))
    }

    /// The vCPU waits: the console's output goes back to notifies.
    pub fn stop_console_batching(&mut self) -> Result<(), DeviceError> {
        self.with_console((), |console, queues, memory| console.stop_batching(queues, memory))
    }

    /// Sends one budget's worth of output the guest queued and the device has not taken yet
    /// (the end of a run; errors of a guest that broke its rings change nothing then).
    pub fn send_queued_output(&mut self) {
        let _ = self.resume_console_output();
    }

    /// The console's register offset for guest-physical `addr`, if it is this vCPU's console.
    fn console_at(&mut self, addr: u64) -> Option<(&mut MmioTransport<Console>, u64)> {
        let slot = self.console.as_mut()?;
        let offset = addr.checked_sub(slot.base).filter(|&o| o < CONSOLE_SIZE)?;
        Some((&mut slot.transport, offset))
    }

    /// A guest MMIO read at guest-physical `addr`.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        if let Some(offset) = offset_in_page(addr, AARCH64_SERIAL_PAGE, SerialConsole::PORT_COUNT) {
            match &self.serial {
                Some(serial) => serial.lock().unwrap_or_else(|e| e.into_inner()).read(offset as u8, data),
                None => data.fill(0xff),
            }
            return;
        }
        match self.console_at(addr) {
            Some((console, offset)) => console.read(offset, data),
            // Reads from nothing see a floating bus.
            None => data.fill(0xff),
        }
    }

    /// A guest MMIO write at guest-physical `addr`.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> ControlAction {
        if let Some(offset) = offset_in_page(addr, AARCH64_CONTROL_PAGE, X86_PORT_COUNT) {
            return self.control.write(offset, data);
        }
        if let Some(offset) = offset_in_page(addr, AARCH64_SERIAL_PAGE, SerialConsole::PORT_COUNT) {
            if let Some(serial) = &self.serial {
                serial.lock().unwrap_or_else(|e| e.into_inner()).write(offset as u8, data);
            }
            return ControlAction::Continue;
        }
        match self.console_at(addr).map(|(console, offset)| console.write(offset, data)) {
            Some(Err(e)) => ControlAction::DeviceError(format!("virtio-console: {e}")),
            _ => ControlAction::Continue,
        }
    }

    /// Pushes buffered output out, at the end of a run (never blocks); when the workload ended
    /// by itself (`finished`), also lets late readers of its FIFOs take it (bounded).
    pub fn flush(&mut self, finished: bool) {
        if let Some(slot) = &mut self.console {
            let console = slot.transport.device_and_queues().0;
            console.flush();
            if finished {
                console.finish();
            }
        }
        if let Some(serial) = &self.serial {
            serial.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }
}

fn offset_in(port: u16, base: u16, count: u16) -> Option<u16> {
    port.checked_sub(base).filter(|&offset| offset < count)
}

/// The register offset of `addr` in the device page at `page` decoding `count` registers.
fn offset_in_page(addr: u64, page: u64, count: u16) -> Option<u16> {
    addr.checked_sub(page).filter(|&offset| offset < u64::from(count)).map(|offset| offset as u16)
}
