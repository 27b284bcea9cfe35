//! Where the guest's virtio devices are and how their queues are used.

/// The virtio-console (multiport) carrying the workload's stdin, stdout and stderr.
pub mod console {
    /// Guest-physical base of its virtio-mmio register block.
    pub const MMIO_BASE: u64 = crate::memory_map::MMIO_START;
    /// Size of the register block.
    pub const MMIO_SIZE: u64 = 0x1000;
    /// Ports: 0 = stdin and stdout, 1 = stderr.
    pub const PORTS: u32 = 2;
    /// Queues: receiveq/transmitq of port 0, the control pair, receiveq/transmitq of port 1.
    pub const QUEUES: usize = 6;
    /// Every queue's `QueueNumMax`. Fixed, so the driver need not read it (a VM exit). After a
    /// reset every queue register reads zero, so the driver may skip writing zero halves.
    pub const QUEUE_MAX_SIZE: u16 = 256;
    /// Port 0's receiveq: stdin, host → guest.
    pub const STDIN_RECEIVEQ: usize = 0;
    /// Port 0's transmitq: stdout, guest → host.
    pub const STDOUT_TRANSMITQ: usize = 1;
    /// Control receiveq: device → driver messages.
    pub const CONTROL_RECEIVEQ: usize = 2;
    /// Control transmitq: driver → device messages.
    pub const CONTROL_TRANSMITQ: usize = 3;
    /// Port 1's transmitq: stderr, guest → host.
    pub const STDERR_TRANSMITQ: usize = 5;
}
