//! virtio drivers (virtio-drivers' transport and queues) for the devices the VMM gives the
//! guest. Guest-physical and guest-virtual addresses are the same (identity map), so DMA is plain
//! heap memory and sharing a buffer is taking its address. No interrupts: after a notify the
//! device has already done its work when the VM exit returns.

pub mod console;
mod transport;

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use wasmcell_abi::memory_map::PAGE_SIZE;

/// The identity-mapped HAL.
pub struct IdentityHal;

fn pages_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE as usize, PAGE_SIZE as usize).expect("page layout")
}

// SAFETY: DMA memory comes from the global allocator, zeroed, page aligned and exclusively
// owned until `dma_dealloc`; the identity map makes its virtual address its physical address,
// which is what the device (the VMM) reads through guest memory.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size (virtio-drivers never asks for zero pages).
        let ptr = unsafe { alloc_zeroed(pages_layout(pages)) };
        let ptr = NonNull::new(ptr).expect("out of memory for virtio queues");
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: `vaddr` came from `dma_alloc` with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), pages_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
