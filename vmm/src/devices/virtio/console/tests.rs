//! The console device against descriptor tables a hostile guest could write: every case must
//! end promptly, allocate nothing the guest sized, and touch only guest memory.

use super::*;
use crate::devices::virtio::VirtioDevice;
use crate::test_utils::Capture;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;

const NEXT: u16 = 1;
const MEMORY: u64 = 1 << 20;
/// Where test data lives, clear of the rings at the bottom of memory.
const DATA: u64 = 0x8_0000;

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY as usize)]).unwrap()
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// Notifies the stdout transmitq after `setup` filled it; returns what reached stdout and the
/// used ring's index.
fn notify_stdout(memory: &GuestMemory, setup: impl FnOnce(&MockSplitQueue<'_, GuestMemory>)) -> (Vec<u8>, u16) {
    let mock = MockSplitQueue::create(memory, GuestAddress(0), 16);
    setup(&mock);
    let stdout = Capture::default();
    let mut console = Console::new(Input::Empty, Box::new(stdout.clone()), Box::new(std::io::sink()));
    let mut queues: Vec<Queue> = (0..QUEUES).map(|_| Queue::new(QUEUE_MAX_SIZE).unwrap()).collect();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, memory);
    let written = stdout.contents();
    (written, mock.used().idx().load())
}

#[test]
fn a_chain_of_buffers_reaches_stdout_in_order() {
    let memory = memory();
    memory.write_slice(b"hello, ", GuestAddress(DATA)).unwrap();
    memory.write_slice(b"world\n", GuestAddress(DATA + 0x100)).unwrap();
    let (out, used) = notify_stdout(&memory, |mock| {
        mock.add_desc_chains(&[desc(DATA, 7, NEXT, 1), desc(DATA + 0x100, 6, 0, 0)], 0).unwrap();
    });
    assert_eq!((out.as_slice(), used), (&b"hello, world\n"[..], 1));
}

#[test]
fn a_buffer_claiming_4_gib_is_read_in_bounded_chunks_up_to_the_end_of_memory() {
    let memory = memory();
    let start = MEMORY - 3 * 16 * 1024;
    let (out, used) = notify_stdout(&memory, |mock| mock.add_desc_chains(&[desc(start, u32::MAX, 0, 0)], 0).unwrap());
    assert_eq!(out.len(), 3 * 16 * 1024, "stops at the end of guest memory");
    assert_eq!(used, 1, "the buffer is still given back");
}

#[test]
fn buffers_outside_guest_memory_write_nothing() {
    let memory = memory();
    let (out, used) = notify_stdout(&memory, |mock| {
        mock.add_desc_chains(&[desc(u64::MAX - 8, 64, 0, 0)], 0).unwrap();
        mock.add_desc_chains(&[desc(MEMORY + 4096, 64, 0, 0)], 1).unwrap();
    });
    assert!(out.is_empty());
    assert_eq!(used, 2);
}

#[test]
fn a_looping_chain_ends() {
    let memory = memory();
    memory.write_slice(b"loop", GuestAddress(DATA)).unwrap();
    let (out, used) = notify_stdout(&memory, |mock| mock.add_desc_chains(&[desc(DATA, 4, NEXT, 0)], 0).unwrap());
    assert!(out.len() <= 16 * 4, "at most one pass per queue entry: {} bytes", out.len());
    assert_eq!(used, 1);
}

#[test]
fn an_available_index_far_ahead_of_the_ring_is_refused() {
    let memory = memory();
    memory.write_slice(b"x", GuestAddress(DATA)).unwrap();
    let (out, used) = notify_stdout(&memory, |mock| {
        mock.add_desc_chains(&[desc(DATA, 1, 0, 0)], 0).unwrap();
        mock.avail().idx().store(1000);
    });
    assert!(out.is_empty());
    assert_eq!(used, 0);
}

#[test]
fn short_or_unknown_control_messages_are_ignored() {
    let memory = memory();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
    memory.write_slice(&[0xff; 8], GuestAddress(DATA)).unwrap();
    mock.add_desc_chains(&[desc(DATA, 3, 0, 0)], 0).unwrap();
    mock.add_desc_chains(&[desc(DATA, 8, 0, 0)], 1).unwrap();
    let mut console = Console::new(Input::Empty, Box::new(std::io::sink()), Box::new(std::io::sink()));
    let mut queues: Vec<Queue> = (0..QUEUES).map(|_| Queue::new(QUEUE_MAX_SIZE).unwrap()).collect();
    queues[CONTROL_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(CONTROL_TRANSMITQ, &mut queues, &memory);
    assert!(console.pending.is_empty(), "nothing to answer");
    assert_eq!(mock.used().idx().load(), 2);
}
