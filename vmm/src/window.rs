//! A workload's window: the RAM it brings into the VM, from its validated description
//! ([`PreparedWorkload`], no KVM involved) to a mapped memory slot holding its module, inputs,
//! private copy of the kernel's data, stack and heap ([`Window`]), and back.
//!
//! Everything a workload changes in the VM lives in its window (its address space maps nothing
//! else writable), so when the window goes, nothing of the workload is left, however it ended:
//! window addresses ([`WindowSlots`]) are always reused.

use crate::artifact::Artifact;
use crate::config::{ConfigError, Workload};
use crate::devices::file::HostVolume;
use crate::devices::socket::Network;
use crate::devices::virtio::console::Console;
use crate::files::{self, FilesError};
use crate::layout::{LayoutError, WindowLayout, WorkloadSizes};
use crate::memory::{self, GuestMemory, MemoryError, Region};
use std::collections::BTreeSet;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::memory_map::window_base;
use wasmcell_abi::vcpu::{VcpuInfo, HAS_NETWORK, HAS_WORKLOAD, VCPU_INFO_MAGIC};

/// A workload checked and encoded, ready to be placed in a window.
pub struct PreparedWorkload {
    artifact: Artifact,
    cpu_features: u64,
    blob: Vec<u8>,
    files: Vec<u8>,
    memory: u64,
    kernel_data: u64,
    /// The console device serving the workload's stdio.
    pub console: Console,
    /// The workload's network, if it has one (its socket device).
    pub network: Option<Network>,
    /// The volumes its file device serves (none: no device).
    pub volumes: Vec<HostVolume>,
}

impl PreparedWorkload {
    /// Checks `workload` and packs everything it brings (no KVM resource is touched): bad input
    /// fails here. `kernel_data` is the size of the guest image's writable segments, which the
    /// window holds a copy of.
    pub fn new(workload: Workload, kernel_data: u64) -> Result<Self, PrepareError> {
        if workload.artifact.is_empty() {
            return Err(ConfigError::EmptyArtifact.into());
        }
        let blob = workload.encode()?;
        // The archive goes into the window: the workload's memory is its budget.
        let budget = workload.memory.bytes();
        let files = match workload.archive {
            Some(archive) if archive.len() as u64 > budget => return Err(FilesError::TooLarge.into()),
            Some(archive) => archive,
            None if workload.preopens.is_empty() => Vec::new(),
            None => files::pack(&workload.preopens, budget)?,
        };
        let prepared = Self {
            artifact: workload.artifact,
            cpu_features: workload.cpu_features,
            blob,
            files,
            memory: workload.memory.bytes(),
            kernel_data,
            console: Console::new(workload.stdin, workload.stdout, workload.stderr),
            network: workload.network,
            volumes: workload.volumes,
        };
        // The layout does not depend on where the window is: check it fits now.
        WindowLayout::new(window_base(0), prepared.memory, prepared.sizes())?;
        Ok(prepared)
    }

    fn sizes(&self) -> WorkloadSizes {
        WorkloadSizes {
            blob: self.blob.len() as u64,
            files: self.files.len() as u64,
            payload: self.artifact.len(),
            kernel_data: self.kernel_data,
        }
    }
}

