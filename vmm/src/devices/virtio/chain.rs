//! Descriptor chains read the strict way: every descriptor of a chain the guest made available
//! is checked before a device touches any of its buffers, and anything a well-behaved driver
//! never does is a [`DeviceError`] that ends the workload, rather than something quietly
//! skipped.
//!
//! virtio-queue's own chain iterator follows indirect tables whether or not the feature was
//! negotiated (ours never is: up to 65 535 descriptors per chain) and ends a chain silently on
//! a bad index or a loop. Here a chain is at most a queue's size of descriptors, each of them
//! must lie wholly inside the memory the device may touch (the workload's own stack and heap,
//! `Window::device_view`), and each must point the way the queue carries data.

use super::DeviceError;
use crate::memory::GuestMemory;
use std::sync::atomic::Ordering;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// One buffer of a chain, checked to lie inside the device's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Which way a queue's buffers carry data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Driver → device: every descriptor device-readable (a transmit queue).
    ToDevice,
    /// Device → driver: every descriptor device-writable (a receive queue).
    FromDevice,
}

/// A chain taken off a queue's available ring: its head (to return it on the used ring) and
/// its buffers.
#[derive(Debug, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub buffers: Vec<Buffer>,
}

impl Chain {
    /// Total bytes of the chain's buffers (at most 4 GiB × the queue size).
    pub fn len(&self) -> u64 {
        self.buffers.iter().map(|b| u64::from(b.len)).sum()
    }
}

/// Takes the next available chain of queue `index` (`queue`), if there is one, and checks it.
pub fn pop(
    queue: &mut Queue,
    index: usize,
    memory: &GuestMemory,
    direction: Direction,
) -> Result<Option<Chain>, DeviceError> {
    if !queue.ready() {
        return Ok(None);
    }
    let avail = queue.avail_idx(memory, Ordering::Acquire).map_err(|_| DeviceError::BadRing { queue: index })?;
    match avail.0.wrapping_sub(queue.next_avail()) {
        0 => return Ok(None),
        // An avail index more than a queue's size ahead of the device: a broken ring.
        pending if pending > queue.size() => return Err(DeviceError::BadRing { queue: index }),
        _ => {}
    }
    let head = queue.pop_descriptor_chain(memory).ok_or(DeviceError::BadRing { queue: index })?.head_index();
    let buffers = walk(memory, queue.desc_table(), queue.size(), head, index, direction)?;
    Ok(Some(Chain { head, buffers }))
}

/// The buffers of the chain starting at descriptor `head` of the table at `table` (of `size`
/// entries).
pub fn walk(
    memory: &GuestMemory,
    table: u64,
    size: u16,
    head: u16,
    queue: usize,
    direction: Direction,
) -> Result<Vec<Buffer>, DeviceError> {
    let mut buffers = Vec::new();
    let mut index = head;
    let mut total = 0u64;
    loop {
        if index >= size || buffers.len() >= usize::from(size) {
            // Out of the table, or more descriptors than the table holds: a loop.
            return Err(DeviceError::BadChain { queue });
        }
        let at = GuestAddress(table).checked_add(u64::from(index) * 16).ok_or(DeviceError::BadChain { queue })?;
        let desc: Descriptor = memory.read_obj(at).map_err(|_| DeviceError::BadChain { queue })?;
        let flags = desc.flags();
        if flags & F_INDIRECT != 0 {
            return Err(DeviceError::BadChain { queue });
        }
        let writable = flags & F_WRITE != 0;
        if writable != (direction == Direction::FromDevice) {
            return Err(DeviceError::WrongDirection { queue });
        }
        let buffer = Buffer { addr: desc.addr(), len: desc.len() };
        if buffer.len > 0 && !inside(memory, buffer) {
            return Err(DeviceError::BufferOutside { queue, addr: buffer.addr.0, len: buffer.len });
        }
        total += u64::from(buffer.len);
        if total > u64::from(u32::MAX) {
            // virtio 1.2 §2.7.5.2: a chain is at most 4 GiB.
            return Err(DeviceError::BadChain { queue });
        }
        buffers.push(buffer);
        if flags & F_NEXT == 0 {
            return Ok(buffers);
        }
        index = desc.next();
    }
}

