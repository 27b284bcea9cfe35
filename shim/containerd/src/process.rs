//! A task's process as the shim tracks it: its pid once started, and its exit status once
//! known, which `wait` blocks for. For a container of its own it is the VMM child; for a
//! container in a pod, the pod's VMM (its exit comes as a message, not from the reaper).

use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct Process {
    state: Mutex<State>,
    exited: Condvar,
}

#[derive(Default)]
struct State {
    pid: Option<u32>,
    exit_status: Option<u32>,
}

impl Process {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the pid the task started with.
    pub fn started(&self, pid: u32) {
        self.state().pid = Some(pid);
    }

    /// The pid, if started and not yet exited.
    pub fn running_pid(&self) -> Option<u32> {
        let state = self.state();
        state.pid.filter(|_| state.exit_status.is_none())
    }

    /// Whether it was started at all.
    pub fn was_started(&self) -> bool {
        self.state().pid.is_some()
    }

    /// Whether its exit is known.
    pub fn has_exited(&self) -> bool {
        self.state().exit_status.is_some()
    }

    /// Records the exit status; the first one recorded stands.
    pub fn record_exit(&self, status: u32) {
        let mut state = self.state();
        state.exit_status.get_or_insert(status);
        self.exited.notify_all();
    }

    /// Blocks until the exit is known; the exit status.
    pub fn wait(&self) -> u32 {
        let mut state = self.state();
        loop {
            if let Some(status) = state.exit_status {
                return status;
            }
            state = self.exited.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_first_exit_stands_and_wakes_waiters() {
        let process = Arc::new(Process::default());
        assert_eq!((process.running_pid(), process.was_started()), (None, false));
        process.started(7);
        assert_eq!(process.running_pid(), Some(7));
        let waiter = {
            let process = process.clone();
            std::thread::spawn(move || process.wait())
        };
        process.record_exit(3);
        process.record_exit(137);
        assert_eq!(waiter.join().unwrap(), 3);
        assert_eq!((process.running_pid(), process.has_exited()), (None, true));
    }
}
