//! A vCPU's thread: runs the guest and carries out what its exits ask, until the guest stops
//! the vCPU or the VMM does.
//!
//! Stopping a vCPU that never exits (an endless loop) takes a signal: the stopper marks the run
//! [`Phase::StopRequested`], sets `stop_requested` in the vCPU's block, and sends
//! [`kick_signal`] to the thread until it has left `KVM_RUN` (a kick that lands just before
//! `KVM_RUN` would be lost, so it is repeated). The handler does nothing; the point is the
//! `EINTR`. The thread then stops only where the guest holds no kernel-wide lock (the block's
//! `locks_held`): otherwise it lets the guest run on to its SAFE_POINT write, so that the other
//! vCPUs of the VM never wait for a lock the stopped one held. A guest that does not get there
//! within [`DRAIN_GRACE`] is stopped anyway, and the stop is marked unclean.

use crate::arch;
use crate::devices::control::ControlAction;
use crate::devices::Devices;
use crate::memory::GuestMemory;
use crate::outcome::Outcome;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;
use wasmcell_abi::vcpu::VcpuBlock;

/// How long a guest asked to stop may run on to release its locks.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

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
    /// The guest parked the vCPU (nothing to do; the VM lives on).
    Parked,
    /// The VMM stopped it; `clean` if no kernel-wide lock was held.
    Stopped { clean: bool },
}

/// Where a run is in being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Running = 0,
    StopRequested = 1,
    /// Out of `KVM_RUN` once, found holding a lock: runs on to its safe point.
    Draining = 2,
    /// The drain took too long.
    Force = 3,
}

/// Why the VMM stops a run (the first reason given wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    Kill = 1,
    Timeout = 2,
}

/// State shared between a vCPU's thread and whoever may stop it.
pub struct RunControl {
    phase: AtomicU8,
    reason: AtomicU8,
    /// Wakes a vCPU sleeping in a WAIT.
    pub wake: EventFd,
    /// Written once by the vCPU thread when it is done.
    pub done: EventFd,
    /// When the guest wrote the boot-done marker.
    pub boot_done: OnceLock<Instant>,
    /// The vCPU thread while it may be kicked (cleared before it is joined).
    thread: Mutex<Option<libc::pthread_t>>,
    /// Base RAM, to write the stop request into the vCPU's block.
    memory: GuestMemory,
    block: u64,
}

