//! The virtio-console over virtio-mmio, driven by a fuzzed driver: register writes and reads,
//! notifies, and guest writes into the device's memory (rings, descriptors, buffers) between
//! them, plus the VMM resuming output while the guest waits and draining batched output on its
//! timer. Whatever the driver does, one
//! register access (or one resume) sends at most a budget's bytes, the control messages waiting
//! for the driver stay bounded, and nothing panics.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_vmm::devices::virtio::console::transmit::Budget;
use wasmcell_vmm::devices::virtio::console::{Console, Input, Output, MAX_PENDING};
use wasmcell_vmm::devices::virtio::mmio::MmioTransport;
use wasmcell_vmm::memory::GuestMemory;

/// The device's memory: 64 KiB at 64 KiB, as if that were a workload's stack and heap.
const BASE: u64 = 0x1_0000;
const SIZE: usize = 0x1_0000;

#[derive(Arbitrary, Debug)]
enum Op {
    /// A 32-bit register write (offsets the transport decodes, and others).
    Write {
        register: u8,
        value: u32,
    },
    /// A write of another width.
    WriteBytes {
        register: u8,
        bytes: Vec<u8>,
    },
    Read {
        register: u8,
        len: u8,
    },
    /// The guest writes its memory (`at` is an offset into the device's memory, wrapped).
    Poke {
        at: u16,
        bytes: Vec<u8>,
    },
    /// A descriptor, the usual way to aim buffers anywhere: table slot, address, length, flags.
    Descriptor {
        table: u16,
        slot: u8,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    },
    /// The VMM resumes output while the guest waits.
    Resume,
    /// A tick of the vCPU thread's drain timer (batched output).
    Tick,
    /// The vCPU waits: output goes back to notifies.
    StopBatching,
}

/// Counts bytes, as stdout or stderr.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
    let (stdout, stderr) = (Counter::default(), Counter::default());
    let console =
        Console::new(Input::Empty, Output::writer(Box::new(stdout.clone())), Output::writer(Box::new(stderr.clone())));
    let mut transport = MmioTransport::new(console, memory.clone(), 0);
    let sent = || stdout.0.load(Ordering::Relaxed) + stderr.0.load(Ordering::Relaxed);
    for op in ops.into_iter().take(256) {
        let before = sent();
        let ended = match op {
            Op::Write { register, value } => transport.write(u64::from(register) * 4, &value.to_le_bytes()).is_err(),
            Op::WriteBytes { register, bytes } => {
                transport.write(u64::from(register) * 4, &bytes[..bytes.len().min(8)]).is_err()
            }
            Op::Read { register, len } => {
                let mut data = vec![0u8; usize::from(len % 9)];
                transport.read(u64::from(register) * 4, &mut data);
                false
            }
            Op::Poke { at, bytes } => {
                let at = BASE + u64::from(at);
                let len = bytes.len().min((BASE + SIZE as u64 - at) as usize);
                memory.write_slice(&bytes[..len], GuestAddress(at)).unwrap();
                false
            }
            Op::Descriptor { table, slot, addr, len, flags, next } => {
                let at = BASE + u64::from(table & 0xfff0) + u64::from(slot % 16) * 16;
                let mut desc = [0u8; 16];
                desc[0..8].copy_from_slice(&addr.to_le_bytes());
                desc[8..12].copy_from_slice(&len.to_le_bytes());
                desc[12..14].copy_from_slice(&flags.to_le_bytes());
                desc[14..16].copy_from_slice(&next.to_le_bytes());
                if at + 16 <= BASE + SIZE as u64 {
                    memory.write_slice(&desc, GuestAddress(at)).unwrap();
                }
                false
            }
            Op::Resume => {
                let (console, queues, memory) = transport.device_and_queues();
                console.resume_output(queues, memory).is_err()
            }
            Op::Tick => {
                let (console, queues, memory) = transport.device_and_queues();
                console.tick_output(queues, memory).is_err()
            }
            Op::StopBatching => {
                let (console, queues, memory) = transport.device_and_queues();
                console.stop_batching(queues, memory).is_err()
            }
        };
        assert!(sent() - before <= Budget::PER_EXIT.bytes, "more than a budget in one exit");
        assert!(transport.device_and_queues().0.pending_messages() <= MAX_PENDING);
        if ended {
            // A device error ends the workload: nothing more happens to this device.
            return;
        }
    }
});
