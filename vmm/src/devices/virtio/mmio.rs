//! The virtio-mmio transport (virtio 1.2, §4.2.2, "version 2"): the register block a guest
//! driver programs, decoded for one [`VirtioDevice`].
//!
//! Every register access is a guest MMIO exit handled on the vCPU thread. The guest is hostile:
//! queue addresses are validated by virtio-queue against guest memory before a queue is used,
//! and a device the driver configured badly is simply never processed.

use super::VirtioDevice;
use crate::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x6c63_7377; // "wscl"

const STATUS_FEATURES_OK: u32 = 8;

/// One device and its transport state.
pub struct MmioTransport<D> {
    device: D,
    memory: GuestMemory,
    queues: Vec<Queue>,
    /// What the high halves of the queue addresses hold after a reset.
    address_high: u32,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// The transport of `device`, whose queue addresses' high halves reset to `address_high`
    /// (`wasmcell_abi::devices::console::queue_address_high`).
    pub fn new(device: D, memory: GuestMemory, address_high: u32) -> Self {
        let queues = device.queue_max_sizes().iter().map(|&max| Queue::new(max).expect("valid queue size")).collect();
        let mut transport = Self {
            device,
            memory,
            queues,
            address_high,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
        };
        transport.reset_queues();
        transport
    }

    fn reset_queues(&mut self) {
        let high = Some(self.address_high);
        for queue in &mut self.queues {
            queue.reset();
            queue.set_desc_table_address(Some(0), high);
            queue.set_avail_ring_address(Some(0), high);
            queue.set_used_ring_address(Some(0), high);
        }
    }

    /// The device and its queues, for work that does not come from a register access (input
    /// arriving while the guest waits).
    pub fn device_and_queues(&mut self) -> (&mut D, &mut [Queue], &GuestMemory) {
        (&mut self.device, &mut self.queues, &self.memory)
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    /// A guest read of `data.len()` bytes at `offset` in the register block.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        let value = match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.device.device_id(),
            0x00c => VENDOR_ID,
            0x010 => match self.device_features_select {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            0x034 => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            0x044 => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            0x060 => self.interrupt_status,
            0x070 => self.status,
            0x0fc => 0, // config generation: the configuration never changes
            _ => 0,
        };
        write_le(data, value);
    }

    /// A guest write of `data` at `offset` in the register block.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(value) = read_le(data) else {
            return; // only 32-bit register writes mean anything
        };
        match offset {
            0x014 => self.device_features_select = value,
            0x020 => match self.driver_features_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32),
                _ => {}
            },
            0x024 => self.driver_features_select = value,
            0x030 => self.queue_select = value,
            0x038 => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(value as u16);
                }
            }
            0x044 => {
                let memory = self.memory.clone();
                if let Some(q) = self.selected_queue() {
                    // A queue whose rings do not fit guest memory is never made ready.
                    // `is_valid` only answers for a ready queue.
                    q.set_ready(value == 1);
                    if q.ready() && !q.is_valid(&memory) {
                        q.set_ready(false);
                    }
                }
            }
            0x050 => {
                let queue = value as usize;
                if self.queues.get(queue).is_some_and(|q| q.ready()) {
                    self.device.queue_notify(queue, &mut self.queues, &self.memory);
                    self.interrupt_status |= 1;
                }
            }
            0x064 => self.interrupt_status &= !value,
            0x070 => self.write_status(value),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 => {
                let (low, high) = if offset.is_multiple_of(8) { (Some(value), None) } else { (None, Some(value)) };
                if let Some(q) = self.selected_queue() {
                    match offset & !0x7 {
                        0x080 => q.set_desc_table_address(low, high),
                        0x090 => q.set_avail_ring_address(low, high),
                        _ => q.set_used_ring_address(low, high),
                    }
                }
            }
            _ => {}
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.status = 0;
            self.driver_features = 0;
            self.interrupt_status = 0;
            self.reset_queues();
            self.device.reset();
            return;
        }
        let mut value = value;
        // FEATURES_OK only sticks if the driver asked for nothing the device does not offer.
        if value & STATUS_FEATURES_OK != 0 && self.driver_features & !self.device.features() != 0 {
            value &= !STATUS_FEATURES_OK;
        }
        self.status = value;
    }
}

fn read_le(data: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(data.try_into().ok()?))
}

fn write_le(data: &mut [u8], value: u32) {
    let bytes = value.to_le_bytes();
    let n = data.len().min(4);
    data[..n].copy_from_slice(&bytes[..n]);
    data[n..].fill(0);
}
