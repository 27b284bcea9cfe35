//! Building the [`BootInfo`] the guest reads first, from the validated config and the loaded
//! image.

use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::boot_info::BOOT_INFO_MAGIC;
use wasmcell_abi::memory_map::{BOOT_INFO, STACK_BOTTOM, STACK_TOP};
use wasmcell_abi::{BootInfo, SelfTest};

/// The least heap the guest is given; below this the memory size is refused.
pub const MIN_HEAP: u64 = 1 << 20;

/// Errors while preparing the boot info.
#[derive(Debug, thiserror::Error)]
pub enum BootInfoError {
    /// The image leaves less than [`MIN_HEAP`] of the RAM.
    #[error("Memory size {ram_mib} MiB leaves no room for a heap after the guest image (ends at {image_end:#x})")]
    NoRoomForHeap { ram_mib: u64, image_end: u64 },
    /// The host's random source failed.
    #[error("Cannot get random bytes for the guest")]
    Random(#[source] std::io::Error),
    /// Writing it into guest memory failed.
    #[error("Cannot write the boot info")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// What goes into the boot info besides the fixed memory map.
pub struct BootParams {
    pub abi_version: u32,
    pub ram_size: u64,
    pub image_end: u64,
    pub tsc_khz: u64,
    pub selftest: SelfTest,
    pub log_level: u32,
}

/// Checks that the heap fits; done before any KVM resource exists.
pub fn check_heap(ram_size: u64, image_end: u64) -> Result<(), BootInfoError> {
    if ram_size < image_end.saturating_add(MIN_HEAP) {
        return Err(BootInfoError::NoRoomForHeap { ram_mib: ram_size >> 20, image_end });
    }
    Ok(())
}

/// Fills a boot info and writes it at `BOOT_INFO`.
pub fn write(memory: &GuestMemory, params: &BootParams) -> Result<BootInfo, BootInfoError> {
    let mut random_seed = [0u8; 32];
    getrandom(&mut random_seed).map_err(BootInfoError::Random)?;
    let info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        abi_version: params.abi_version,
        size: size_of::<BootInfo>() as u32,
        ram_size: params.ram_size,
        heap_start: params.image_end,
        heap_end: params.ram_size,
        stack_bottom: STACK_BOTTOM,
        stack_top: STACK_TOP,
        tsc_khz: params.tsc_khz,
        random_seed,
        selftest: params.selftest,
        log_level: params.log_level,
        reserved: 0,
    };
    memory.write_slice(info.as_bytes(), GuestAddress(BOOT_INFO)).map_err(BootInfoError::Write)?;
    Ok(info)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`, which we own.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
            continue;
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmcell_abi::ABI_VERSION;

    #[test]
    fn boot_info_lands_where_the_guest_reads_it() {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let params = BootParams {
            abi_version: ABI_VERSION,
            ram_size: 8 << 20,
            image_end: 0x50_0000,
            tsc_khz: 1,
            selftest: SelfTest { kind: SelfTest::EXIT, arg: 3 },
            log_level: 1,
        };
        let written = write(&memory, &params).unwrap();
        let mut read = vec![0u8; size_of::<BootInfo>()];
        memory.read_slice(&mut read, GuestAddress(BOOT_INFO)).unwrap();
        assert_eq!(read, written.as_bytes());
        assert_eq!(written.check(), Ok(()));
        assert_eq!((written.heap_start, written.heap_end), (0x50_0000, 8 << 20));
        assert_ne!(written.random_seed, [0; 32]);
    }

    #[test]
    fn heap_must_fit_after_the_image() {
        assert!(check_heap(8 << 20, 0x50_0000).is_ok());
        assert!(check_heap(8 << 20, (8 << 20) - 4096).is_err());
    }
}
