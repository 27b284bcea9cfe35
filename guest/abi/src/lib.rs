//! The contract between the wasmcell VMM (host) and the wasmcell guest unikernel.
//!
//! This crate is the only thing the two sides share. The VMM builds the guest's address space
//! from [`memory_map`], writes a [`BootInfo`] at [`memory_map::BOOT_INFO`], and starts each vCPU
//! at the guest's ELF entry point in CPL 3 with `RDI` = the boot-info address and `RSI` = the
//! vCPU's own [`vcpu::VcpuInfo`]: a workload to run, or none. From then on the guest talks to
//! the VMM only through devices: the [`control`] device (exit, boot-done, panic, wait, park,
//! fault report, [`socket`] and [`file`] calls), each workload's virtio-console, and, on x86-64, a 16550 serial port for its
//! log.
//!
//! Any change to a layout in this crate that an older peer would misread bumps [`ABI_VERSION`];
//! the guest refuses to run with a boot info whose version differs from its own
//! ([`exit::ABI_MISMATCH`]). `no_std`, no dependencies, and every layout is pinned by
//! compile-time asserts.
#![no_std]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

pub mod archive;
pub mod boot_info;
pub mod control;
pub mod cpu_features;
pub mod devices;
pub mod exit;
pub mod file;
pub mod memory_map;
pub mod socket;
pub mod vcpu;
pub mod wasi;
pub mod workload;

pub use boot_info::{BootInfo, SelfTest};

/// Version of every layout in this crate. Bumped on any incompatible change.
pub const ABI_VERSION: u32 = 13;
