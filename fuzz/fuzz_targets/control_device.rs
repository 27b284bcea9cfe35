//! The control device's register decoding: any port write a guest can make, with any bytes in
//! the vCPU block it reads messages from, decodes to an action without panicking, and a message
//! is never longer than the cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::MESSAGE_MAX;
use wasmcell_vmm::devices::control::{ControlAction, ControlDevice};
use wasmcell_vmm::memory::GuestMemory;

const BLOCK: u64 = 0x1_0000;

fuzz_target!(|input: (u16, Vec<u8>, Vec<u8>)| {
    let (offset, data, block) = input;
    // Sometimes too small to hold the block's message: reads must fail cleanly.
    let size = 0x1_0000 + (block.len() % 2) * 0x1000;
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BLOCK), size)]).unwrap();
    let len = block.len().min(size);
    memory.write_slice(&block[..len], GuestAddress(BLOCK)).unwrap();
    let mut device = ControlDevice::new(memory, BLOCK);
    match device.write(offset % 0x40, &data[..data.len().min(8)]) {
        ControlAction::Panic(m) | ControlAction::Trap(m) | ControlAction::WorkloadError(m) => {
            // Lossy UTF-8 may widen each invalid byte to three.
            assert!(m.len() <= MESSAGE_MAX * 3, "message of {} bytes", m.len());
        }
        _ => {}
    }
});