/// Errors in a workload, found before any KVM resource is touched.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("Invalid workload")]
    Config(#[from] ConfigError),
    #[error("Cannot pack the preopened directories")]
    Files(#[from] FilesError),
    #[error("Cannot lay out the workload's memory")]
    Layout(#[from] LayoutError),
}

/// A workload's RAM in the VM: its memory slot, mapped, filled.
pub struct Window {
    pub index: u32,
    pub layout: WindowLayout,
    region: Arc<Region>,
    /// The root of the workload's address space, once mapped (`AddressSpace::map_window`).
    pub root: Option<u64>,
}

/// Errors while placing a window.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("Cannot create the workload's memory")]
    Memory(#[from] MemoryError),
    #[error("Cannot place the workload in its memory")]
    Write(#[source] vm_memory::GuestMemoryError),
}

impl Window {
    /// The KVM memory slot of window `index` (slot 0 is base RAM).
    pub fn slot(index: u32) -> u32 {
        index + 1
    }

    /// Creates window `index`'s memory slot and copies the workload's module, blob and files
    /// and the kernel's writable data (`kernel_data`) into it. The caller maps it into the
    /// guest's page tables.
    pub fn create(
        vm: &kvm_ioctls::VmFd,
        index: u32,
        workload: &PreparedWorkload,
        kernel_data: &[u8],
    ) -> Result<Self, WindowError> {
        let base = window_base(index);
        let layout = WindowLayout::new(base, workload.memory, workload.sizes()).expect("checked by PreparedWorkload");
        let region = memory::create_region(vm, Self::slot(index), base, workload.memory)?;
        let window = Self { index, layout, region, root: None };
        if let Err(e) = window.fill(workload, kernel_data) {
            window.remove(vm);
            return Err(e);
        }
        Ok(window)
    }

    fn fill(&self, workload: &PreparedWorkload, kernel_data: &[u8]) -> Result<(), WindowError> {
        let memory = self.memory()?;
        let layout = &self.layout;
        let write = |bytes: &[u8], at: u64| memory.write_slice(bytes, GuestAddress(at)).map_err(WindowError::Write);
        match &workload.artifact {
            Artifact::Bytes(bytes) => write(bytes, layout.payload.start)?,
            Artifact::File { file, len } => memory::map_file(&memory, layout.payload.start, file, *len)?,
        }
        write(&workload.blob, layout.blob.start)?;
        if let Some(files) = &layout.files {
            write(&workload.files, files.start)?;
        }
        if kernel_data.len() as u64 > layout.kernel_data.end - layout.kernel_data.start {
            return Err(WindowError::Write(vm_memory::GuestMemoryError::InvalidBackendAddress));
        }
        write(kernel_data, layout.kernel_data.start)?;
        memory::advise_huge_pages(&memory, layout.huge_page_range());
        Ok(())
    }

    /// What the workload's vCPU is told about it.
    pub fn vcpu_info(&self, index: u32, workload: &PreparedWorkload, console_mmio: u64) -> VcpuInfo {
        let l = &self.layout;
        let (files_addr, files_len) = l.files.as_ref().map_or((0, 0), |f| (f.start, f.end - f.start));
        VcpuInfo {
            magic: VCPU_INFO_MAGIC,
            index,
            flags: HAS_WORKLOAD | if workload.network.is_some() { HAS_NETWORK } else { 0 },
            stack_bottom: l.stack.start,
            stack_top: l.stack.end,
            cpu_features: workload.cpu_features,
            payload_addr: l.payload.start,
            payload_len: l.payload.end - l.payload.start,
            workload_addr: l.blob.start,
            workload_len: l.blob.end - l.blob.start,
            files_addr,
            files_len,
            heap_start: l.heap.start,
            heap_end: l.heap.end,
            console_mmio,
            ..Default::default()
        }
    }

    /// Removes the memory slot; the host memory goes with the last reference to the region
    /// (the workload's devices hold one until its vCPU thread ends).
    pub fn remove(self, vm: &kvm_ioctls::VmFd) {
        // Failing to delete a slot leaves it to the VM's teardown; nothing else can be done.
        let _ = memory::remove_region(vm, Self::slot(self.index), &self.region);
    }

    /// The whole window, for the VMM's own writes (contents, page tables).
    pub fn memory(&self) -> Result<GuestMemory, MemoryError> {
        memory::view(vec![self.region.clone()])
    }

    /// What the workload's devices may read and write: its stack and heap, which the workload
    /// may write itself, and nothing else — not its module or inputs (read-only to it), its
    /// page tables, base RAM or another window. The view borrows the window's host mapping:
    /// whoever holds it must also hold [`Window::region`] for at least as long.
    pub fn device_view(&self) -> Result<GuestMemory, MemoryError> {
        memory::device_view(&self.region, self.layout.stack.start..self.layout.heap.end)
    }

    /// The window's RAM (its host mapping lives as long as the last reference).
    pub fn region(&self) -> Arc<Region> {
        self.region.clone()
    }
}

/// Which window addresses are free.
pub struct WindowSlots {
    /// Released, reusable.
    free: BTreeSet<u32>,
    /// Never used yet: `next..limit`.
    next: u32,
    limit: u32,
}

impl WindowSlots {
    /// `limit` window addresses (bounded by the guest's physical address width).
    pub fn new(limit: u32) -> Self {
        Self { free: BTreeSet::new(), next: 0, limit }
    }

    /// The lowest free window, if any is left.
    pub fn take(&mut self) -> Option<u32> {
        if let Some(index) = self.free.pop_first() {
            return Some(index);
        }
        (self.next < self.limit).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Gives window `index` back, for the next workload.
    pub fn give_back(&mut self, index: u32) {
        self.free.insert(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_reused_lowest_first_and_run_out_clearly() {
        let mut slots = WindowSlots::new(3);
        assert_eq!((slots.take(), slots.take()), (Some(0), Some(1)));
        slots.give_back(1);
        slots.give_back(0);
        assert_eq!(slots.take(), Some(0), "a released window comes back, lowest first");
        assert_eq!(slots.take(), Some(1));
        assert_eq!(slots.take(), Some(2));
        assert_eq!(slots.take(), None);
    }

    #[test]
    fn bad_workloads_fail_before_any_vm() {
        let empty = PreparedWorkload::new(Workload::default(), 4096).err().unwrap();
        assert!(matches!(empty, PrepareError::Config(ConfigError::EmptyArtifact)), "{empty:?}");
        let workload = Workload {
            artifact: vec![1; 64 << 20].into(),
            memory: crate::MemorySize::from_mib(32).unwrap(),
            ..Default::default()
        };
        let err = PreparedWorkload::new(workload, 4096).err().unwrap();
        assert!(matches!(err, PrepareError::Layout(LayoutError::TooSmall { .. })), "{err:?}");
    }
}
