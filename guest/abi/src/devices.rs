//! Where the guest's virtio devices are and how their queues are used.

/// The virtio-console (multiport) carrying a workload's stdin, stdout and stderr. Each workload
/// has its own, at the address of its vCPU's index; a vCPU reaches no other.
pub mod console {
    /// Size of a register block.
    pub const MMIO_SIZE: u64 = 0x1000;

    /// Guest-physical base of the virtio-mmio register block of vCPU `index`'s console.
    pub const fn mmio_base(index: u32) -> u64 {
        crate::memory_map::MMIO_START + index as u64 * MMIO_SIZE
    }
    /// Ports: 0 = stdin and stdout, 1 = stderr.
    pub const PORTS: u32 = 2;
    /// Queues: receiveq/transmitq of port 0, the control pair, receiveq/transmitq of port 1.
    pub const QUEUES: usize = 6;
    /// Every queue's `QueueNumMax`. Fixed, so the driver need not read it (a VM exit).
    pub const QUEUE_MAX_SIZE: u16 = 256;
    /// A wasmcell register (outside virtio-mmio's): a 32-bit write of `low` makes the device
    /// apply a batch of register writes in one VM exit. The batch is at guest-physical
    /// `queue_address_high(heap_start) << 32 | low`, in memory the device may read (the
    /// workload's stack and heap): a `u32` count (at most [`BATCH_MAX`]), then that many
    /// `{ u32 offset, u32 value }` pairs, applied in order exactly as 32-bit writes of `value` at
    /// `offset` (a pair naming this register is skipped). A batch the device cannot read, or a
    /// longer one, ends the workload.
    pub const BATCH_REGISTER: u64 = 0x0e0;
    /// Most writes in one batch.
    pub const BATCH_MAX: u32 = 64;

    /// What the high halves of every queue address (`QueueDescHigh`, `QueueDriverHigh`,
    /// `QueueDeviceHigh`) hold after a reset, for a workload whose heap starts at `heap_start`:
    /// its window's high 32 bits, which every address in the window shares (a window is at most
    /// 3 GiB inside a 4 GiB-aligned span). The driver may skip writing a half that already
    /// holds its value (each write is a VM exit); the other queue registers reset to zero.
    pub const fn queue_address_high(heap_start: u64) -> u32 {
        (heap_start >> 32) as u32
    }
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

const _: () = assert!(console::mmio_base(crate::memory_map::MAX_VCPUS) <= crate::memory_map::MMIO_END);
