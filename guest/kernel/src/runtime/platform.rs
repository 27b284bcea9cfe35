//! What wasmtime needs from the platform: thread-local slots, code memory and CPU-feature
//! detection, plus the payload and workload regions the VMM mapped for us. Each workload has
//! its own engine on its own vCPU, so all of these are the running vCPU's.

use crate::{arch, vcpu};
use core::sync::atomic::Ordering;
use wasmcell_abi::vcpu::VcpuInfo;
use wasmtime::{Config, CustomCodeMemory, Engine};

// wasmtime's two TLS slots live in the running vCPU's block.

#[no_mangle]
extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    vcpu::tls(slot).map_or(core::ptr::null_mut(), |s| s.load(Ordering::Relaxed) as *mut u8)
}

#[no_mangle]
extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if let Some(s) = vcpu::tls(slot) {
        s.store(ptr as u64, Ordering::Relaxed);
    }
}

/// The CPU features the host compiled this vCPU's payload for.
fn detect_host_feature(name: &str) -> Option<bool> {
    arch::has_feature(vcpu::info().cpu_features, name)
}

/// Code memory is the payload itself: the VMM mapped it read + execute before boot and the
/// guest cannot change page tables, so "publishing" only checks that the range is inside it.
struct PayloadCodeMemory {
    start: usize,
    end: usize,
}

impl CustomCodeMemory for PayloadCodeMemory {
    fn required_alignment(&self) -> usize {
        wasmcell_abi::memory_map::PAGE_SIZE as usize
    }

    fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        let (start, end) = (ptr as usize, (ptr as usize).saturating_add(len));
        if start < self.start || end > self.end {
            wasmtime::bail!("code at {start:#x}..{end:#x} is outside the executable payload");
        }
        Ok(())
    }

    fn unpublish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// The engine: the shared configuration plus this platform's pieces.
pub fn engine(info: &VcpuInfo) -> wasmtime::Result<Engine> {
    let mut config: Config = wasmcell_engine::config();
    let start = info.payload_addr as usize;
    let code = PayloadCodeMemory { start, end: start.saturating_add(info.payload_len as usize) };
    config.with_custom_code_memory(Some(alloc::sync::Arc::new(code)));
    config.with_host_memory(alloc::sync::Arc::new(super::memory::GuestMemoryCreator));
    // SAFETY: `detect_host_feature` answers from the features the host compiled for, which it
    // read from this very CPU with user-mode `cpuid`; the x86 float ABI check is waived because
    // modules are compiled with SSE4.1 and friends, so Cranelift emits no float libcalls whose
    // arguments would cross into this soft-float kernel.
    unsafe {
        config.detect_host_feature(detect_host_feature);
        config.x86_float_abi_ok(true);
    }
    Engine::new(&config)
}

/// The payload the VMM mapped, if any.
pub fn payload(info: &VcpuInfo) -> Option<&'static [u8]> {
    region(info.payload_addr, info.payload_len)
}

/// The workload blob the VMM mapped, if any.
pub fn workload(info: &VcpuInfo) -> Option<&'static [u8]> {
    region(info.workload_addr, info.workload_len)
}

/// The preopened directories' archive the VMM placed, if any (`wasmcell_abi::archive`).
pub fn files(info: &VcpuInfo) -> Option<&'static [u8]> {
    region(info.files_addr, info.files_len)
}

fn region(addr: u64, len: u64) -> Option<&'static [u8]> {
    if addr == 0 || len == 0 {
        return None;
    }
    // SAFETY: the VMM maps `[addr, addr + len)` readable for the guest's whole life and nothing
    // writes it while the workload runs (the vCPU info says so, and it is the VMM's word).
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) })
}
