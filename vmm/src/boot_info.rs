//! Building the [`BootInfo`] every vCPU reads first, from the validated config and the layout,
//! and the random seeds each vCPU's info carries.

use crate::config::VmConfig;
use crate::layout::BaseLayout;
use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::boot_info::{BOOT_INFO_MAGIC, POD};
use wasmcell_abi::memory_map::BOOT_INFO;
use wasmcell_abi::{BootInfo, SelfTest};

/// Errors while preparing the boot info or a vCPU's info.
#[derive(Debug, thiserror::Error)]
pub enum BootInfoError {
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
    pub heap: std::ops::Range<u64>,
    pub selftest: SelfTest,
    pub log_level: u32,
}

impl BootParams {
    pub fn new(config: &VmConfig, layout: &BaseLayout) -> Self {
        Self {
            abi_version: config.abi_version,
            ram_size: layout.ram_size,
            heap: layout.heap.clone(),
            selftest: config.selftest,
            log_level: config.log_level,
        }
    }
}

/// Fills a boot info and writes it at `BOOT_INFO`.
pub fn write(memory: &GuestMemory, params: &BootParams) -> Result<BootInfo, BootInfoError> {
    let info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        abi_version: params.abi_version,
        size: size_of::<BootInfo>() as u32,
        ram_size: params.ram_size,
        heap_start: params.heap.start,
        heap_end: params.heap.end,
        selftest: params.selftest,
        log_level: params.log_level,
        flags: 0,
    };
    memory.write_slice(info.as_bytes(), GuestAddress(BOOT_INFO)).map_err(BootInfoError::Write)?;
    Ok(info)
}

/// Marks the VM a pod's (`POD`), before its boot vCPU starts.
pub fn set_pod(memory: &GuestMemory) -> Result<(), BootInfoError> {
    let flags = BOOT_INFO + std::mem::offset_of!(BootInfo, flags) as u64;
    memory.write_obj(POD, GuestAddress(flags)).map_err(BootInfoError::Write)
}

/// A fresh seed for a vCPU's CSPRNG, from the host's getrandom.
pub fn random_seed() -> Result<[u8; 32], BootInfoError> {
    let mut seed = [0u8; 32];
    getrandom(&mut seed).map_err(BootInfoError::Random)?;
    Ok(seed)
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
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let layout = BaseLayout::new(16 << 20, 0x50_0000).unwrap();
        let params = BootParams {
            abi_version: ABI_VERSION,
            ram_size: layout.ram_size,
            heap: layout.heap.clone(),
            selftest: SelfTest { kind: SelfTest::EXIT, arg: 3 },
            log_level: 1,
        };
        let written = write(&memory, &params).unwrap();
        let mut read = vec![0u8; size_of::<BootInfo>()];
        memory.read_slice(&mut read, GuestAddress(BOOT_INFO)).unwrap();
        assert_eq!(read, written.as_bytes());
        assert_eq!(written.check(), Ok(()));
        assert_eq!((written.heap_start, written.heap_end), (0x50_0000, 16 << 20));
        assert_eq!(written.flags, 0);
        set_pod(&memory).unwrap();
        let flags = BOOT_INFO + std::mem::offset_of!(BootInfo, flags) as u64;
        assert_eq!(memory.read_obj::<u32>(GuestAddress(flags)).unwrap(), POD);
    }

    #[test]
    fn seeds_are_fresh() {
        let (a, b) = (random_seed().unwrap(), random_seed().unwrap());
        assert_ne!(a, [0; 32]);
        assert_ne!(a, b);
    }
}
