//! The boot info: what the VMM tells the guest before its first instruction.
//!
//! The VMM writes one [`BootInfo`] at [`crate::memory_map::BOOT_INFO`] (mapped read-only for the
//! guest) and passes its address in `RDI` to every vCPU. The guest checks `magic`, `abi_version` and `size`
//! before it trusts any other field.

use core::mem::{offset_of, size_of};

/// `b"WASMCELL"` read as a little-endian `u64`.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"WASMCELL");

/// What the whole VM shares: its base RAM, the boot vCPU's kernel heap and diagnostics. Each
/// vCPU also gets its own `crate::vcpu::VcpuInfo`. All addresses are guest-physical, which the
/// VMM's page tables identity-map to guest-virtual.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`crate::ABI_VERSION`] of the VMM that wrote this.
    pub abi_version: u32,
    /// `size_of::<BootInfo>()` as the VMM knows it.
    pub size: u32,
    /// Bytes of base RAM, starting at guest-physical 0 (workload windows come on top).
    pub ram_size: u64,
    /// First byte of the boot vCPU's kernel heap (page aligned), mapped user read-write,
    /// no-execute in the boot vCPU's address space only: a workload never sees it and allocates
    /// from the heap in its own window.
    pub heap_start: u64,
    /// One past the last byte of the kernel heap (page aligned).
    pub heap_end: u64,
    /// A diagnostic a vCPU without a workload runs (see [`SelfTest`]).
    pub selftest: SelfTest,
    /// How much the guest writes to its serial log: [`LOG_OFF`] or [`LOG_INFO`].
    pub log_level: u32,
    /// [`POD`] or 0.
    pub flags: u32,
}

/// [`BootInfo::flags`]: the VM is a pod's and outlives its workloads. A vCPU without a workload
/// reports boot done and parks (the VM waits for workloads) instead of running the self-test and
/// exiting. (Without it, the VM ends with its one workload.)
pub const POD: u32 = 1;

/// The guest writes nothing to its serial log (panics still reach the VMM).
pub const LOG_OFF: u32 = 0;
/// The guest logs its boot and self-test results.
pub const LOG_INFO: u32 = 1;

/// A diagnostic request carried in the boot info, run by a vCPU without a workload. The VMM's tests and `wasmcell boot --selftest`
/// use it to drive every way a guest can end, on real KVM.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelfTest {
    /// One of the `SELFTEST_*` constants.
    pub kind: u32,
    /// Argument of the request (meaning depends on `kind`).
    pub arg: u32,
}

impl SelfTest {
    /// No diagnostic: boot, log, exit 0.
    pub const NONE: u32 = 0;
    /// Exit with code `arg`.
    pub const EXIT: u32 = 1;
    /// Panic with a known message.
    pub const PANIC: u32 = 2;
    /// Read an unmapped address ([`crate::memory_map::NULL_GUARD`] + 8): page fault.
    pub const READ_UNMAPPED: u32 = 3;
    /// Execute `ud2`: invalid-opcode fault.
    pub const UD2: u32 = 4;
    /// Loop forever without exiting (the VMM's timeout or kill must stop it).
    pub const HANG: u32 = 5;
    /// Wait `arg` milliseconds on the control device, then exit 0.
    pub const WAIT: u32 = 6;
    /// Write into the guest's own code: protection fault (the image is mapped W^X).
    pub const WRITE_CODE: u32 = 7;
    /// Write into the supervisor-only page tables region: protection fault.
    pub const WRITE_SYSTEM: u32 = 8;
    /// Recurse until the boot stack's guard page is hit: page fault.
    pub const STACK_OVERFLOW: u32 = 9;
    /// Allocate and free heap memory in a pattern, check it, exit 0 (or panic on corruption).
    pub const HEAP: u32 = 10;
    /// Hold a kernel lock for `arg` milliseconds, release it, then loop forever. No other vCPU
    /// shares the locks of this one, so a stop requested meanwhile stops it at once.
    pub const HOLD_LOCK: u32 = 11;
}

const _: () = {
    assert!(size_of::<SelfTest>() == 8);
    assert!(offset_of!(BootInfo, magic) == 0);
    assert!(offset_of!(BootInfo, abi_version) == 8);
    assert!(offset_of!(BootInfo, size) == 12);
    assert!(offset_of!(BootInfo, ram_size) == 16);
    assert!(offset_of!(BootInfo, heap_start) == 24);
    assert!(offset_of!(BootInfo, heap_end) == 32);
    assert!(offset_of!(BootInfo, selftest) == 40);
    assert!(offset_of!(BootInfo, log_level) == 48);
    assert!(offset_of!(BootInfo, flags) == 52);
    assert!(size_of::<BootInfo>() == 56);
    // It must fit in its page of the memory map.
    assert!(size_of::<BootInfo>() <= crate::memory_map::PAGE_SIZE as usize);
};

impl BootInfo {
    /// The raw bytes of this boot info, as the VMM writes them into guest memory.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `BootInfo` is `repr(C)`, made only of integers and integer arrays, and the
        // asserts above pin its layout with no padding, so every byte is initialised.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }

    /// Why this boot info cannot be used by a peer built against this crate, if it cannot.
    pub fn check(&self) -> Result<(), BootInfoError> {
        if self.magic != BOOT_INFO_MAGIC {
            return Err(BootInfoError::BadMagic);
        }
        if self.abi_version != crate::ABI_VERSION || self.size as usize != size_of::<Self>() {
            return Err(BootInfoError::VersionMismatch);
        }
        Ok(())
    }
}

/// Why a boot info was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Not a wasmcell boot info at all.
    BadMagic,
    /// Written by a VMM of another ABI version.
    VersionMismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> BootInfo {
        BootInfo {
            magic: BOOT_INFO_MAGIC,
            abi_version: crate::ABI_VERSION,
            size: size_of::<BootInfo>() as u32,
            ..Default::default()
        }
    }

    #[test]
    fn check_accepts_own_version_and_refuses_others() {
        assert_eq!(valid().check(), Ok(()));
        let other = BootInfo { abi_version: crate::ABI_VERSION + 1, ..valid() };
        assert_eq!(other.check(), Err(BootInfoError::VersionMismatch));
        let short = BootInfo { size: 8, ..valid() };
        assert_eq!(short.check(), Err(BootInfoError::VersionMismatch));
        let garbage = BootInfo { magic: 0, ..valid() };
        assert_eq!(garbage.check(), Err(BootInfoError::BadMagic));
    }

    #[test]
    fn bytes_start_with_magic() {
        let info = valid();
        assert_eq!(info.as_bytes().len(), size_of::<BootInfo>());
        assert_eq!(&info.as_bytes()[..8], b"WASMCELL");
    }
}
