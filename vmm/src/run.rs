//! A running vCPU seen from outside: [`VcpuRun`] (wait for its end, then release its window and
//! keep the vCPU for the next workload) and [`Stopper`] (stop it from any thread), plus
//! [`supervise`], the event loop of a VM that runs one piece of work: the vCPU's end, a kill,
//! or a timeout, whichever comes first.

use crate::arch::VcpuPristine;
use crate::outcome::{Outcome, RunReport};
use crate::vcpu::{RunControl, StopReason, Vcpu, VcpuError, VcpuStop};
use crate::vm::{Error, IdleVcpu, VmInner};
use crate::window::Window;
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::VcpuFd;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

type VcpuThread = JoinHandle<(VcpuFd, Result<VcpuStop, VcpuError>, Instant)>;

/// What a running vCPU goes back to the pool with.
pub(crate) struct RunningVcpu {
    pub index: u32,
    /// Runs the vCPU has started, this one included.
    pub starts: u64,
    pub pristine: Option<VcpuPristine>,
}

/// One vCPU running (a workload, or the boot vCPU).
pub struct VcpuRun {
    vm: Arc<VmInner>,
    /// `None` once it went back to the pool.
    vcpu: Option<RunningVcpu>,
    control: Arc<RunControl>,
    thread: Option<VcpuThread>,
    window: Option<Window>,
    /// What the run's times count from.
    origin: Instant,
}

/// Stops a [`VcpuRun`] from any thread.
#[derive(Clone)]
pub struct Stopper {
    control: Arc<RunControl>,
}

impl Stopper {
    /// Stops the run (its outcome is then [`Outcome::Killed`], unless the guest ended first).
    /// Returns once the vCPU has left the guest; idempotent.
    pub fn stop(&self) {
        self.control.stop(StopReason::Kill);
    }
}

/// Starts `running`'s thread.
pub(crate) fn spawn(
    vm: Arc<VmInner>,
    vcpu: RunningVcpu,
    running: Vcpu,
    control: Arc<RunControl>,
    window: Option<Window>,
    origin: Instant,
) -> Result<VcpuRun, Error> {
    let thread_control = control.clone();
    let name = format!("wasmcell-vcpu{}", vcpu.index);
    let spawned = thread::Builder::new().name(name).spawn(move || {
        // Signals the waiter even if the thread panics, so nobody waits forever.
        let _done = DoneOnDrop(&thread_control);
        // SAFETY: `pthread_self` has no preconditions.
        thread_control.set_thread(Some(unsafe { libc::pthread_self() }));
        running.run(&thread_control)
    });
    match spawned {
        Ok(thread) => Ok(VcpuRun { vm, vcpu: Some(vcpu), control, thread: Some(thread), window, origin }),
        Err(e) => {
            // The vCPU fd went with the closure that could not become a thread: the vCPU is
            // lost to the pool (KVM keeps it until the VM goes), its window is not.
            if let Some(window) = window {
                vm.release(window);
            }
            Err(Error::SpawnVcpu(e))
        }
    }
}

/// Marks the run done (and no longer kickable) when the vCPU thread ends, however it ends.
struct DoneOnDrop<'a>(&'a RunControl);

impl Drop for DoneOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set_thread(None);
        let _ = self.0.done.write(1);
    }
}

impl VcpuRun {
    /// A handle that stops this run.
    pub fn stopper(&self) -> Stopper {
        Stopper { control: self.control.clone() }
    }

    /// Readable once the vCPU has stopped (for an event loop); [`VcpuRun::join`] then returns
    /// at once.
    pub fn done_fd(&self) -> RawFd {
        self.control.done.as_raw_fd()
    }

    fn stop(&self, reason: StopReason) {
        self.control.stop(reason);
    }

    /// Waits for the vCPU to stop, gives its window back to the VM and keeps the vCPU for the
    /// next workload.
    pub fn join(mut self) -> Result<RunReport, Error> {
        self.finish()
    }

