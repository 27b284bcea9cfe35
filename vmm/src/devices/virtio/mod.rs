//! virtio devices over the virtio-mmio transport (virtio 1.2, §4.2), with split virtqueues from
//! the virtio-queue crate.
//!
//! The guest has no interrupts: it notifies a queue with an MMIO write (a VM exit), the device
//! processes the queue right there on the vCPU's thread, as much as one exit may do, and the
//! guest finds the used buffers when the exit returns. What could not be done then (output a
//! slow reader has not taken yet, input that arrives later) is done while the guest sleeps in
//! the control device's WAIT.
//!
//! Devices see only the workload's own stack and heap (`Window::device_view`), and treat every
//! ring and descriptor as hostile (`chain.rs`): a driver that points outside, loops, or
//! reconfigures a live queue ends its workload with a [`DeviceError`].

pub mod chain;
pub mod console;
pub mod mmio;

use crate::memory::GuestMemory;
use virtio_queue::Queue;

/// A driver did something no well-behaved driver does: the workload is stopped with this as its
/// outcome (`crate::Outcome::DeviceError`). Every variant names the queue or the address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("queue {queue}'s rings lie outside the workload's stack and heap")]
    RingsOutside { queue: usize },
    #[error("queue {queue}'s available ring is corrupt")]
    BadRing { queue: usize },
    #[error("a descriptor chain of queue {queue} is malformed (out of the table, looping, indirect or over 4 GiB)")]
    BadChain { queue: usize },
    #[error("a buffer of queue {queue} at {addr:#x} ({len} bytes) lies outside the workload's stack and heap")]
    BufferOutside { queue: usize, addr: u64, len: u32 },
    #[error("a buffer of queue {queue} points the wrong way for the queue")]
    WrongDirection { queue: usize },
    #[error("a batch of register writes at {addr:#x} lies outside the workload's stack and heap, is too long or notifies twice")]
    BadBatch { addr: u64 },
}

/// `VIRTIO_F_VERSION_1`: the device speaks virtio 1.x (required for virtio-mmio version 2).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// A device behind a [`mmio::MmioTransport`].
pub trait VirtioDevice {
    /// The virtio device ID (§5).
    fn device_id(&self) -> u32;
    /// Feature bits the device offers.
    fn features(&self) -> u64;
    /// Largest size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The driver notified `queue`; process what it made available (as much as one VM exit may
    /// do: the rest waits for the driver's next WAIT).
    fn queue_notify(&mut self, queue: usize, queues: &mut [Queue], memory: &GuestMemory) -> Result<(), DeviceError>;
    /// The driver reset the device: drop all queue-related state.
    fn reset(&mut self);
    /// The run is over: push out what in-process writers buffered (never blocks).
    fn flush(&mut self) {}
    /// The workload ended by itself: let late readers take its output (bounded).
    fn finish(&mut self) {}
}
