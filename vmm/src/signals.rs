//! For the process that runs a VM (`wasmcell run`, the shim's VMM children): SIGINT and SIGTERM
//! stop the VM cleanly (the run ends as "killed", a pod's workloads are stopped) instead of
//! killing the process mid-run. The signals are blocked in every thread and taken by one waiting
//! thread.

use crate::VmHandle;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Which signal, if any, stopped the VM.
pub struct Received(Arc<AtomicI32>);

impl Received {
    pub fn received(&self) -> Option<i32> {
        Some(self.0.load(Ordering::Acquire)).filter(|&s| s != 0)
    }
}

/// Blocks SIGINT/SIGTERM in this thread (and the threads it spawns later, such as the vCPU) and
/// starts a thread that kills the VM when one arrives.
pub fn forward_to(handle: VmHandle) -> std::io::Result<Received> {
    on_stop_signal(move |_| handle.kill())
}

/// Blocks SIGINT/SIGTERM in this thread and the threads it spawns later, before anything
/// starts threads of its own (a compiler's worker pool): a stop signal that arrives before
/// [`forward_to`] then waits for it instead of killing the process outright.
pub fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before use; pthread_sigmask
    // only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Blocks SIGINT/SIGTERM in this thread (and the threads it spawns later) and starts a thread
/// that calls `stop` with the signal when one arrives. Call it (or [`block_stop_signals`])
/// before any other thread starts.
pub fn on_stop_signal(stop: impl FnOnce(i32) + Send + 'static) -> std::io::Result<Received> {
    let set = block_stop_signals()?;
    let received = Arc::new(AtomicI32::new(0));
    let flag = received.clone();
    std::thread::Builder::new().name("wasmcell-signals".into()).spawn(move || {
        let mut signal = 0;
        // SAFETY: `set` is a valid, initialised signal set and `signal` a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            flag.store(signal, Ordering::Release);
            stop(signal);
        }
    })?;
    Ok(Received(received))
}
