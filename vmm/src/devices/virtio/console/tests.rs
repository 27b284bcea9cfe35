//! The console device against descriptor tables a hostile guest could write: every case must
//! end promptly, allocate nothing the guest sized, and touch only guest memory.

use super::*;
use crate::devices::virtio::VirtioDevice;
use crate::test_utils::Capture;
use std::os::fd::{FromRawFd, OwnedFd};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;

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

fn queues() -> Vec<Queue> {
    (0..QUEUES).map(|_| Queue::new(QUEUE_MAX_SIZE).unwrap()).collect()
}

fn console_to(stdout: Output) -> Console {
    Console::new(Input::Empty, stdout, Output::null())
}

/// Notifies the stdout transmitq after `setup` filled it; returns what reached stdout, the used
/// ring's index, and the device's verdict.
fn notify_stdout(
    memory: &GuestMemory,
    setup: impl FnOnce(&MockSplitQueue<'_, GuestMemory>),
) -> (Vec<u8>, u16, Result<(), DeviceError>) {
    let mock = MockSplitQueue::create(memory, GuestAddress(0), 16);
    setup(&mock);
    let stdout = Capture::default();
    let mut console = console_to(Output::writer(Box::new(stdout.clone())));
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    let verdict = console.queue_notify(STDOUT_TRANSMITQ, &mut queues, memory);
    (stdout.contents(), mock.used().idx().load(), verdict)
}

#[test]
fn a_chain_of_buffers_reaches_stdout_in_order() {
    let memory = memory();
    memory.write_slice(b"hello, ", GuestAddress(DATA)).unwrap();
    memory.write_slice(b"world\n", GuestAddress(DATA + 0x100)).unwrap();
    let (out, used, verdict) = notify_stdout(&memory, |mock| {
        mock.add_desc_chains(&[desc(DATA, 7, NEXT, 1), desc(DATA + 0x100, 6, 0, 0)], 0).unwrap();
    });
    assert_eq!((out.as_slice(), used, verdict), (&b"hello, world\n"[..], 1, Ok(())));
}

#[test]
fn a_buffer_reaching_past_the_device_memory_ends_the_workload() {
    let memory = memory();
    let start = MEMORY - 3 * 16 * 1024;
    let (out, used, verdict) =
        notify_stdout(&memory, |mock| mock.add_desc_chains(&[desc(start, u32::MAX, 0, 0)], 0).unwrap());
    assert!(out.is_empty(), "nothing of it is read");
    assert_eq!(used, 0);
    assert_eq!(verdict, Err(DeviceError::BufferOutside { queue: STDOUT_TRANSMITQ, addr: start, len: u32::MAX }));
}

#[test]
fn buffers_outside_the_device_memory_end_the_workload() {
    let memory = memory();
    for addr in [u64::MAX - 8, MEMORY + 4096] {
        let (out, used, verdict) =
            notify_stdout(&memory, |mock| mock.add_desc_chains(&[desc(addr, 64, 0, 0)], 0).unwrap());
        assert!(out.is_empty() && used == 0);
        assert!(matches!(verdict, Err(DeviceError::BufferOutside { .. })), "{verdict:?}");
    }
}

#[test]
fn a_looping_chain_ends_the_workload() {
    let memory = memory();
    memory.write_slice(b"loop", GuestAddress(DATA)).unwrap();
    let (out, used, verdict) =
        notify_stdout(&memory, |mock| mock.add_desc_chains(&[desc(DATA, 4, NEXT, 0)], 0).unwrap());
    assert!(out.is_empty() && used == 0);
    assert_eq!(verdict, Err(DeviceError::BadChain { queue: STDOUT_TRANSMITQ }));
}

#[test]
fn an_available_index_far_ahead_of_the_ring_ends_the_workload() {
    let memory = memory();
    memory.write_slice(b"x", GuestAddress(DATA)).unwrap();
    let (out, used, verdict) = notify_stdout(&memory, |mock| {
        mock.add_desc_chains(&[desc(DATA, 1, 0, 0)], 0).unwrap();
        mock.avail().idx().store(1000);
    });
    assert!(out.is_empty() && used == 0);
    assert_eq!(verdict, Err(DeviceError::BadRing { queue: STDOUT_TRANSMITQ }));
}

#[test]
fn one_exit_sends_at_most_its_budget_and_the_wait_sends_the_rest() {
    // 16 chains of 1 MiB each, all pointing at the same bytes (aliasing is allowed).
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
    memory.write_slice(&[b'x'; 1 << 20], GuestAddress(1 << 20)).unwrap();
    for i in 0..16 {
        mock.add_desc_chains(&[desc(1 << 20, 1 << 20, 0, 0)], i).unwrap();
    }
    let stdout = Capture::default();
    let mut console = console_to(Output::writer(Box::new(stdout.clone())));
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, &memory).unwrap();
    assert_eq!(stdout.contents().len(), 1 << 20, "one exit: one budget");
    assert!(console.output_pending(&queues, &memory));
    let mut slices = 0;
    while console.output_pending(&queues, &memory) {
        let progress = console.resume_output(&mut queues, &memory).unwrap();
        assert!(progress.completed || progress.more);
        slices += 1;
        assert!(slices <= 16, "each slice makes progress");
    }
    assert_eq!(stdout.contents().len(), 16 << 20);
    assert_eq!(mock.used().idx().load(), 16);
}

