//! The vCPU thread: runs the guest and carries out what its exits ask, until the guest stops or
//! the VMM stops it.
//!
//! Stopping a vCPU that never exits (an endless loop) takes a signal: the event loop sets
//! `stop`, then sends [`KICK_SIGNAL`] to this thread until it has left `KVM_RUN`. The handler
//! does nothing; the point is the `EINTR` it causes.

use crate::arch;
use crate::devices::control::ControlAction;
use crate::devices::Devices;
use crate::memory::GuestMemory;
use crate::outcome::Outcome;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// Errors of the vCPU thread that are the VMM's (or KVM's) problem, not the guest's.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// `KVM_RUN` failed.
    #[error("KVM_RUN failed")]
    Run(#[source] kvm_ioctls::Error),
    /// KVM stopped the guest for a reason the VMM does not handle (e.g. an emulation failure).
    #[error("Guest stopped with unexpected KVM exit: {0}")]
    UnexpectedExit(String),
}

/// How the vCPU thread ended.
#[derive(Debug)]
pub enum VcpuStop {
    /// The guest ended by itself.
    Guest(Outcome),
    /// The VMM asked it to stop.
    Stopped,
}

/// State shared between the vCPU thread and the event loop.
pub struct VcpuShared {
    /// Set by the event loop to make the vCPU leave its loop.
    pub stop: AtomicBool,
    /// Wakes a vCPU sleeping in a WAIT (written on stop; later by devices with events).
    pub wake: EventFd,
    /// Written once by the vCPU thread when it is done.
    pub done: EventFd,
    /// When the guest wrote the boot-done marker.
    pub boot_done: OnceLock<Instant>,
}

impl VcpuShared {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            stop: AtomicBool::new(false),
            wake: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            done: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            boot_done: OnceLock::new(),
        })
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

/// Installs the (empty) kick handler once per process. Without `SA_RESTART`, so `KVM_RUN` and
/// `ppoll` return `EINTR`.
pub fn install_kick_handler() -> std::io::Result<()> {
    extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// One vCPU with everything its exits need.
pub struct Vcpu {
    pub fd: VcpuFd,
    pub devices: Devices,
    pub memory: GuestMemory,
}

impl Vcpu {
    /// Runs the guest until it stops or `shared.stop` is set. Returns when it stopped too.
    pub fn run(mut self, shared: &VcpuShared) -> (Result<VcpuStop, VcpuError>, Instant) {
        let result = self.run_loop(shared);
        let stopped_at = Instant::now();
        self.devices.serial.flush();
        (result, stopped_at)
    }

    fn run_loop(&mut self, shared: &VcpuShared) -> Result<VcpuStop, VcpuError> {
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return Ok(VcpuStop::Stopped);
            }
            let action = match self.fd.run() {
                Ok(VcpuExit::IoOut(port, data)) => self.devices.io_out(port, data),
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.devices.io_in(port, data);
                    ControlAction::Continue
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    self.devices.mmio_read(addr, data);
                    ControlAction::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    self.devices.mmio_write(addr, data);
                    ControlAction::Continue
                }
                Ok(VcpuExit::Shutdown) => return Ok(VcpuStop::Guest(arch::shutdown_outcome(&self.fd))),
                Ok(other) => return Err(VcpuError::UnexpectedExit(format!("{other:?}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => ControlAction::Continue,
                Err(e) => return Err(VcpuError::Run(e)),
            };
            match action {
                ControlAction::Continue => {}
                ControlAction::BootDone => {
                    let _ = shared.boot_done.set(Instant::now());
                }
                ControlAction::Wait(timeout) => wait(shared, &mut self.devices, timeout),
                ControlAction::Exit(code) => return Ok(VcpuStop::Guest(Outcome::Exited(code))),
                ControlAction::Panic(message) => return Ok(VcpuStop::Guest(Outcome::GuestPanic(message))),
                ControlAction::Trap(message) => return Ok(VcpuStop::Guest(Outcome::WasmTrap(message))),
                ControlAction::WorkloadError(message) => return Ok(VcpuStop::Guest(Outcome::WorkloadError(message))),
                ControlAction::Fault(vector) => {
                    return Ok(VcpuStop::Guest(arch::fault_outcome(&self.fd, &self.memory, vector)))
                }
            }
        }
    }
}

/// Sleeps until `shared.wake` is written, `stop` is set, `timeout` passes, or input the guest
/// is waiting for arrives (then it is delivered before returning).
fn wait(shared: &VcpuShared, devices: &mut Devices, timeout: Option<Duration>) {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return;
        }
        let ts =
            remaining.map(|r| libc::timespec { tv_sec: r.as_secs() as libc::time_t, tv_nsec: r.subsec_nanos().into() });
        let mut fds = [libc::pollfd { fd: shared.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 }; 2];
        let input = devices.console_input_fd();
        if let Some(fd) = input {
            fds[1].fd = fd;
        }
        let count = 1 + usize::from(input.is_some());
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds[..count]` are valid pollfds, `ts_ptr` is null or points at a live
        // timespec, and a null signal mask means "keep the current one".
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), count as libc::nfds_t, ts_ptr, std::ptr::null()) };
        if n > 0 {
            if fds[0].revents != 0 {
                let _ = shared.wake.read();
            }
            if count > 1 && fds[1].revents != 0 {
                devices.deliver_console_input();
            }
            return;
        }
        // n == 0 is the timeout (caught at the top); n < 0 is EINTR from a kick: re-check stop.
    }
}
