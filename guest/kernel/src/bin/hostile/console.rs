//! Just enough of a virtio-mmio console driver to aim it anywhere: rings and buffers at
//! addresses the attack picks: rings written with plain volatile stores, registers with the
//! architecture's MMIO store (`arch::mmio_write32`).

use wasmcell_abi::devices::console::{BATCH_REGISTER, CONTROL_TRANSMITQ, STDOUT_TRANSMITQ};

const STATUS: usize = 0x070;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SELECT: usize = 0x024;
const QUEUE_SELECT: usize = 0x030;
const QUEUE_SIZE: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const DESC: usize = 0x080;
const AVAIL: usize = 0x090;
const USED: usize = 0x0a0;

const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const FEATURES_OK: u32 = 8;
const DRIVER_OK: u32 = 4;
const F_MULTIPORT: u32 = 1 << 1;
const F_VERSION_1_HIGH: u32 = 1;

/// Entries per queue.
const SIZE: u16 = 16;
/// Each queue's rings, in the heap: 64 KiB apart.
const QUEUE_STRIDE: u64 = 0x1_0000;

/// The workload's console, with its rings at the bottom of its heap.
pub struct Device {
    registers: *mut u32,
    heap: u64,
    /// Next free descriptor and avail index, per queue.
    next: [u16; 6],
}

impl Device {
    /// Resets the device and negotiates its features.
    pub fn new(registers: u64, heap: u64) -> Self {
        let mut device = Self { registers: registers as *mut u32, heap, next: [0; 6] };
        device.write(STATUS, 0);
        device.write(STATUS, ACKNOWLEDGE | DRIVER);
        device.write(DRIVER_FEATURES_SELECT, 0);
        device.write(DRIVER_FEATURES, F_MULTIPORT);
        device.write(DRIVER_FEATURES_SELECT, 1);
        device.write(DRIVER_FEATURES, F_VERSION_1_HIGH);
        device.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        device
    }

    fn write(&mut self, offset: usize, value: u32) {
        crate::arch::mmio_write32(self.registers.wrapping_byte_add(offset), value);
    }

    fn write_address(&mut self, offset: usize, addr: u64) {
        self.write(offset, addr as u32);
        self.write(offset + 4, (addr >> 32) as u32);
    }

    fn rings(&self, queue: u32) -> (u64, u64, u64) {
        let base = self.heap + u64::from(queue) * QUEUE_STRIDE;
        (base, base + 0x1000, base + 0x2000)
    }

    /// Sets queue `queue` up with its rings in the heap, except the one `which` names, at `addr`.
    pub fn ring_at(&mut self, queue: u32, which: &[u8], addr: u64) {
        let (mut desc, mut avail, mut used) = self.rings(queue);
        match which {
            b"desc" => desc = addr,
            b"avail" => avail = addr,
            _ => used = addr,
        }
        self.setup(queue, desc, avail, used);
    }

    /// Makes the device apply a batch of register writes "at" `addr` (its low half: the device
    /// puts the window's high half on top).
    pub fn batch_at(&mut self, addr: u64) {
        self.write(BATCH_REGISTER as usize, addr as u32);
    }

    /// Sets queue `queue` up through one batch (written in the heap, past the rings), with its
    /// used ring at `used` — high half included, so the batch may aim below the window.
    pub fn batch_ring(&mut self, queue: u32, used: u64) {
        let (desc, avail, _) = self.rings(queue);
        let writes = [
            (QUEUE_SELECT, queue),
            (QUEUE_SIZE, u32::from(SIZE)),
            (DESC, desc as u32),
            (AVAIL, avail as u32),
            (USED, used as u32),
            (USED + 4, (used >> 32) as u32),
            (QUEUE_READY, 1),
        ];
        let batch = self.heap + 6 * QUEUE_STRIDE;
        // SAFETY: the batch goes in this workload's heap (mapped read-write), past the rings.
        unsafe {
            let words = batch as *mut u32;
            words.write_volatile(writes.len() as u32);
            for (i, &(offset, value)) in writes.iter().enumerate() {
                words.add(1 + 2 * i).write_volatile(offset as u32);
                words.add(2 + 2 * i).write_volatile(value);
            }
        }
        self.batch_at(batch);
    }