#[test]
fn a_stalled_reader_never_blocks_the_device() {
    let memory = memory();
    memory.write_slice(&[b'y'; 64 * 1024], GuestAddress(DATA)).unwrap();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
    for i in 0..8 {
        mock.add_desc_chains(&[desc(DATA, 64 * 1024, 0, 0)], i).unwrap();
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds `pipe2` writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here.
    let (mut reader, writer) = unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut console = console_to(Output::from_fd(writer));
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    // 512 KiB queued into a 64 KiB pipe that nobody reads: the notify returns.
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, &memory).unwrap();
    let progress = console.resume_output(&mut queues, &memory).unwrap();
    assert!(!progress.more && progress.blocked[0].is_some(), "{progress:?}");
    // The reader catches up: everything arrives, in order, each chain given back once.
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while received.len() < 8 * 64 * 1024 {
        let n = std::io::Read::read(&mut reader, &mut buf).unwrap();
        received.extend_from_slice(&buf[..n]);
        console.resume_output(&mut queues, &memory).unwrap();
    }
    assert!(received.iter().all(|&b| b == b'y'));
    assert_eq!(mock.used().idx().load(), 8);
    assert!(!console.output_pending(&queues, &memory));
}

#[test]
fn short_or_unknown_control_messages_are_ignored() {
    let memory = memory();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
    memory.write_slice(&[0xff; 8], GuestAddress(DATA)).unwrap();
    mock.add_desc_chains(&[desc(DATA, 3, 0, 0)], 0).unwrap();
    mock.add_desc_chains(&[desc(DATA, 8, 0, 0)], 1).unwrap();
    let mut console = console_to(Output::null());
    let mut queues = queues();
    queues[CONTROL_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(CONTROL_TRANSMITQ, &mut queues, &memory).unwrap();
    assert_eq!(console.pending_messages(), 0, "nothing to answer");
    assert_eq!(mock.used().idx().load(), 2);
}

#[test]
fn a_flood_of_device_ready_messages_queues_one_answer() {
    let memory = memory();
    let mut console = console_to(Output::null());
    let ready = ControlMessage::new(u32::MAX, DEVICE_READY, 1).to_bytes();
    memory.write_slice(&ready, GuestAddress(DATA)).unwrap();
    // Rounds of a full queue of DEVICE_READY (rings set up afresh each round, as a driver
    // resetting its queue would), never a receive buffer posted.
    let mut queues = queues();
    for _ in 0..1000 {
        let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
        for i in 0..16 {
            mock.add_desc_chains(&[desc(DATA, 8, 0, 0)], i).unwrap();
        }
        queues[CONTROL_TRANSMITQ] = mock.create_queue().unwrap();
        console.queue_notify(CONTROL_TRANSMITQ, &mut queues, &memory).unwrap();
        assert_eq!(mock.used().idx().load(), 16, "every message was taken");
        assert!(console.pending_messages() <= MAX_PENDING);
    }
    assert_eq!(console.pending_messages(), PORTS as usize, "one DEVICE_ADD per port");
}

/// The used ring's flags (`VRING_USED_F_NO_NOTIFY` = 1: the driver need not notify).
fn used_flags(memory: &GuestMemory, mock: &MockSplitQueue<'_, GuestMemory>) -> u16 {
    // The mock's `start` is where the ring's elements begin, after `flags` and `idx`.
    memory.read_obj::<u16>(GuestAddress(mock.used().start().0 - 4)).unwrap()
}

/// A console whose stdout queue has taken one notify (of the first of `bytes`, one byte a
/// chain), and a second chain queued after it without one; what reached stdout is captured.
fn notified_then_queued<'a>(
    memory: &'a GuestMemory,
    bytes: &[u8; 2],
) -> (MockSplitQueue<'a, GuestMemory>, Console, Vec<Queue>, Capture) {
    memory.write_slice(bytes, GuestAddress(DATA)).unwrap();
    let mock = MockSplitQueue::create(memory, GuestAddress(0), 16);
    mock.add_desc_chains(&[desc(DATA, 1, 0, 0)], 0).unwrap();
    let stdout = Capture::default();
    let mut console = console_to(Output::writer(Box::new(stdout.clone())));
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, memory).unwrap();
    mock.add_desc_chains(&[desc(DATA + 1, 1, 0, 0)], 1).unwrap();
    (mock, console, queues, stdout)
}

#[test]
fn after_a_notify_that_drained_the_queue_output_is_batched_until_a_tick_finds_nothing() {
    let memory = memory();
    let (mock, mut console, mut queues, stdout) = notified_then_queued(&memory, b"ab");
    assert!(console.batching());
    assert_eq!(used_flags(&memory, &mock), 1, "the driver is told not to notify");
    // Queued without a notify: the next tick sends it.
    assert!(console.tick_output(&mut queues, &memory).unwrap());
    assert_eq!((stdout.contents().as_slice(), mock.used().idx().load()), (&b"ab"[..], 2));
    // A tick with nothing to send asks for notifies again and ends the batching.
    assert!(!console.tick_output(&mut queues, &memory).unwrap());
    assert!(!console.batching());
    assert_eq!(used_flags(&memory, &mock), 0);
}

