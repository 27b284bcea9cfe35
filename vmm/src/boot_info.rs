//! Building the [`BootInfo`] the guest reads first, from the validated config and the layout.

use crate::layout::GuestLayout;
use crate::memory::GuestMemory;
use std::ops::Range;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::boot_info::BOOT_INFO_MAGIC;
use wasmcell_abi::memory_map::{BOOT_INFO, STACK_BOTTOM, STACK_TOP};
use wasmcell_abi::{BootInfo, SelfTest};

/// Errors while preparing the boot info.
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
pub struct BootParams<'a> {
    pub abi_version: u32,
    pub layout: &'a GuestLayout,
    pub tsc_khz: u64,
    /// The guest's TSC and host realtime (ns) sampled together.
    pub clock: (u64, u64),
    pub cpu_features: u64,
    pub selftest: SelfTest,
    pub log_level: u32,
}

/// `(address, length)` of an optional region, `(0, 0)` for none.
fn region(range: &Option<Range<u64>>) -> (u64, u64) {
    range.as_ref().map_or((0, 0), |r| (r.start, r.end - r.start))
}

/// Fills a boot info and writes it at `BOOT_INFO`.
pub fn write(memory: &GuestMemory, params: &BootParams) -> Result<BootInfo, BootInfoError> {
    let mut random_seed = [0u8; 32];
    getrandom(&mut random_seed).map_err(BootInfoError::Random)?;
    let layout = params.layout;
    let (payload_addr, payload_len) = region(&layout.payload);
    let (workload_addr, workload_len) = region(&layout.workload);
    let (files_addr, files_len) = region(&layout.files);
    let info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        abi_version: params.abi_version,
        size: size_of::<BootInfo>() as u32,
        ram_size: layout.ram_size,
        heap_start: layout.heap.start,
        heap_end: layout.heap.end,
        stack_bottom: STACK_BOTTOM,
        stack_top: STACK_TOP,
        tsc_khz: params.tsc_khz,
        random_seed,
        selftest: params.selftest,
        log_level: params.log_level,
        reserved: 0,
        cpu_features: params.cpu_features,
        payload_addr,
        payload_len,
        workload_addr,
        workload_len,
        clock_tsc: params.clock.0,
        clock_realtime_ns: params.clock.1,
        files_addr,
        files_len,
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
    use crate::layout::WorkloadSizes;
    use wasmcell_abi::ABI_VERSION;

    #[test]
    fn boot_info_lands_where_the_guest_reads_it() {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let layout =
            GuestLayout::new(16 << 20, 0x50_0000, Some(WorkloadSizes { blob: 64, files: 0, payload: 8192 })).unwrap();
        let params = BootParams {
            abi_version: ABI_VERSION,
            layout: &layout,
            tsc_khz: 1,
            clock: (5, 6),
            cpu_features: 0b101,
            selftest: SelfTest { kind: SelfTest::EXIT, arg: 3 },
            log_level: 1,
        };
        let written = write(&memory, &params).unwrap();
        let mut read = vec![0u8; size_of::<BootInfo>()];
        memory.read_slice(&mut read, GuestAddress(BOOT_INFO)).unwrap();
        assert_eq!(read, written.as_bytes());
        assert_eq!(written.check(), Ok(()));
        assert_eq!((written.heap_start, written.heap_end), (layout.heap.start, layout.heap.end));
        assert_eq!((written.payload_addr, written.payload_len), ((16 << 20) - 8192, 8192));
        assert_eq!(written.workload_len, 64);
        assert_eq!(written.cpu_features, 0b101);
        assert_ne!(written.random_seed, [0; 32]);
    }
}