    fn setup(&mut self, queue: u32, desc: u64, avail: u64, used: u64) {
        self.write(QUEUE_SELECT, queue);
        self.write(QUEUE_SIZE, u32::from(SIZE));
        self.write_address(DESC, desc);
        self.write_address(AVAIL, avail);
        self.write_address(USED, used);
        self.write(QUEUE_READY, 1);
    }

    fn setup_in_heap(&mut self, queue: u32) {
        let (desc, avail, used) = self.rings(queue);
        self.setup(queue, desc, avail, used);
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// Makes a one-descriptor chain of `(addr, len)` available on `queue` (no notify).
    fn post(&mut self, queue: usize, addr: u64, len: u32) {
        let (desc, avail, _) = self.rings(queue as u32);
        let index = self.next[queue];
        let slot = index % SIZE;
        // SAFETY: the rings are in this workload's heap (mapped read-write); the device reads
        // them only during this vCPU's exits.
        unsafe {
            let entry = (desc + u64::from(slot) * 16) as *mut u64;
            entry.write_volatile(addr);
            entry.add(1).write_volatile(u64::from(len)); // len, flags 0, next 0
            let ring = avail as *mut u16;
            ring.add(2 + usize::from(slot)).write_volatile(slot);
            ring.add(1).write_volatile(index.wrapping_add(1));
        }
        self.next[queue] = index.wrapping_add(1);
    }

    fn notify(&mut self, queue: usize) {
        self.write(QUEUE_NOTIFY, queue as u32);
    }

    /// Sends each `(addr, len)` as a stdout buffer.
    pub fn send_stdout(&mut self, buffers: &[(u64, u32)]) {
        self.setup_in_heap(STDOUT_TRANSMITQ as u32);
        for &(addr, len) in buffers {
            self.post(STDOUT_TRANSMITQ, addr, len);
        }
        self.notify(STDOUT_TRANSMITQ);
    }

    /// Queues `chains` stdout buffers of `len` bytes at `addr` (at most a queue's worth at a
    /// time: the next ones as the device gives buffers back), notifying once.
    pub fn queue_stdout(&mut self, addr: u64, len: u32, chains: usize) {
        self.setup_in_heap(STDOUT_TRANSMITQ as u32);
        for _ in 0..chains.min(usize::from(SIZE)) {
            self.post(STDOUT_TRANSMITQ, addr, len);
        }
        self.notify(STDOUT_TRANSMITQ);
    }

    /// Makes one stdout buffer of `len` bytes at `addr` available without ever notifying.
    pub fn queue_silently(&mut self, addr: u64, len: u32) {
        self.setup_in_heap(STDOUT_TRANSMITQ as u32);
        self.post(STDOUT_TRANSMITQ, addr, len);
    }

    /// Sends `count` DEVICE_READY messages, a queue's worth per notify.
    pub fn device_ready_flood(&mut self, count: u64) {
        self.setup_in_heap(CONTROL_TRANSMITQ as u32);
        let message = self.heap + 0x10_0000;
        // SAFETY: heap memory of this workload: `{id: u32::MAX, event: DEVICE_READY, value: 1}`.
        unsafe { (message as *mut u64).write_volatile(0x0001_0000_ffff_ffff) };
        let mut sent = 0;
        while sent < count {
            let batch = (count - sent).min(u64::from(SIZE));
            for _ in 0..batch {
                self.post(CONTROL_TRANSMITQ, message, 8);
            }
            self.notify(CONTROL_TRANSMITQ);
            sent += batch;
        }
    }
}