#[test]
fn a_wait_ends_the_batching_and_a_chain_queued_meanwhile_is_still_sent() {
    let memory = memory();
    let (mock, mut console, mut queues, stdout) = notified_then_queued(&memory, b"xy");
    console.stop_batching(&mut queues, &memory).unwrap();
    assert!(!console.batching());
    assert_eq!(used_flags(&memory, &mock), 0);
    // The wait's resume drains what the driver queued before it saw the flag cleared.
    assert!(console.output_pending(&queues, &memory));
    assert!(console.resume_output(&mut queues, &memory).unwrap().completed);
    assert_eq!(stdout.contents(), b"xy");
}

#[test]
fn a_notify_that_could_not_send_everything_keeps_notifies_on() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds `pipe2` writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here.
    let (_reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let stdout = Output::from_fd(writer);
    let memory = memory();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
    // 256 KiB into a 64 KiB pipe nobody reads.
    mock.add_desc_chains(&[desc(DATA, 256 * 1024, 0, 0)], 0).unwrap();
    let mut console = console_to(stdout);
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, &memory).unwrap();
    assert!(!console.batching());
    assert_eq!(used_flags(&memory, &mock), 0);
}

/// A writer that takes at most `max` bytes a call and counts its calls.
#[derive(Clone, Default)]
struct Stingy {
    max: usize,
    taken: std::sync::Arc<std::sync::Mutex<(Vec<u8>, usize)>>,
}

impl std::io::Write for Stingy {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut taken = self.taken.lock().unwrap();
        let n = bytes.len().min(self.max);
        taken.0.extend_from_slice(&bytes[..n]);
        taken.1 += 1;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Twelve chains, one of them empty and one of three buffers, queued at once.
fn twelve_chains(memory: &GuestMemory, mock: &MockSplitQueue<'_, GuestMemory>) -> Vec<u8> {
    let mut expected = Vec::new();
    for i in 0..12u16 {
        let at = DATA + u64::from(i) * 0x100;
        let text = format!("chain {i:02};");
        memory.write_slice(text.as_bytes(), GuestAddress(at)).unwrap();
        let len = text.len() as u32;
        match i {
            4 => mock.add_desc_chains(&[desc(at, 0, 0, 0)], i * 3).unwrap(),
            7 => {
                let (second, third) = (i * 3 + 1, i * 3 + 2);
                let chain = [desc(at, 3, NEXT, second), desc(at + 3, 0, NEXT, third), desc(at + 3, len - 3, 0, 0)];
                mock.add_desc_chains(&chain, i * 3).unwrap();
                expected.extend_from_slice(text.as_bytes());
            }
            _ => {
                mock.add_desc_chains(&[desc(at, len, 0, 0)], i * 3).unwrap();
                expected.extend_from_slice(text.as_bytes());
            }
        }
    }
    expected
}

#[test]
fn chains_queued_together_go_out_in_one_write_in_order() {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY as usize)]).unwrap();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 64);
    let expected = twelve_chains(&memory, &mock);
    let out = Stingy { max: usize::MAX, ..Default::default() };
    let mut console = console_to(Output::writer(Box::new(out.clone())));
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, &memory).unwrap();
    let (bytes, writes) = out.taken.lock().unwrap().clone();
    assert_eq!(String::from_utf8(bytes).unwrap(), String::from_utf8(expected).unwrap());
    assert_eq!(writes, 1, "one write for all twelve chains");
    assert_eq!(mock.used().idx().load(), 12, "every chain given back, the empty one too");
}

#[test]
fn a_chain_is_given_back_only_once_all_of_it_was_taken() {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY as usize)]).unwrap();
    let mock = MockSplitQueue::create(&memory, GuestAddress(0), 64);
    let expected = twelve_chains(&memory, &mock);
    // Five bytes a call: every chain (nine bytes) straddles two or three writes.
    let out = Stingy { max: 5, ..Default::default() };
    let mut console = console_to(Output::writer(Box::new(out.clone())));
    let mut queues = queues();
    queues[STDOUT_TRANSMITQ] = mock.create_queue().unwrap();
    console.queue_notify(STDOUT_TRANSMITQ, &mut queues, &memory).unwrap();
    let (bytes, writes) = out.taken.lock().unwrap().clone();
    assert_eq!(bytes, expected, "in order, nothing twice");
    assert_eq!(writes, expected.len().div_ceil(5));
    assert_eq!(mock.used().idx().load(), 12);
    // Used entries in ring order: chain heads 0, 3, 6, …
    for i in 0..12u16 {
        assert_eq!(mock.used().ring().ref_at(usize::from(i)).unwrap().load().id(), u32::from(i * 3));
    }
}