impl RunControl {
    pub fn new(memory: GuestMemory, block: u64) -> std::io::Result<Self> {
        Ok(Self {
            phase: AtomicU8::new(Phase::Running as u8),
            reason: AtomicU8::new(0),
            wake: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            done: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            boot_done: OnceLock::new(),
            thread: Mutex::new(None),
            memory,
            block,
        })
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::StopRequested,
            2 => Phase::Draining,
            _ => Phase::Force,
        }
    }

    /// Records the thread to kick; `None` once it must not be kicked any more.
    pub fn set_thread(&self, thread: Option<libc::pthread_t>) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = thread;
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        match self.reason.load(Ordering::Acquire) {
            1 => Some(StopReason::Kill),
            2 => Some(StopReason::Timeout),
            _ => None,
        }
    }

    /// Stops the run: returns once the vCPU has left `KVM_RUN` (or never entered it again).
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        if self
            .phase
            .compare_exchange(Phase::Running as u8, Phase::StopRequested as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        {
            // Only while the thread runs: once it has ended, the vCPU (and its block) may already
            // serve another workload. A thread not started yet sees the phase before it runs.
            let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
            if thread.is_none() {
                return;
            }
            let stop_requested = self.block + std::mem::offset_of!(VcpuBlock, stop_requested) as u64;
            let _ = self.memory.store(1u32, GuestAddress(stop_requested), Ordering::Release);
        }
        let _ = self.wake.write(1);
        self.kick_while(Phase::StopRequested);
    }

    /// Kicks the thread until the phase moves on from `phase` or the thread is gone.
    fn kick_while(&self, phase: Phase) {
        loop {
            {
                let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
                let Some(thread) = *thread else { return };
                if self.phase() != phase {
                    return;
                }
                // SAFETY: `thread` is a live, joinable thread: the joiner clears it (under this
                // lock) before joining. The kick handler is installed and does nothing.
                unsafe { libc::pthread_kill(thread, kick_signal()) };
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The guest holds locks: let it run to its safe point, and force the stop if it does not
    /// get there in time.
    fn start_draining(self: &Arc<Self>) {
        self.phase.store(Phase::Draining as u8, Ordering::Release);
        let control = self.clone();
        let _ = std::thread::Builder::new().name("wasmcell-drain".into()).spawn(move || {
            std::thread::sleep(DRAIN_GRACE);
            if control
                .phase
                .compare_exchange(Phase::Draining as u8, Phase::Force as u8, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let _ = control.wake.write(1);
                control.kick_while(Phase::Force);
            }
        });
    }

    /// Whether the guest of this vCPU holds a kernel-wide lock now (the vCPU is out of KVM_RUN).
    fn guest_holds_locks(&self) -> bool {
        let locks_held = self.block + std::mem::offset_of!(VcpuBlock, locks_held) as u64;
        // A block the guest made unreadable is its own problem: treat it as lock-free.
        self.memory.load::<u32>(GuestAddress(locks_held), Ordering::Acquire).unwrap_or(0) != 0
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
    /// What this vCPU's devices may see: base RAM and its workload's window.
    pub memory: GuestMemory,
}

impl Vcpu {
    /// Runs the guest until it stops or the VMM stops it. Returns the vCPU's fd (for its next
    /// workload), how it ended and when.
    pub fn run(mut self, control: &Arc<RunControl>) -> (VcpuFd, Result<VcpuStop, VcpuError>, Instant) {
        let result = self.run_loop(control);
        let stopped_at = Instant::now();
        self.devices.flush();
        (self.fd, result, stopped_at)
    }

    fn run_loop(&mut self, control: &Arc<RunControl>) -> Result<VcpuStop, VcpuError> {
        loop {
            match control.phase() {
                Phase::Running | Phase::Draining => {}
                Phase::StopRequested if control.guest_holds_locks() => control.start_draining(),
                Phase::StopRequested => return Ok(VcpuStop::Stopped { clean: true }),
                Phase::Force => return Ok(VcpuStop::Stopped { clean: false }),
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
            let outcome = match action {
                ControlAction::Continue => continue,
                ControlAction::BootDone => {
                    let _ = control.boot_done.set(Instant::now());
                    continue;
                }
                ControlAction::Wait(timeout) => {
                    wait(control, &mut self.devices, timeout);
                    continue;
                }
                ControlAction::SafePoint if control.phase() != Phase::Running => {
                    return Ok(VcpuStop::Stopped { clean: true })
                }
                ControlAction::SafePoint => continue,
                ControlAction::Park => return Ok(VcpuStop::Parked),
                ControlAction::Exit(code) => Outcome::Exited(code),
                ControlAction::Panic(message) => Outcome::GuestPanic(message),
                ControlAction::Trap(message) => Outcome::WasmTrap(message),
                ControlAction::WorkloadError(message) => Outcome::WorkloadError(message),
                ControlAction::Fault(vector) => arch::fault_outcome(&self.fd, &self.memory, vector),
            };
            return Ok(VcpuStop::Guest(outcome));
        }
    }
}

/// Sleeps until `control.wake` is written, a stop is requested, `timeout` passes, or input the
/// guest is waiting for arrives (then it is delivered before returning).
fn wait(control: &RunControl, devices: &mut Devices, timeout: Option<Duration>) {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if control.phase() != Phase::Running {
            return;
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return;
        }
        let ts =
            remaining.map(|r| libc::timespec { tv_sec: r.as_secs() as libc::time_t, tv_nsec: r.subsec_nanos().into() });
        let mut fds = [libc::pollfd { fd: control.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 }; 2];
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
                let _ = control.wake.read();
            }
            if count > 1 && fds[1].revents != 0 {
                devices.deliver_console_input();
            }
            return;
        }
        // n == 0 is the timeout (caught at the top); n < 0 is EINTR from a kick: re-check.
    }
}
