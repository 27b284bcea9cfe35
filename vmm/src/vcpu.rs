//! A vCPU's thread: runs the guest and carries out what its exits ask, until the guest stops
//! the vCPU or the VMM does.
//!
//! Stopping a vCPU that never exits (an endless loop) takes a signal: the stopper marks the run
//! [`Phase::StopRequested`] and sends [`kick_signal`] to the thread until it has left
//! `KVM_RUN` (a kick that lands just before `KVM_RUN` would be lost, so it is repeated). The
//! handler does nothing; the point is the `EINTR`. The thread then stops at once, wherever the
//! guest was: nothing a workload's vCPU can hold (a lock, half-written data) is shared with any
//! other vCPU, because its address space maps no shared writable page, so no stop has to wait
//! for the guest, and nothing the guest says about itself is asked.

use crate::arch;
use crate::devices::control::ControlAction;
use crate::devices::socket::poll_now;
use crate::devices::virtio::DeviceError;
use crate::devices::Devices;
use crate::drain_timer::DrainTimer;
use crate::memory::GuestMemory;
use crate::outcome::Outcome;
use crate::vm::WindowPager;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;
use wasmcell_abi::file::{self, FileCall, FileReply};
use wasmcell_abi::socket::{self, SocketCall, SocketReply};

/// Errors of the vCPU thread that are the VMM's (or KVM's) problem, not the guest's.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// `KVM_RUN` failed.
    #[error("KVM_RUN failed")]
    Run(#[source] kvm_ioctls::Error),
    /// KVM stopped the guest for a reason the VMM does not handle (e.g. an emulation failure).
    #[error("Guest stopped with unexpected KVM exit: {0}")]
    UnexpectedExit(String),
    /// The vCPU thread could not confine itself: it never entered the guest.
    #[error("Cannot confine the vCPU thread")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

/// How the vCPU thread ended.
#[derive(Debug)]
pub enum VcpuStop {
    /// The guest ended by itself.
    Guest(Outcome),
    /// The guest parked the vCPU (nothing to do; the VM lives on).
    Parked,
    /// The VMM stopped it.
    Stopped,
}

/// Where a run is in being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Running = 0,
    StopRequested = 1,
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
    /// Times `KVM_RUN` returned.
    pub exits: AtomicU64,
    /// The vCPU thread while it may be kicked (cleared before it is joined).
    thread: Mutex<Option<libc::pthread_t>>,
}