/// Whether all of `buffer` lies in one region of `memory`.
fn inside(memory: &GuestMemory, buffer: Buffer) -> bool {
    let last = buffer.addr.checked_add(u64::from(buffer.len) - 1);
    match (memory.find_region(buffer.addr), last.and_then(|l| memory.find_region(l))) {
        (Some(first), Some(end)) => std::ptr::eq(first, end),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags, next))
    }

    fn first_chain(descs: &[RawDescriptor], direction: Direction) -> Result<Option<Chain>, DeviceError> {
        let memory = memory();
        let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
        mock.add_desc_chains(descs, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        pop(&mut queue, 1, &memory, direction)
    }

    #[test]
    fn a_well_formed_chain_gives_its_buffers() {
        let chain = first_chain(&[desc(0x8_0000, 7, F_NEXT, 1), desc(0x9_0000, 9, 0, 0)], Direction::ToDevice);
        let chain = chain.unwrap().unwrap();
        assert_eq!(chain.head, 0);
        assert_eq!(
            chain.buffers,
            [Buffer { addr: GuestAddress(0x8_0000), len: 7 }, Buffer { addr: GuestAddress(0x9_0000), len: 9 }]
        );
        assert_eq!(chain.len(), 16);
    }

    #[test]
    fn hostile_chains_are_errors_naming_the_queue() {
        let outside = first_chain(&[desc(0xf_f000, 0x2000, 0, 0)], Direction::ToDevice);
        assert!(
            matches!(outside, Err(DeviceError::BufferOutside { queue: 1, addr: 0xf_f000, len: 0x2000 })),
            "{outside:?}"
        );
        let huge = first_chain(&[desc(0x8_0000, u32::MAX, 0, 0)], Direction::ToDevice);
        assert!(matches!(huge, Err(DeviceError::BufferOutside { .. })), "{huge:?}");
        let indirect = first_chain(&[desc(0x8_0000, 16 * 4, F_INDIRECT, 0)], Direction::ToDevice);
        assert!(matches!(indirect, Err(DeviceError::BadChain { queue: 1 })), "{indirect:?}");
        let writable = first_chain(&[desc(0x8_0000, 8, F_WRITE, 0)], Direction::ToDevice);
        assert!(matches!(writable, Err(DeviceError::WrongDirection { queue: 1 })), "{writable:?}");
        let readable = first_chain(&[desc(0x8_0000, 8, 0, 0)], Direction::FromDevice);
        assert!(matches!(readable, Err(DeviceError::WrongDirection { .. })), "{readable:?}");
        let out_of_table = first_chain(&[desc(0x8_0000, 8, F_NEXT, 200)], Direction::ToDevice);
        assert!(matches!(out_of_table, Err(DeviceError::BadChain { .. })), "{out_of_table:?}");
    }

    #[test]
    fn a_looping_chain_ends_after_a_table_of_descriptors() {
        let memory = memory();
        let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
        mock.add_desc_chains(&[desc(0x8_0000, 8, F_NEXT, 1), desc(0x8_0000, 8, F_NEXT, 0)], 0).unwrap();
        let queue: Queue = mock.create_queue().unwrap();
        let walked = walk(&memory, queue.desc_table(), queue.size(), 0, 3, Direction::ToDevice);
        assert!(matches!(walked, Err(DeviceError::BadChain { queue: 3 })), "{walked:?}");
    }

    #[test]
    fn a_runaway_avail_index_is_a_broken_ring() {
        let memory = memory();
        let mock = MockSplitQueue::create(&memory, GuestAddress(0), 16);
        mock.avail().idx().store(u16::to_le(1000));
        let mut queue: Queue = mock.create_queue().unwrap();
        let popped = pop(&mut queue, 0, &memory, Direction::ToDevice);
        assert!(matches!(popped, Err(DeviceError::BadRing { queue: 0 })), "{popped:?}");
    }
}
