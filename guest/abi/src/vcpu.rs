//! What the VMM tells each vCPU, and what a vCPU shares with the VMM while it runs.
//!
//! Every vCPU is entered at the guest's ELF entry point with `RDI` = the boot info (the VM's)
//! and `RSI` = its own [`VcpuInfo`] (read-only). Its GS base is its [`VcpuBlock`], a page both
//! sides write: the guest its messages and socket calls, the VMM socket replies. The first vCPU
//! in sets the kernel up; a vCPU whose info names a workload then runs it, one without (the boot
//! vCPU of a pod) reports boot done and parks.

use core::mem::{offset_of, size_of};

use crate::control::MESSAGE_MAX;

/// `b"WCELVCPU"` read as a little-endian `u64`.
pub const VCPU_INFO_MAGIC: u64 = u64::from_le_bytes(*b"WCELVCPU");

/// [`VcpuInfo::flags`]: the info describes a workload for this vCPU to run.
pub const HAS_WORKLOAD: u32 = 1;
/// [`VcpuInfo::flags`]: the workload may use the socket device (`crate::socket`).
pub const HAS_NETWORK: u32 = 2;

/// One vCPU's instructions, written by the VMM before the vCPU starts (mapped read-only).
/// Addresses are guest-physical (= guest-virtual); every region is page aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// [`VCPU_INFO_MAGIC`].
    pub magic: u64,
    /// This vCPU's index (its area is `memory_map::vcpu_area(index)`).
    pub index: u32,
    /// [`HAS_WORKLOAD`], [`HAS_NETWORK`].
    pub flags: u32,
    /// Lowest usable byte of this vCPU's stack; the page below it is unmapped.
    pub stack_bottom: u64,
    /// One past its highest byte; the vCPU starts with `RSP = stack_top - 8`.
    pub stack_top: u64,
    /// Seed for this vCPU's CSPRNG, from the host's getrandom (never shared between vCPUs).
    pub random_seed: [u8; 32],
    /// This vCPU's TSC and the host's `CLOCK_REALTIME` (ns since the Unix epoch), sampled
    /// together by the VMM just before the vCPU starts: the workload's clocks count from here.
    pub clock_tsc: u64,
    /// See `clock_tsc`.
    pub clock_realtime_ns: u64,
    /// TSC frequency in kHz as KVM reports it (0 if unknown).
    pub tsc_khz: u64,
    /// CPU features the workload was compiled for (`crate::cpu_features` bits).
    pub cpu_features: u64,
    /// The precompiled module (mapped read + execute).
    pub payload_addr: u64,
    /// Its length in bytes.
    pub payload_len: u64,
    /// The workload description (`crate::workload`, mapped read-only).
    pub workload_addr: u64,
    /// Its length in bytes.
    pub workload_len: u64,
    /// The preopened directories (`crate::archive`, mapped read-only), or 0 for none.
    pub files_addr: u64,
    /// Its length in bytes.
    pub files_len: u64,
    /// First byte of the workload's heap (user rw, never written before the workload starts).
    pub heap_start: u64,
    /// One past its last byte.
    pub heap_end: u64,
    /// The register block of the workload's virtio-console (`crate::devices::console`).
    pub console_mmio: u64,
}

impl VcpuInfo {
    /// Whether this vCPU has a workload to run.
    pub fn has_workload(&self) -> bool {
        self.flags & HAS_WORKLOAD != 0
    }

    /// Whether this vCPU's workload may use the socket device.
    pub fn has_network(&self) -> bool {
        self.flags & HAS_NETWORK != 0
    }
}

/// The page a vCPU and the VMM share while it runs, mapped read-write in that vCPU's address
/// space and in no other. The VMM writes it before the vCPU starts and afterwards only reads
/// messages and requests from it, treating every byte as hostile, and writes socket replies
/// (`crate::socket`) over the request that asked for them.
#[repr(C)]
pub struct VcpuBlock {
    /// The block's own address, so the guest finds it through its GS base (VMM-written).
    pub this: u64,
    /// wasmtime's two thread-local slots.
    pub tls: [u64; 2],
    /// UTF-8 message for [`crate::control::PANIC`], [`crate::control::TRAP`] and
    /// [`crate::control::WORKLOAD_ERROR`]: as many bytes as the register write says (capped at
    /// [`MESSAGE_MAX`]).
    pub message: [u8; MESSAGE_MAX],
}

const _: () = {
    assert!(offset_of!(VcpuInfo, magic) == 0);
    assert!(offset_of!(VcpuInfo, index) == 8);
    assert!(offset_of!(VcpuInfo, flags) == 12);
    assert!(offset_of!(VcpuInfo, stack_bottom) == 16);
    assert!(offset_of!(VcpuInfo, stack_top) == 24);
    assert!(offset_of!(VcpuInfo, random_seed) == 32);
    assert!(offset_of!(VcpuInfo, clock_tsc) == 64);
    assert!(offset_of!(VcpuInfo, clock_realtime_ns) == 72);
    assert!(offset_of!(VcpuInfo, tsc_khz) == 80);
    assert!(offset_of!(VcpuInfo, cpu_features) == 88);
    assert!(offset_of!(VcpuInfo, payload_addr) == 96);
    assert!(offset_of!(VcpuInfo, payload_len) == 104);
    assert!(offset_of!(VcpuInfo, workload_addr) == 112);
    assert!(offset_of!(VcpuInfo, workload_len) == 120);
    assert!(offset_of!(VcpuInfo, files_addr) == 128);
    assert!(offset_of!(VcpuInfo, files_len) == 136);
    assert!(offset_of!(VcpuInfo, heap_start) == 144);
    assert!(offset_of!(VcpuInfo, heap_end) == 152);
    assert!(offset_of!(VcpuInfo, console_mmio) == 160);
    assert!(size_of::<VcpuInfo>() == 168);
    assert!(offset_of!(VcpuBlock, this) == 0);
    assert!(offset_of!(VcpuBlock, tls) == 8);
    assert!(offset_of!(VcpuBlock, message) == 24);
    assert!(size_of::<VcpuBlock>() <= crate::memory_map::PAGE_SIZE as usize);
    assert!(size_of::<VcpuInfo>() <= crate::memory_map::PAGE_SIZE as usize);
};

impl VcpuInfo {
    /// The raw bytes, as the VMM writes them into guest memory.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `VcpuInfo` is `repr(C)`, made only of integers and integer arrays, and the
        // asserts above pin its layout with no padding, so every byte is initialised.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }
}
