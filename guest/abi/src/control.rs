//! The control device's register map.
//!
//! On x86-64 the registers are I/O ports at [`X86_PORT_BASE`] + offset, written with a 32-bit
//! `out` from CPL 3 (the guest runs with IOPL = 3). Each write is one VM exit, handled by the
//! VMM on the vCPU's own thread, and concerns that vCPU: an EXIT ends the vCPU's workload (and
//! the VM when it is the VM's only work). Arguments that do not fit in 32 bits live in the
//! vCPU's block (`crate::vcpu::VcpuBlock`).

/// First I/O port of the control device on x86-64.
pub const X86_PORT_BASE: u16 = 0x0510;
/// Number of I/O ports the control device decodes on x86-64.
pub const X86_PORT_COUNT: u16 = 0x40;

/// Write the exit code (`u32`). The vCPU stops; codes 0–255 are the workload's,
/// [`crate::exit`] lists the kernel's.
pub const EXIT: u16 = 0x00;
/// Write [`BOOT_DONE_MAGIC`] when the guest is ready to run its workload. The VMM records the
/// time (the boot-time figure). Any other value is ignored.
pub const BOOT_DONE: u16 = 0x04;
/// Write the length of a panic message already placed in the vCPU block's `message`. The vCPU
/// stops with a guest-panic outcome.
pub const PANIC: u16 = 0x08;
/// Write a timeout in microseconds ([`WAIT_FOREVER`] for none). The vCPU sleeps in the VMM
/// until an event is pending for the guest or the timeout passes, instead of spinning.
pub const WAIT: u16 = 0x0c;
/// Written by the CPL 0 exception stubs only: the vector number. The VMM reads the fault
/// frame from the vCPU and stops it with a guest-fault outcome.
pub const FAULT: u16 = 0x10;
/// Write the length of a trap report (message and Wasm backtrace) placed in
/// the vCPU block's `message`. The vCPU stops with a trap outcome.
pub const TRAP: u16 = 0x14;
/// Write the length of a message placed in the vCPU block's `message` saying why the workload
/// could not start (unknown import, no `_start`, …). The vCPU stops with a workload-error outcome.
pub const WORKLOAD_ERROR: u16 = 0x18;

/// Written by a vCPU with nothing (more) to do, value ignored: the VMM stops running it and the
/// VM lives on (a pod's boot vCPU, once the kernel is up).
pub const PARK: u16 = 0x1c;

/// The value that marks the end of boot on [`BOOT_DONE`].
pub const BOOT_DONE_MAGIC: u32 = 0xb007_d0e5;
/// [`WAIT`] value meaning "until an event arrives".
pub const WAIT_FOREVER: u32 = u32::MAX;

/// Bytes of message the VMM reads at most.
pub const MESSAGE_MAX: usize = 3072;

const _: () = assert!(PARK + 4 <= X86_PORT_COUNT);
