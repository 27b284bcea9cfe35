//! The control device: how a vCPU ends, marks boot done, reports panics and faults, waits for
//! events, parks and makes socket and file calls. The register map is `wasmcell_abi::control`
//! (and `wasmcell_abi::socket::SOCKET`, `wasmcell_abi::file::FILE`).
//!
//! Each vCPU has its own: a register write is decoded into a [`ControlAction`] for that vCPU's
//! loop to carry out. The only guest memory it reads, a message or request in the vCPU's block,
//! is read through vm-memory and capped in length; the only one it writes is a socket or file
//! reply there.

use crate::memory::GuestMemory;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::{self as reg, FaultReport, MapRequest, BOOT_DONE_MAGIC, MESSAGE_MAX, WAIT_FOREVER};
use wasmcell_abi::file::{self, FileCall, FileReply};
use wasmcell_abi::socket::{self, SocketCall, SocketReply};
use wasmcell_abi::vcpu::VcpuBlock;

/// What the vCPU loop must do after a control-register write.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlAction {
    /// Resume the guest.
    Continue,
    /// Record the boot-done time, then resume.
    BootDone,
    /// Sleep until an event or the timeout (`None`: no timeout), then resume.
    Wait(Option<Duration>),
    /// Stop: the guest exited with this code.
    Exit(u32),
    /// Stop: the guest panicked with this message.
    Panic(String),
    /// Stop: a CPL 0 stub reported this exception vector.
    Fault(u32),
    /// Stop: the guest's trap entry reported a fault that was no Wasm trap.
    FaultReport(FaultReport),
    /// Map these pages for the guest (a guarded memory grows), then resume.
    MapMemory(MapRequest),
    /// Stop: the Wasm module trapped (message with backtrace).
    Trap(String),
    /// Stop: the workload could not start.
    WorkloadError(String),
    /// Stop: the vCPU has nothing to do; the VM lives on.
    Park,
    /// Make a socket call (`wasmcell_abi::socket`), write its reply, then resume. The raw
    /// operation number: an unknown one is answered `EINVAL`.
    Socket(u32, SocketCall),
    /// Make a file call (`wasmcell_abi::file`), write its reply, then resume; an unknown
    /// operation is answered `EINVAL`.
    File(u32, FileCall),
    /// Stop: the workload drove one of its devices in a way no correct driver does.
    DeviceError(String),
}

/// The control device of one vCPU.
pub struct ControlDevice {
    memory: GuestMemory,
    /// Where the vCPU's messages are (its block's `message`).
    messages: u64,
}

impl ControlDevice {
    /// The device of the vCPU whose block is at `block`.
    pub fn new(memory: GuestMemory, block: u64) -> Self {
        Self { memory, messages: block + std::mem::offset_of!(VcpuBlock, message) as u64 }
    }

