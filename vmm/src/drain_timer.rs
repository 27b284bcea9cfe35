//! The vCPU thread's drain timer. While a workload's output is batched (its console drains the
//! transmit queues without notifies: `devices::virtio::console::transmit`), a POSIX timer sends
//! the vCPU's thread the kick signal every [`PERIOD`]; `KVM_RUN` returns `EINTR` and the thread
//! drains the queues before it enters the guest again. Armed only while output is batched, so a
//! vCPU that stopped writing, or waits, gets no ticks.

use crate::vcpu::kick_signal;
use std::io;
use std::time::Duration;

/// How often batched output is drained: the most a line of output waits while its workload
/// computes.
pub const PERIOD: Duration = Duration::from_millis(4);

/// `SIGEV_THREAD_ID` (Linux): the signal goes to one thread.
const SIGEV_THREAD_ID: libc::c_int = 4;

/// A periodic timer that kicks the thread that created it.
pub struct DrainTimer {
    timer: Option<libc::timer_t>,
    armed: bool,
}

impl DrainTimer {
    /// A timer for the calling thread, created on first use (most runs never batch).
    pub fn new() -> Self {
        Self { timer: None, armed: false }
    }

    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Ticks every [`PERIOD`] from now while `on`; no ticks after `set(false)` returns (but one
    /// that was already sent may still arrive).
    pub fn set(&mut self, on: bool) -> io::Result<()> {
        if on == self.armed {
            return Ok(());
        }
        let timer = match self.timer {
            Some(timer) => timer,
            None => {
                let timer = create()?;
                self.timer = Some(timer);
                timer
            }
        };
        let period = if on {
            libc::timespec { tv_sec: 0, tv_nsec: PERIOD.as_nanos() as libc::c_long }
        } else {
            libc::timespec { tv_sec: 0, tv_nsec: 0 }
        };
        let spec = libc::itimerspec { it_interval: period, it_value: period };
        // SAFETY: `timer` is a live timer of this process; `spec` is a valid itimerspec and the
        // old value is not asked for.
        if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = on;
        Ok(())
    }
}

impl Drop for DrainTimer {
    fn drop(&mut self) {
        if let Some(timer) = self.timer {
            // SAFETY: `timer` was created by `create` and is deleted once, here.
            unsafe { libc::timer_delete(timer) };
        }
    }
}

/// A disarmed timer that sends the kick signal to the calling thread.
fn create() -> io::Result<libc::timer_t> {
    // SAFETY: an all-zero sigevent is valid; the fields that matter are set below.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = kick_signal();
    // SAFETY: gettid has no preconditions.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `event` and `timer` are valid for the call; the kernel fills `timer`.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(timer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeps in `poll` for at most `millis`: whether a signal cut the sleep short.
    fn interrupted_within(millis: i32) -> bool {
        let mut fds = [libc::pollfd { fd: -1, events: 0, revents: 0 }];
        // SAFETY: one valid (ignored) pollfd and a finite timeout.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) };
        n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    }

    #[test]
    fn an_armed_timer_interrupts_a_sleep_and_a_disarmed_one_does_not() {
        crate::vcpu::install_kick_handler().unwrap();
        let mut timer = DrainTimer::new();
        timer.set(true).unwrap();
        assert!(interrupted_within(1000), "an armed timer did not tick within a second");
        timer.set(false).unwrap();
        assert!(!timer.armed());
        // A tick sent before the disarm may still be pending: let it land, then expect none.
        std::thread::sleep(PERIOD * 2);
        assert!(!interrupted_within(100), "a disarmed timer still interrupted a poll");
    }
}