    /// `join`'s work, once: the thread and the window are taken out of the run.
    fn finish(&mut self) -> Result<RunReport, Error> {
        let thread = self.thread.take().expect("joined once");
        let ended = thread.join().map_err(|_| Error::VcpuPanicked).and_then(|(fd, result, stopped_at)| {
            if let Some(RunningVcpu { index, starts, pristine }) = self.vcpu.take() {
                self.vm.park_vcpu(IdleVcpu { index, fd, starts, pristine });
            }
            Ok((result?, stopped_at))
        });
        let outcome = match &ended {
            Ok((VcpuStop::Guest(outcome), _)) => Some(outcome.clone()),
            Ok((VcpuStop::Parked, _)) => Some(Outcome::Parked),
            Ok((VcpuStop::Stopped, _)) => Some(match self.control.reason() {
                Some(StopReason::Timeout) => Outcome::Timeout,
                _ => Outcome::Killed,
            }),
            Err(_) => None,
        };
        if let Some(window) = self.window.take() {
            self.vm.release(window);
        }
        let (_, stopped_at) = ended?;
        Ok(RunReport {
            outcome: outcome.expect("known when the thread ended"),
            boot_time: self.control.boot_done.get().map(|t| t.duration_since(self.origin)),
            run_time: stopped_at.duration_since(self.origin),
            exits: self.control.exits.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

impl Drop for VcpuRun {
    /// A run dropped without being joined is stopped and joined, so that its vCPU thread never
    /// outlives the VM.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(StopReason::Kill);
            let _ = self.finish();
        }
    }
}

/// Runs `run` to its end, stopping it on `kill` or after `timeout` (counted from the VM's
/// creation, like the boot-time figure). This thread becomes the event loop.
pub(crate) fn supervise(run: VcpuRun, timeout: Option<Duration>, kill: &EventFd) -> Result<RunReport, Error> {
    let mut timer = None;
    if let Some(timeout) = timeout {
        let mut fd = TimerFd::new().map_err(errno_to_io).map_err(Error::EventLoop)?;
        fd.reset(timeout.saturating_sub(run.vm.created().elapsed()).max(Duration::from_nanos(1)), None)
            .map_err(errno_to_io)
            .map_err(Error::EventLoop)?;
        timer = Some(fd);
    }
    match wait_for_stop(run.done_fd(), kill, timer.as_ref())? {
        Reason::VcpuDone => {}
        Reason::Timeout => run.stop(StopReason::Timeout),
        Reason::Kill => run.stop(StopReason::Kill),
    }
    run.join()
}

fn errno_to_io(e: vmm_sys_util::errno::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.errno())
}

/// Why the event loop decided the run is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    VcpuDone,
    Timeout,
    Kill,
}

/// The event-loop subscriber that watches for the end of a run.
struct Supervisor {
    vcpu_done: RawFd,
    kill: RawFd,
    timer: Option<RawFd>,
    reason: Option<Reason>,
}

impl MutEventSubscriber for Supervisor {
    fn init(&mut self, ops: &mut EventOps) {
        for fd in [Some(self.vcpu_done), Some(self.kill), self.timer].into_iter().flatten() {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                // Without its events the loop would never end: fail the run instead of hanging.
                eprintln!("wasmcell: cannot watch fd {fd}: {e:?}");
                self.reason = Some(Reason::Kill);
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let reason = match events.fd() {
            fd if fd == self.vcpu_done => Reason::VcpuDone,
            fd if Some(fd) == self.timer => Reason::Timeout,
            _ => Reason::Kill,
        };
        // The vCPU finishing wins over a timeout or kill that raced with it.
        if self.reason != Some(Reason::VcpuDone) {
            self.reason = Some(reason);
        }
    }
}

fn wait_for_stop(vcpu_done: RawFd, kill: &EventFd, timer: Option<&TimerFd>) -> Result<Reason, Error> {
    let mut manager = EventManager::<Supervisor>::new()?;
    let id = manager.add_subscriber(Supervisor {
        vcpu_done,
        kill: kill.as_raw_fd(),
        timer: timer.map(|t| t.as_raw_fd()),
        reason: None,
    });
    loop {
        if let Some(reason) = manager.subscriber_mut(id)?.reason {
            return Ok(reason);
        }
        manager.run()?;
    }
}