    /// A guest write of `data` to register `offset`. Only 32-bit writes mean anything.
    pub fn write(&mut self, offset: u16, data: &[u8]) -> ControlAction {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return ControlAction::Continue;
        };
        let value = u32::from_le_bytes(bytes);
        match offset {
            reg::EXIT => ControlAction::Exit(value),
            reg::BOOT_DONE if value == BOOT_DONE_MAGIC => ControlAction::BootDone,
            reg::PANIC => ControlAction::Panic(self.message(value)),
            reg::TRAP => ControlAction::Trap(self.message(value)),
            reg::WORKLOAD_ERROR => ControlAction::WorkloadError(self.message(value)),
            reg::WAIT if value == WAIT_FOREVER => ControlAction::Wait(None),
            reg::WAIT => ControlAction::Wait(Some(Duration::from_micros(value.into()))),
            reg::FAULT => ControlAction::Fault(value),
            reg::PARK => ControlAction::Park,
            reg::MAP_MEMORY => ControlAction::MapMemory(MapRequest::from_bytes(&self.words())),
            reg::FAULT_REPORT => ControlAction::FaultReport(FaultReport::from_bytes(&self.words())),
            socket::SOCKET => ControlAction::Socket(value, SocketCall::from_bytes(&self.words())),
            file::FILE => ControlAction::File(value, FileCall::from_bytes(&self.words())),
            _ => ControlAction::Continue,
        }
    }

    /// The start of the message buffer, where requests put their words (zeros if unreadable,
    /// which no request accepts).
    fn words<const N: usize>(&self) -> [u8; N] {
        let mut words = [0u8; N];
        let _ = self.memory.read_slice(&mut words, GuestAddress(self.messages));
        words
    }

    /// Writes a socket call's reply over its arguments (a block the guest made unwritable
    /// only loses its own reply).
    pub fn reply(&self, reply: &SocketReply) {
        let _ = self.memory.write_slice(&reply.to_bytes(), GuestAddress(self.messages));
    }

    /// Writes a file call's reply over its arguments, as [`Self::reply`].
    pub fn file_reply(&self, reply: &FileReply) {
        let _ = self.memory.write_slice(&reply.to_bytes(), GuestAddress(self.messages));
    }

    /// The first `len` bytes (capped) of the vCPU's message, as lossy UTF-8.
    fn message(&self, len: u32) -> String {
        let mut message = vec![0u8; (len as usize).min(MESSAGE_MAX)];
        match self.memory.read_slice(&mut message, GuestAddress(self.messages)) {
            Ok(()) => String::from_utf8_lossy(&message).into_owned(),
            Err(_) => String::from("(message unreadable)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 0x3_0000;
    const MESSAGES: u64 = BLOCK + std::mem::offset_of!(VcpuBlock, message) as u64;

    fn device(ram: usize) -> ControlDevice {
        ControlDevice::new(GuestMemory::from_ranges(&[(GuestAddress(0), ram)]).unwrap(), BLOCK)
    }

    fn write32(dev: &mut ControlDevice, offset: u16, value: u32) -> ControlAction {
        dev.write(offset, &value.to_le_bytes())
    }

    #[test]
    fn registers_decode_to_actions() {
        let mut dev = device(4 << 20);
        assert_eq!(write32(&mut dev, reg::EXIT, 42), ControlAction::Exit(42));
        assert_eq!(write32(&mut dev, reg::BOOT_DONE, BOOT_DONE_MAGIC), ControlAction::BootDone);
        assert_eq!(write32(&mut dev, reg::BOOT_DONE, 1), ControlAction::Continue);
        assert_eq!(write32(&mut dev, reg::WAIT, 1500), ControlAction::Wait(Some(Duration::from_micros(1500))));
        assert_eq!(write32(&mut dev, reg::WAIT, WAIT_FOREVER), ControlAction::Wait(None));
        assert_eq!(write32(&mut dev, reg::FAULT, 14), ControlAction::Fault(14));
        dev.memory.write_slice(b"unreachable", GuestAddress(MESSAGES)).unwrap();
        assert_eq!(write32(&mut dev, reg::TRAP, 11), ControlAction::Trap("unreachable".into()));
        assert_eq!(write32(&mut dev, reg::WORKLOAD_ERROR, 5), ControlAction::WorkloadError("unrea".into()));
        assert_eq!(write32(&mut dev, reg::PARK, 0), ControlAction::Park);
        assert_eq!(write32(&mut dev, 0x30, 0), ControlAction::Continue, "no register there");
        assert!(matches!(write32(&mut dev, file::FILE, 5), ControlAction::File(5, _)));
        // A byte-sized write is not a register write.
        assert_eq!(dev.write(reg::EXIT, &[3]), ControlAction::Continue);
    }

    #[test]
    fn requests_are_read_from_the_message_buffer() {
        let mut dev = device(4 << 20);
        let map = MapRequest { virt: 1 << 46, len: 0x2_0000, phys: 0x1_0020_0000 };
        dev.memory.write_slice(&map.to_bytes(), GuestAddress(MESSAGES)).unwrap();
        assert_eq!(write32(&mut dev, reg::MAP_MEMORY, 0), ControlAction::MapMemory(map));
        let fault = FaultReport { vector: 14, error_code: 4, rip: 0x40_2000, cr2: 1 << 46 };
        dev.memory.write_slice(&fault.to_bytes(), GuestAddress(MESSAGES)).unwrap();
        assert_eq!(write32(&mut dev, reg::FAULT_REPORT, 0), ControlAction::FaultReport(fault));
        // A block outside guest memory reads as zeros.
        let mut short = device(BLOCK as usize + 16);
        assert_eq!(write32(&mut short, reg::MAP_MEMORY, 0), ControlAction::MapMemory(MapRequest::default()));
    }

    #[test]
    fn socket_calls_are_read_and_replied_in_the_message_buffer() {
        let mut dev = device(4 << 20);
        let call = SocketCall { args: [3, 0x1_0000, 512, 0, 0, 0, 0, 9] };
        dev.memory.write_slice(&call.to_bytes(), GuestAddress(MESSAGES)).unwrap();
        assert_eq!(write32(&mut dev, socket::SOCKET, 7), ControlAction::Socket(7, call));
        let reply = SocketReply { result: -11, ..Default::default() };
        dev.reply(&reply);
        let mut raw = [0u8; SocketReply::SIZE];
        dev.memory.read_slice(&mut raw, GuestAddress(MESSAGES)).unwrap();
        assert_eq!(SocketReply::from_bytes(&raw), reply);
    }

    #[test]
    fn panic_message_is_read_capped_and_lossy() {
        let mut dev = device(4 << 20);
        dev.memory.write_slice(b"boom \xff!", GuestAddress(MESSAGES)).unwrap();
        assert_eq!(write32(&mut dev, reg::PANIC, 4), ControlAction::Panic("boom".into()));
        assert_eq!(write32(&mut dev, reg::PANIC, 7), ControlAction::Panic("boom \u{fffd}!".into()));
        let ControlAction::Panic(long) = write32(&mut dev, reg::PANIC, u32::MAX) else { panic!() };
        assert_eq!(long.len(), MESSAGE_MAX + 2, "capped (plus one 3-byte replacement char)");
    }

    #[test]
    fn panic_message_outside_guest_memory_is_not_read() {
        let mut dev = device(BLOCK as usize + 16);
        assert_eq!(write32(&mut dev, reg::PANIC, 16), ControlAction::Panic("(message unreadable)".into()));
    }
}
