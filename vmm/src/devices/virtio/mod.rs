//! virtio devices over the virtio-mmio transport (virtio 1.2, §4.2), with split virtqueues from
//! the virtio-queue crate.
//!
//! The guest has no interrupts: it notifies a queue with an MMIO write (a VM exit), the device
//! processes the queue right there on the vCPU's thread, and the guest finds the used buffers
//! when the exit returns. Input that arrives later (stdin) is delivered while the guest sleeps in
//! the control device's WAIT.

pub mod console;
pub mod mmio;

use crate::memory::GuestMemory;
use virtio_queue::Queue;

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
    /// The driver notified `queue`; process what it made available.
    fn queue_notify(&mut self, queue: usize, queues: &mut [Queue], memory: &GuestMemory);
    /// The driver reset the device: drop all queue-related state.
    fn reset(&mut self);
}
