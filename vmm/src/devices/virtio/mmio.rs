//! The virtio-mmio transport (virtio 1.2, §4.2.2, "version 2"): the register block a guest
//! driver programs, decoded for one [`VirtioDevice`].
//!
//! Every register access is a guest MMIO exit handled on the vCPU thread. The guest is hostile:
//! a queue's size and ring addresses are frozen once it is ready (virtio 1.2 §4.2.3.2: the
//! driver must not change them; here a write to them is ignored), and a queue is made ready
//! only if its rings lie wholly in the memory the device may touch — otherwise the workload
//! ends with a [`DeviceError`].

use super::{DeviceError, VirtioDevice};
use crate::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};
use wasmcell_abi::devices::console::{BATCH_MAX, BATCH_REGISTER};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x6c63_7377; // "wscl"

const STATUS_FEATURES_OK: u32 = 8;
const QUEUE_NOTIFY: u64 = 0x050;

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
    /// arriving, output draining while the guest waits).
    pub fn device_and_queues(&mut self) -> (&mut D, &mut [Queue], &GuestMemory) {
        (&mut self.device, &mut self.queues, &self.memory)
    }

    /// The device, for questions about its state.
    pub fn device(&self) -> &D {
        &self.device
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

    /// A guest write of `data` at `offset` in the register block; an error ends the workload.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let Some(value) = read_le(data) else {
            return Ok(()); // only 32-bit register writes mean anything
        };
        let selected_ready = self.queues.get(self.queue_select as usize).is_some_and(|q| q.ready());
        match offset {
            0x014 => self.device_features_select = value,
            0x020 => match self.driver_features_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32),
                _ => {}
            },
            0x024 => self.driver_features_select = value,
            0x030 => self.queue_select = value,
            0x038 if !selected_ready => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(value as u16);
                }
            }
            0x044 => {
                let (memory, queue) = (self.memory.clone(), self.queue_select as usize);
                if let Some(q) = self.selected_queue() {
                    // `is_valid` only answers for a ready queue.
                    q.set_ready(value == 1);
                    if q.ready() && !q.is_valid(&memory) {
                        q.set_ready(false);
                        return Err(DeviceError::RingsOutside { queue });
                    }
                }
            }
            QUEUE_NOTIFY => {
                let queue = value as usize;
                if self.queues.get(queue).is_some_and(|q| q.ready()) {
                    self.device.queue_notify(queue, &mut self.queues, &self.memory)?;
                    self.interrupt_status |= 1;
                }
            }
            BATCH_REGISTER => return self.write_batch(value),
            0x064 => self.interrupt_status &= !value,
            0x070 => self.write_status(value),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 if !selected_ready => {
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
        };
        Ok(())
    }

    /// Applies the batch of register writes at `low` (`BATCH_REGISTER`): each pair as the
    /// 32-bit write it stands for, with the same checks, in order.
    fn write_batch(&mut self, low: u32) -> Result<(), DeviceError> {
        let addr = u64::from(self.address_high) << 32 | u64::from(low);
        let bad = DeviceError::BadBatch { addr };
        let count: u32 = self.memory.read_obj(GuestAddress(addr)).map_err(|_| bad.clone())?;
        if count > BATCH_MAX {
            return Err(bad);
        }
        let mut pairs = [0u8; 8 * BATCH_MAX as usize];
        let pairs = &mut pairs[..8 * count as usize];
        let at = GuestAddress(addr).checked_add(4).ok_or_else(|| bad.clone())?;
        self.memory.read_slice(pairs, at).map_err(|_| bad.clone())?;
        // One notify's work per exit, batched or not.
        let offset_of = |pair: &[u8]| u64::from(u32::from_le_bytes(pair[..4].try_into().expect("4 bytes")));
        if pairs.chunks_exact(8).filter(|pair| offset_of(pair) == QUEUE_NOTIFY).count() > 1 {
            return Err(bad);
        }
        for pair in pairs.chunks_exact(8) {
            let offset = offset_of(pair);
            if offset != BATCH_REGISTER {
                self.write(offset, &pair[4..])?;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::console::{Console, Input, Output};
    use vm_memory::GuestAddress;

    const SELECT: u64 = 0x030;
    const SIZE: u64 = 0x038;
    const READY: u64 = 0x044;
    const DESC_LOW: u64 = 0x080;
    const USED_LOW: u64 = 0x0a0;

    /// A console transport over 1 MiB at 1 MiB, as if that were a workload's stack and heap.
    fn transport() -> MmioTransport<Console> {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(1 << 20), 1 << 20)]).unwrap();
        let mut t = MmioTransport::new(Console::new(Input::Empty, Output::null(), Output::null()), memory, 0);
        t.write(SELECT, &1u32.to_le_bytes()).unwrap();
        t.write(SIZE, &16u32.to_le_bytes()).unwrap();
        for (offset, addr) in [(DESC_LOW, 0x10_0000u32), (0x090, 0x10_1000), (USED_LOW, 0x10_2000)] {
            t.write(offset, &addr.to_le_bytes()).unwrap();
        }
        t
    }

    fn read(t: &mut MmioTransport<Console>, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        t.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn a_ready_queue_cannot_be_moved() {
        let mut t = transport();
        t.write(READY, &1u32.to_le_bytes()).unwrap();
        assert_eq!(read(&mut t, READY), 1);
        // Aim the used ring at another address (base RAM's page tables, say) and resize.
        t.write(USED_LOW, &0x21_0000u32.to_le_bytes()).unwrap();
        t.write(0x0a4, &0u32.to_le_bytes()).unwrap();
        t.write(SIZE, &256u32.to_le_bytes()).unwrap();
        let queue = &t.device_and_queues().1[1];
        assert_eq!((queue.used_ring(), queue.size()), (0x10_2000, 16), "ignored while ready");
    }

    #[test]
    fn rings_outside_the_device_memory_end_the_workload() {
        for (offset, addr) in [(USED_LOW, 0x21_0000u32), (DESC_LOW, 0x1f_fff0), (DESC_LOW, 0)] {
            let mut t = transport();
            t.write(offset, &addr.to_le_bytes()).unwrap();
            assert_eq!(t.write(READY, &1u32.to_le_bytes()), Err(DeviceError::RingsOutside { queue: 1 }));
            assert_eq!(read(&mut t, READY), 0, "never made ready");
        }
    }

    /// Writes a batch of `pairs` at guest-physical `at` in the transport's memory.
    fn put_batch(t: &mut MmioTransport<Console>, at: u64, count: u32, pairs: &[(u64, u32)]) {
        let mut bytes = count.to_le_bytes().to_vec();
        for &(offset, value) in pairs {
            bytes.extend_from_slice(&(offset as u32).to_le_bytes());
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        t.device_and_queues().2.write_slice(&bytes, GuestAddress(at)).unwrap();
    }

    #[test]
    fn a_batch_applies_its_writes_in_order_with_the_same_checks() {
        let mut t = transport();
        // Queue 0 set up and made ready, all in one write; the batch register inside is skipped.
        let pairs = [
            (SELECT, 0),
            (SIZE, 8),
            (DESC_LOW, 0x10_4000),
            (0x090, 0x10_5000),
            (USED_LOW, 0x10_6000),
            (BATCH_REGISTER, 0x10_8000),
            (READY, 1),
        ];
        put_batch(&mut t, 0x10_8000, pairs.len() as u32, &pairs);
        t.write(BATCH_REGISTER, &0x10_8000u32.to_le_bytes()).unwrap();
        let queue = &t.device_and_queues().1[0];
        assert!(queue.ready());
        assert_eq!((queue.desc_table(), queue.used_ring(), queue.size()), (0x10_4000, 0x10_6000, 8));
        // Rings outside the device's memory are refused inside a batch as outside one.
        let mut t = transport();
        put_batch(&mut t, 0x10_8000, 2, &[(USED_LOW, 0x21_0000), (READY, 1)]);
        assert_eq!(t.write(BATCH_REGISTER, &0x10_8000u32.to_le_bytes()), Err(DeviceError::RingsOutside { queue: 1 }));
    }

    #[test]
    fn a_batch_out_of_reach_too_long_or_notifying_twice_ends_the_workload() {
        let bad = |addr: u64| Err(DeviceError::BadBatch { addr });
        let mut t = transport();
        // Outside the device's memory (base RAM's page tables, say), or running off its end.
        assert_eq!(t.write(BATCH_REGISTER, &0x1000u32.to_le_bytes()), bad(0x1000));
        put_batch(&mut t, 0x1f_fff8, 4, &[]);
        assert_eq!(t.write(BATCH_REGISTER, &0x1f_fff8u32.to_le_bytes()), bad(0x1f_fff8));
        // Longer than BATCH_MAX: refused before any of it is applied.
        put_batch(&mut t, 0x10_8000, BATCH_MAX + 1, &[(SIZE, 8)]);
        assert_eq!(t.write(BATCH_REGISTER, &0x10_8000u32.to_le_bytes()), bad(0x10_8000));
        assert_eq!(t.device_and_queues().1[1].size(), 16, "nothing applied");
        // Two notifies would be two exits' work in one.
        put_batch(&mut t, 0x10_8000, 2, &[(QUEUE_NOTIFY, 1), (QUEUE_NOTIFY, 1)]);
        assert_eq!(t.write(BATCH_REGISTER, &0x10_8000u32.to_le_bytes()), bad(0x10_8000));
    }
}
