//! The control device's register map.
//!
//! On x86-64 the registers are I/O ports at [`X86_PORT_BASE`] + offset, written with a 32-bit
//! `out` from CPL 3 (the guest runs with IOPL = 3); on aarch64 they are MMIO at
//! [`AARCH64_CONTROL_PAGE`] + offset, written with a 32-bit `str` from EL0. Each write is one VM exit, handled by the
//! VMM on the vCPU's own thread, and concerns that vCPU: an EXIT ends the vCPU's workload (and
//! the VM when it is the VM's only work). Arguments that do not fit in 32 bits live in the
//! vCPU's block (`crate::vcpu::VcpuBlock`).

/// First I/O port of the control device on x86-64.
pub const X86_PORT_BASE: u16 = 0x0510;
/// Number of I/O ports the control device decodes on x86-64.
pub const X86_PORT_COUNT: u16 = 0x40;

/// Guest-physical (and virtual) page of the control device's registers on aarch64, which has
/// no port I/O: a 32-bit `str` at this page + offset, from EL0, is one MMIO exit. The last page
/// of the MMIO window, mapped device memory, user read-write, in every address space.
pub const AARCH64_CONTROL_PAGE: u64 = crate::memory_map::MMIO_END - crate::memory_map::PAGE_SIZE;
/// Guest-physical page of the boot console (a 16550's registers, one byte per `strb`) on
/// aarch64, just below the control page; on x86-64 it is COM1's ports.
pub const AARCH64_SERIAL_PAGE: u64 = AARCH64_CONTROL_PAGE - crate::memory_map::PAGE_SIZE;

/// Write the exit code (`u32`). The vCPU stops; codes 0–255 are the workload's,
/// [`crate::exit`] lists the kernel's.
pub const EXIT: u16 = 0x00;
/// Write [`BOOT_DONE_MAGIC`] when the guest is ready to run its workload. The VMM records the
/// time (the boot-time figure). Any other value is ignored.
pub const BOOT_DONE: u16 = 0x04;
/// Write the length of a panic message already placed in the vCPU block's `message`. The vCPU
/// stops with a guest-panic outcome.
pub const PANIC: u16 = 0x08;
/// Write a timeout in microseconds ([`WAIT_FOREVER`] for none). The vCPU sleeps in the VMM
/// until an event is pending for the guest or the timeout passes, instead of spinning.
pub const WAIT: u16 = 0x0c;
/// Written by the CPL 0 exception stubs only: the vector number. The VMM reads the fault
/// frame from the vCPU and stops it with a guest-fault outcome.
pub const FAULT: u16 = 0x10;
/// Write the length of a trap report (message and Wasm backtrace) placed in
/// the vCPU block's `message`. The vCPU stops with a trap outcome.
pub const TRAP: u16 = 0x14;
/// Write the length of a message placed in the vCPU block's `message` saying why the workload
/// could not start (unknown import, no `_start`, …). The vCPU stops with a workload-error outcome.
pub const WORKLOAD_ERROR: u16 = 0x18;

/// Written by a vCPU with nothing (more) to do, value ignored: the VMM stops running it and the
/// VM lives on (a pod's boot vCPU, once the kernel is up).
pub const PARK: u16 = 0x1c;

/// Write 0 after placing a [`MapRequest`] in the vCPU block's `message`: the VMM maps the pages
/// it names into the vCPU's address space (user read-write, no-execute) and resumes it. This is
/// how a guarded linear memory grows: the guest cannot write page tables. A request the VMM
/// refuses (outside the workload's heap or its guarded spans, already mapped) stops the vCPU.
pub const MAP_MEMORY: u16 = 0x20;
/// Write 0 after placing a [`FaultReport`] in the vCPU block's `message`: a fault the CPL 0 stub
/// sent to the guest's trap entry was not a Wasm trap. The vCPU stops with a guest-fault outcome
/// (the report is the guest's word, used for the message only).
pub const FAULT_REPORT: u16 = 0x24;

/// The value that marks the end of boot on [`BOOT_DONE`].
pub const BOOT_DONE_MAGIC: u32 = 0xb007_d0e5;
/// [`WAIT`] value meaning "until an event arrives".
pub const WAIT_FOREVER: u32 = u32::MAX;

/// Bytes of message the VMM reads at most.
pub const MESSAGE_MAX: usize = 3072;

/// [`MAP_MEMORY`]'s arguments: map `len` bytes of guest-virtual memory at `virt` to the
/// guest-physical pages from `phys` on. All three page aligned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapRequest {
    pub virt: u64,
    pub len: u64,
    pub phys: u64,
}

/// [`FAULT_REPORT`]'s arguments: the fault as the CPU described it to the CPL 0 stub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultReport {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cr2: u64,
}

/// The `i`th little-endian `u64` of `bytes` (both requests are words in the block's `message`).
fn word(bytes: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(word)
}

fn put_words(bytes: &mut [u8], words: &[u64]) {
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
}

impl MapRequest {
    pub const SIZE: usize = 24;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        put_words(&mut bytes, &[self.virt, self.len, self.phys]);
        bytes
    }

    pub fn from_bytes(raw: &[u8; Self::SIZE]) -> Self {
        Self { virt: word(raw, 0), len: word(raw, 1), phys: word(raw, 2) }
    }
}

impl FaultReport {
    pub const SIZE: usize = 32;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        put_words(&mut bytes, &[self.vector, self.error_code, self.rip, self.cr2]);
        bytes
    }

    pub fn from_bytes(raw: &[u8; Self::SIZE]) -> Self {
        Self { vector: word(raw, 0), error_code: word(raw, 1), rip: word(raw, 2), cr2: word(raw, 3) }
    }
}

const _: () = assert!(FAULT_REPORT + 4 <= X86_PORT_COUNT);
const _: () = assert!(MapRequest::SIZE <= MESSAGE_MAX && FaultReport::SIZE <= MESSAGE_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_their_bytes() {
        let map = MapRequest { virt: 0x4000_0000_0000, len: 0x1_0000, phys: 0x1_0040_0000 };
        assert_eq!(MapRequest::from_bytes(&map.to_bytes()), map);
        let fault = FaultReport { vector: 14, error_code: 6, rip: 0x40_1234, cr2: 0xdead_0000 };
        assert_eq!(FaultReport::from_bytes(&fault.to_bytes()), fault);
        assert_eq!(&fault.to_bytes()[..8], &14u64.to_le_bytes());
    }
}
