//! virtio-drivers' MMIO transport minus the register reads whose answers are fixed: each
//! register access is a VM exit (~17 µs on nested KVM), and virtio-drivers asks every queue
//! whether it is already in use and how large it may be (two reads, two selects) before
//! setting it up, and writes all six address halves. Right after reset no queue is in use,
//! every queue register is zero but the address high halves, which hold the workload window's
//! high bits (`wasmcell_abi::devices::console::queue_address_high`), and every queue's maximum
//! size is `wasmcell_abi::devices::console::QUEUE_MAX_SIZE`: so this asks nothing and writes
//! only the registers whose value changes. Everything else goes to the device.
//!
//! And the writes it does make are batched: held until the next register read or notify, then
//! made in one VM exit through the device's batch register
//! (`wasmcell_abi::devices::console::BATCH_REGISTER`). Bringing the console up costs a dozen
//! exits instead of fifty.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::{fence, Ordering};
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result};
use wasmcell_abi::devices::console::{BATCH_MAX, BATCH_REGISTER};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// An MMIO transport for a device whose queues are set up once, after a reset.
pub struct FreshTransport {
    inner: MmioTransport<'static>,
    /// The device's register block (the same one `inner` drives).
    registers: *mut u32,
    queue_max_size: u32,
    /// What each queue address's high half holds after reset.
    address_high: u32,
    /// Register writes not made yet, as (offset, value) pairs.
    pending: RefCell<Vec<(u32, u32)>>,
}

// virtio-mmio (version 2) register offsets.
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const STATUS: usize = 0x070;
const QUEUE_DESC_LOW: usize = 0x080;
const QUEUE_DRIVER_LOW: usize = 0x090;
const QUEUE_DEVICE_LOW: usize = 0x0a0;

impl FreshTransport {
    /// Wraps `inner`, whose register block is at `registers`, whose device is reset before any
    /// queue is set up, whose queues all take `queue_max_size` entries and whose queue address
    /// high halves reset to `address_high`.
    ///
    /// # Safety
    /// `registers` must be the virtio-mmio (version 2) register block `inner` drives, mapped
    /// for as long as the transport lives and touched by nothing else.
    pub unsafe fn new(
        inner: MmioTransport<'static>,
        registers: *mut u32,
        queue_max_size: u16,
        address_high: u32,
    ) -> Self {
        Self {
            inner,
            registers,
            queue_max_size: u32::from(queue_max_size),
            address_high,
            pending: RefCell::new(Vec::new()),
        }
    }

    /// Writes a register now (a VM exit).
    fn write_now(&self, offset: usize, value: u32) {
        // SAFETY: `offset` is one of the register offsets above, inside the block `new`'s
        // caller vouched for; MMIO registers take 32-bit stores.
        unsafe { crate::arch::mmio_write32(self.registers.byte_add(offset), value) }
    }

    /// Writes a register with the next batch.
    fn write(&self, offset: usize, value: u32) {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push((offset as u32, value));
            pending.len() == BATCH_MAX as usize
        };
        if full {
            self.flush();
        }
    }

    /// Makes the pending writes, in one exit when the batch lies where the device can read it
    /// (in the workload's window, as the heap always is), else one by one.
    fn flush(&self) {
        let pending = core::mem::take(&mut *self.pending.borrow_mut());
        if pending.is_empty() {
            return;
        }
        let mut batch = Vec::with_capacity(1 + 2 * pending.len());
        batch.push(pending.len() as u32);
        batch.extend(pending.iter().flat_map(|&(offset, value)| [offset, value]));
        let at = batch.as_ptr() as u64;
        if (at >> 32) as u32 == self.address_high {
            // The batch's bytes are in memory before the device is told to read them.
            fence(Ordering::SeqCst);
            self.write_now(BATCH_REGISTER as usize, at as u32);
        } else {
            for (offset, value) in pending {
                self.write_now(offset as usize, value);
            }
        }
        drop(batch);
    }

    /// Writes a 64-bit queue address as its two halves, skipping the high half when it holds
    /// its reset value already: each write is a VM exit.
    fn write_address(&mut self, low_offset: usize, address: PhysAddr) {
        self.write(low_offset, address as u32);
        if (address >> 32) as u32 != self.address_high {
            self.write(low_offset + 4, (address >> 32) as u32);
        }
    }
}

impl Transport for FreshTransport {
    fn device_type(&self) -> DeviceType {
        self.flush();
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.flush();
        self.inner.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.write(DRIVER_FEATURES_SEL, 0);
        self.write(DRIVER_FEATURES, driver_features as u32);
        self.write(DRIVER_FEATURES_SEL, 1);
        self.write(DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        self.queue_max_size
    }

    fn notify(&mut self, queue: u16) {
        // The notify ends the batch: the device has done the work when the exit returns.
        self.write(QUEUE_NOTIFY, u32::from(queue));
        self.flush();
    }

    fn get_status(&self) -> DeviceStatus {
        self.flush();
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.write(STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.flush();
        self.inner.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(&mut self, queue: u16, size: u32, descriptors: PhysAddr, driver: PhysAddr, device: PhysAddr) {
        self.write(QUEUE_SEL, u32::from(queue));
        self.write(QUEUE_NUM, size);
        self.write_address(QUEUE_DESC_LOW, descriptors);
        self.write_address(QUEUE_DRIVER_LOW, driver);
        self.write_address(QUEUE_DEVICE_LOW, device);
        self.write(QUEUE_READY, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.flush();
        self.inner.queue_unset(queue)
    }

    fn queue_used(&mut self, _queue: u16) -> bool {
        false
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.flush();
        self.inner.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.flush();
        self.inner.read_config_generation()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        self.flush();
        self.inner.read_config_space(offset)
    }

    fn write_config_space<T: IntoBytes + Immutable>(&mut self, offset: usize, value: T) -> Result<()> {
        self.flush();
        self.inner.write_config_space(offset, value)
    }
}
