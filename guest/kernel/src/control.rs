//! The guest's side of the control device: how a vCPU ends, marks boot done, reports a panic,
//! waits, parks and calls its devices (sockets, files). Register meanings are in `wasmcell_abi::control`; every
//! write concerns the vCPU that makes it.

use crate::{arch, vcpu};
use wasmcell_abi::control::{self as reg, FaultReport, MapRequest, BOOT_DONE_MAGIC, MESSAGE_MAX};

/// Ends this vCPU's work with `code`. The VMM never resumes the vCPU after this write.
pub fn exit(code: u32) -> ! {
    arch::control_write(reg::EXIT, code);
    // Unreachable with a correct VMM; spinning keeps the guest harmless if one resumes us.
    loop {
        core::hint::spin_loop();
    }
}

/// Tells the VMM the guest is ready for its workload (the end of the boot-time figure).
pub fn boot_done() {
    arch::control_write(reg::BOOT_DONE, BOOT_DONE_MAGIC);
}

/// Sleeps in the VMM until an event is pending or `micros` pass.
pub fn wait(micros: u32) {
    arch::control_write(reg::WAIT, micros);
}

/// Tells the VMM this vCPU has nothing to do; it is not resumed.
pub fn park() -> ! {
    arch::control_write(reg::PARK, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Places `bytes` at the start of this vCPU's message buffer (a request's arguments).
fn put_arguments(bytes: &[u8]) {
    // SAFETY: the vCPU's block is mapped user read-write for the VM's whole life and only this
    // vCPU writes its message buffer; every request is far shorter than the buffer.
    unsafe {
        let dst = (&raw mut (*vcpu::block()).message).cast::<u8>();
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len().min(MESSAGE_MAX));
    }
}

/// A device call (the socket or file device): `arguments` into this vCPU's message buffer,
/// `op` written to `register`, then the reply the VMM wrote over them read into `reply`. One
/// exit.
pub fn device_call(register: u16, op: u32, arguments: &[u8], reply: &mut [u8]) {
    put_arguments(arguments);
    arch::control_write(register, op);
    // SAFETY: as for `put_arguments`: this vCPU's own block, mapped for the VM's life; the VMM
    // wrote the reply before resuming the vCPU, and no reply is longer than the buffer.
    unsafe {
        let src = (&raw const (*vcpu::block()).message).cast::<u8>();
        core::ptr::copy_nonoverlapping(src, reply.as_mut_ptr(), reply.len().min(MESSAGE_MAX));
    }
}

/// Asks the VMM to map `request`'s pages (a guarded memory grows). Returns once they are
/// mapped; a request the VMM refuses stops the vCPU.
pub fn map_memory(request: MapRequest) {
    put_arguments(&request.to_bytes());
    arch::control_write(reg::MAP_MEMORY, 0);
}

/// Reports a fault that was no Wasm trap; the vCPU stops.
pub fn report_fault(report: FaultReport) -> ! {
    put_arguments(&report.to_bytes());
    arch::control_write(reg::FAULT_REPORT, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Appends to this vCPU's message buffer (in its block), dropping what does not fit.
pub struct MessageWriter {
    len: usize,
}

impl MessageWriter {
    pub const fn new() -> Self {
        Self { len: 0 }
    }

    /// Hands the message to the VMM through `register` (PANIC, TRAP or WORKLOAD_ERROR).
    pub fn send(self, register: u16) {
        arch::control_write(register, self.len as u32);
    }
}

impl core::fmt::Write for MessageWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.len().min(MESSAGE_MAX - self.len);
        // SAFETY: the vCPU's block is mapped user read-write for the VM's whole life and only
        // this vCPU writes its message, one at a time (it stops after sending it); `take` keeps
        // the copy inside the buffer.
        unsafe {
            let dst = (&raw mut (*vcpu::block()).message).cast::<u8>();
            core::ptr::copy_nonoverlapping(s.as_ptr(), dst.add(self.len), take);
        }
        self.len += take;
        Ok(())
    }
}

fn report(register: u16, message: &str, code: u32) -> ! {
    let mut w = MessageWriter::new();
    let _ = core::fmt::Write::write_str(&mut w, message);
    w.send(register);
    exit(code)
}

/// Reports a trap with its message and backtrace; the vCPU stops.
pub fn report_trap(message: &str) -> ! {
    report(reg::TRAP, message, crate::runtime::TRAP_EXIT_CODE)
}

/// Reports that the workload could not start; the vCPU stops.
pub fn report_workload_error(message: &str) -> ! {
    report(reg::WORKLOAD_ERROR, message, 1)
}