impl RunControl {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            phase: AtomicU8::new(Phase::Running as u8),
            reason: AtomicU8::new(0),
            wake: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            done: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            boot_done: OnceLock::new(),
            exits: AtomicU64::new(0),
            thread: Mutex::new(None),
        })
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            _ => Phase::StopRequested,
        }
    }

    /// Whether a stop was requested: device work in progress gives up at its next step.
    pub fn stop_requested(&self) -> bool {
        self.phase() != Phase::Running
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

    /// Stops the run: returns once the vCPU thread has ended (or never entered the guest again).
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        if self
            .phase
            .compare_exchange(Phase::Running as u8, Phase::StopRequested as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let _ = self.wake.write(1);
        self.kick_until_gone();
    }

    /// Kicks the thread until it has ended (a thread not started yet sees the phase before it
    /// enters the guest).
    fn kick_until_gone(&self) {
        loop {
            {
                let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
                let Some(thread) = *thread else { return };
                // SAFETY: `thread` is a live, joinable thread: it clears itself (under this lock)
                // before it ends, and the joiner joins only after that. The kick handler is
                // installed and does nothing.
                unsafe { libc::pthread_kill(thread, kick_signal()) };
            }
            std::thread::sleep(Duration::from_micros(200));
        }
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
    /// Base RAM, where the CPU leaves a fault's frame (the exception stacks).
    pub memory: GuestMemory,
    /// Maps a workload's guarded memories as they grow (none for a vCPU without a workload).
    pub pager: Option<WindowPager>,
}

impl Vcpu {
    /// Runs the guest until it stops or the VMM stops it. Returns the vCPU's fd (for its next
    /// workload), how it ended and when.
    pub fn run(mut self, control: &Arc<RunControl>) -> (VcpuFd, Result<VcpuStop, VcpuError>, Instant) {
        // Confined before the guest's first instruction. The allocation first gives this
        // thread its malloc arena: making one reads /sys, which the filter forbids.
        drop(std::hint::black_box(Box::new(0u64)));
        if let Err(e) = crate::seccomp::apply(crate::seccomp::ThreadKind::Vcpu) {
            return (self.fd, Err(e.into()), Instant::now());
        }
        let result = self.run_loop(control);
        let stopped_at = Instant::now();
        arch::settle_vcpu(&mut self.fd);
        // Output the guest queued without a notify (batched) goes out even if the run was
        // stopped before a tick took it: one budget's worth, never blocking.
        self.devices.send_queued_output();
        self.devices.flush(matches!(result, Ok(VcpuStop::Guest(_))));
        (self.fd, result, stopped_at)
    }

    fn run_loop(&mut self, control: &Arc<RunControl>) -> Result<VcpuStop, VcpuError> {
        let mut timer = DrainTimer::new();
        loop {
            if control.stop_requested() {
                return Ok(VcpuStop::Stopped);
            }
            let exit = self.fd.run();
            control.exits.fetch_add(1, Ordering::Relaxed);
            let action = match exit {
                Ok(VcpuExit::IoOut(port, data)) => self.devices.io_out(port, data),
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.devices.io_in(port, data);
                    ControlAction::Continue
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    self.devices.mmio_read(addr, data);
                    ControlAction::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => self.devices.mmio_write(addr, data),
                Ok(VcpuExit::Shutdown) => return Ok(VcpuStop::Guest(arch::shutdown_outcome(&self.fd))),
                Ok(other) => match arch::guest_exit_outcome(&other) {
                    Some(outcome) => return Ok(VcpuStop::Guest(outcome)),
                    None => return Err(VcpuError::UnexpectedExit(format!("{other:?}"))),
                },
                // A tick of the drain timer (or a stop's kick: seen at the top).
                Err(e) if interrupted(&e) && timer.armed() => match self.devices.tick_console_output() {
                    Ok(_) => ControlAction::Continue,
                    Err(e) => ControlAction::DeviceError(format!("virtio-console: {e}")),
                },
                Err(e) if interrupted(&e) => ControlAction::Continue,
                Err(e) => return Err(VcpuError::Run(e)),
            };
            let outcome = match action {
                ControlAction::Continue => {
                    self.sync_timer(&mut timer);
                    continue;
                }
                ControlAction::BootDone => {
                    let _ = control.boot_done.set(Instant::now());
                    continue;
                }
                ControlAction::Wait(timeout) => {
                    // The wait drains the output itself; no ticks while the vCPU sleeps.
                    let _ = timer.set(false);
                    let waited = self
                        .devices
                        .stop_console_batching()
                        .and_then(|()| wait(control, &mut self.devices, timeout, &mut []));
                    match waited {
                        Ok(()) => continue,
                        Err(e) => Outcome::DeviceError(format!("virtio-console: {e}")),
                    }
                }
                ControlAction::Socket(op, call) => {
                    // A poll may sleep: no ticks meanwhile (the wait drains the output itself).
                    if op == socket::Op::Poll as u32 {
                        let _ = timer.set(false);
                    }
                    match self.socket_call(control, op, &call) {
                        Ok(()) => {
                            self.sync_timer(&mut timer);
                            continue;
                        }
                        Err(message) => Outcome::DeviceError(message),
                    }
                }
                ControlAction::File(op, call) => match self.file_call(op, &call) {
                    Ok(()) => continue,
                    Err(message) => Outcome::DeviceError(message),
                },
                ControlAction::MapMemory(request) => {
                    let mapped = self.pager.as_ref().map(|pager| pager.map(&request));
                    match mapped {
                        Some(Ok(())) => continue,
                        Some(Err(e)) => Outcome::DeviceError(format!("memory: {e}")),
                        None => Outcome::DeviceError(String::from("memory: a vCPU without a workload maps nothing")),
                    }
                }
                ControlAction::FaultReport(report) => arch::reported_fault_outcome(&report),
                ControlAction::Park => return Ok(VcpuStop::Parked),
                ControlAction::Exit(code) => Outcome::Exited(code),
                ControlAction::Panic(message) => Outcome::GuestPanic(message),
                ControlAction::Trap(message) => Outcome::WasmTrap(message),
                ControlAction::WorkloadError(message) => Outcome::WorkloadError(message),
                ControlAction::Fault(vector) => arch::fault_outcome(&self.fd, &self.memory, vector),
                ControlAction::DeviceError(message) => Outcome::DeviceError(message),
            };
            return Ok(VcpuStop::Guest(outcome));
        }
    }

    /// A socket call: carried out by the workload's socket device (a poll sleeps here, as a
    /// WAIT does), its reply written into the vCPU's block. `Err`: the device error that ends
    /// the workload.
    fn socket_call(&mut self, control: &RunControl, op: u32, call: &SocketCall) -> Result<(), String> {
        let Some(op) = socket::Op::from_u32(op) else {
            self.devices.control.reply(&SocketReply::error(socket::errno::EINVAL));
            return Ok(());
        };
        let Some(device) = self.devices.sockets.as_mut() else {
            self.devices.control.reply(&SocketReply::error(socket::errno::EACCES));
            return Ok(());
        };
        let reply = if op == socket::Op::Poll {
            let mut set = device.poll_set(call).map_err(|e| format!("socket: {e}"))?;
            let spin_until = Instant::now() + Duration::from_micros(50);
            let mut ready = poll_now(&mut set.fds);
            while !ready && set.timeout_us != Some(0) && Instant::now() < spin_until {
                std::hint::spin_loop();
                ready = poll_now(&mut set.fds);
            }
            if !ready && set.timeout_us != Some(0) {
                self.devices.stop_console_batching().map_err(|e| format!("virtio-console: {e}"))?;
                let timeout = set.timeout_us.map(Duration::from_micros);
                wait(control, &mut self.devices, timeout, &mut set.fds).map_err(|e| format!("virtio-console: {e}"))?;
                poll_now(&mut set.fds);
            }
            let device = self.devices.sockets.as_ref().expect("the device is still there");
            device.finish_poll(set)
        } else {
            device.call(op, call)
        };
        let reply = reply.map_err(|e| format!("socket: {e}"))?;
        self.devices.control.reply(&reply);
        Ok(())
    }

    /// A file call, carried out by the workload's file device, its reply written into the
    /// vCPU's block. `Err`: the device error that ends the workload.
    fn file_call(&mut self, op: u32, call: &FileCall) -> Result<(), String> {
        let reply = match (file::Op::from_u32(op), self.devices.files.as_mut()) {
            (None, _) => FileReply::error(libc::EINVAL),
            // No volumes: nothing to name (the guest never asks then).
            (Some(_), None) => FileReply::error(libc::EBADF),
            (Some(op), Some(device)) => device.call(op, call).map_err(|e| format!("file: {e}"))?,
        };
        self.devices.control.file_reply(&reply);
        Ok(())
    }

    /// Ticks while the console batches output, not otherwise. Without a timer the console
    /// cannot batch: it goes back to notifies.
    fn sync_timer(&mut self, timer: &mut DrainTimer) {
        let batching = self.devices.console_batching();
        if timer.set(batching).is_err() {
            let _ = self.devices.stop_console_batching();
        }
    }
}

/// Whether `KVM_RUN` came back without an exit: a signal (a kick or a tick) or nothing to do.
fn interrupted(e: &kvm_ioctls::Error) -> bool {
    e.errno() == libc::EINTR || e.errno() == libc::EAGAIN
}

/// Sleeps until `control.wake` is written, a stop is requested, `timeout` passes, input the
/// guest may receive arrives (it is then delivered), output the guest is waiting on moves on
/// (a chain given back), or one of `sockets` is ready (a socket poll). Output that a stream
/// cannot take yet is polled for, not retried, so a guest blocked on a stalled reader costs no
/// CPU; each slice of output sent is bounded and a stop is checked between slices.
fn wait(
    control: &RunControl,
    devices: &mut Devices,
    timeout: Option<Duration>,
    sockets: &mut [libc::pollfd],
) -> Result<(), DeviceError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if control.stop_requested() {
            return Ok(());
        }
        let output = devices.resume_console_output()?;
        if output.completed {
            return Ok(());
        }
        if output.more {
            continue;
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return Ok(());
        }
        let ts =
            remaining.map(|r| libc::timespec { tv_sec: r.as_secs() as libc::time_t, tv_nsec: r.subsec_nanos().into() });
        let pollfd = |fd, events| libc::pollfd { fd, events, revents: 0 };
        let mut fds = vec![pollfd(control.wake.as_raw_fd(), libc::POLLIN)];
        let input = devices.console_input_fd();
        if let Some(fd) = input {
            fds.push(pollfd(fd, libc::POLLIN));
        }
        fds.extend(output.blocked.iter().flatten().map(|&fd| pollfd(fd, libc::POLLOUT)));
        let first_socket = fds.len();
        fds.extend(sockets.iter().filter(|s| s.fd >= 0).copied());
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` are valid pollfds, `ts_ptr` is null or points at a live timespec, and a
        // null signal mask means "keep the current one".
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, std::ptr::null()) };
        if n <= 0 {
            // 0 is the timeout (caught at the top); < 0 is EINTR from a kick: re-check.
            continue;
        }
        if fds[0].revents != 0 {
            let _ = control.wake.read();
            return Ok(());
        }
        if input.is_some() && fds[1].revents != 0 {
            devices.deliver_console_input()?;
            return Ok(());
        }
        if fds[first_socket..].iter().any(|fd| fd.revents != 0) {
            return Ok(());
        }
        // An output stream drained: send more (top of the loop).
    }
}

#[cfg(test)]
mod tests {
    vmm_sys_util::ioctl_io_nr!(KVM_RUN, 0xae, 0x80);
    #[cfg(target_arch = "x86_64")]
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, 0xae, 0x81, kvm_bindings::kvm_regs);
    #[cfg(target_arch = "x86_64")]
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, 0xae, 0x83, kvm_bindings::kvm_sregs);
    vmm_sys_util::ioctl_iow_nr!(KVM_GET_ONE_REG, 0xae, 0xab, kvm_bindings::kvm_one_reg);

    /// The vCPU filter spells the ioctls a vCPU thread makes as numbers (the jail crate links no
    /// KVM crate): they must be kvm-ioctls' own.
    #[test]
    fn the_vcpu_filter_allows_the_ioctls_kvm_ioctls_makes() {
        use crate::seccomp;
        assert_eq!(seccomp::KVM_RUN, KVM_RUN());
        assert_eq!(seccomp::KVM_GET_ONE_REG, KVM_GET_ONE_REG());
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(seccomp::KVM_GET_REGS, KVM_GET_REGS());
            assert_eq!(seccomp::KVM_GET_SREGS, KVM_GET_SREGS());
        }
    }
}
