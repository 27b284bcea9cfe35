//! A pod's VMM process: it boots the pod's VM once, says so on its control channel, then runs
//! each workload the shim sends in that VM (a vCPU and a window of its own), stops one when
//! asked, and reports each exit. It ends when the pod is stopped (SIGTERM/SIGINT: every workload
//! still running is stopped first) or when the shim goes away (its end of the channel closes).
//! Its jail closes once the VM exists, before the VM boots: each workload's files come as
//! descriptors with its start request.

use super::protocol::{self, Event, Receiver, Request, CHANNEL_FD};
use crate::plan::WorkloadPlan;
use crate::service::error_chain;
use crate::vmm_child::Confinement;
use crate::workload::{self, Opened};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use wasmcell_abi::boot_info::LOG_OFF;
use wasmcell_vmm::{signals, Stopper, Vm, VmConfig};

/// A workload running in the pod's VM.
struct Running {
    stopper: Stopper,
    /// The signal it was asked to stop with (0 for none yet).
    signal: Arc<AtomicI32>,
}

/// What the request loop and the exit reporters share.
struct Pod {
    events: Mutex<UnixStream>,
    running: Mutex<HashMap<String, Running>>,
}

impl Pod {
    fn send(&self, event: &Event) {
        // A shim that is gone cannot be told; the request loop sees the closed channel and ends.
        let _ = protocol::send(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()), event);
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every workload still running, as SIGKILL would.
    fn stop_all(&self) {
        let stoppers: Vec<_> = self
            .running()
            .values()
            .map(|r| {
                let _ = r.signal.compare_exchange(0, libc::SIGKILL, Ordering::AcqRel, Ordering::Acquire);
                r.stopper.clone()
            })
            .collect();
        stoppers.iter().for_each(Stopper::stop);
    }
}

/// The control channel the shim passed (fd 3).
fn channel() -> UnixStream {
    // SAFETY: the shim passes the channel as fd 3 of this process and nothing else uses it; each
    // caller (`serve` or `not_ready`, never both) takes ownership of it, once.
    unsafe { UnixStream::from_raw_fd(CHANNEL_FD) }
}

/// Tells the shim the pod's VM cannot come up, and why (setting the process up failed before
/// `serve`).
pub fn not_ready(message: &str) {
    let _ = protocol::send(&mut &channel(), &Event::NotReady { message: message.to_string() });
}

/// Serves the pod until it is stopped; the process's exit status. A pod that cannot come up
/// says why on the channel (`NotReady`) and ends with status 1.
pub fn serve(jail: Confinement) -> i32 {
    let channel = channel();
    match boot(&channel, jail) {
        Ok((vm, pod, stopped)) => run(vm, pod, channel, stopped),
        Err(message) => {
            eprintln!("wasmcell: {message}");
            let _ = protocol::send(&mut &channel, &Event::NotReady { message });
            1
        }
    }
}

type Booted = (Vm, Arc<Pod>, signals::Received);

/// Everything up to `Ready`: the VM, the jail, SIGTERM/SIGINT ending the request loop, boot.
fn boot(channel: &UnixStream, jail: Confinement) -> Result<Booted, String> {
    let vm = Vm::try_from(VmConfig { log_level: LOG_OFF, ..Default::default() }).map_err(|e| error_chain(&e))?;
    jail.close()?;
    // Before the VM starts any thread, so that all of them leave the signals to the watcher.
    let channel_fd = channel.as_raw_fd();
    let stopped = signals::on_stop_signal(move |_| {
        // Ends the request loop: reads from the channel return end of file.
        // SAFETY: `shutdown` on the channel's fd, which stays open until the process ends
        // (the request loop owns it, and the process exits when the loop is done).
        unsafe { libc::shutdown(channel_fd, libc::SHUT_RD) };
    })
    .map_err(|e| format!("cannot watch for signals: {e}"))?;
    let boot = vm.boot().map_err(|e| error_chain(&e))?;
    let events = channel.try_clone().map_err(|e| format!("cannot use the control channel: {e}"))?;
    let pod = Arc::new(Pod { events: Mutex::new(events), running: Mutex::default() });
    pod.send(&Event::Ready { boot_ms: boot.as_secs_f64() * 1e3 });
    Ok((vm, pod, stopped))
}

/// The request loop, then the pod's end: what still runs is stopped and its exit reported.
fn run(vm: Vm, pod: Arc<Pod>, channel: UnixStream, stopped: signals::Received) -> i32 {
    let mut reporters = Vec::new();
    let mut requests = Receiver::new(channel);
    loop {
        match requests.receive::<Request>() {
            Ok(Some(Request::Start { id, workload })) => {
                let fds = requests.take_fds(workload.descriptors());
                if let Some(reporter) = start(&vm, &pod, id, workload, fds) {
                    reporters.push(reporter);
                }
            }
            Ok(Some(Request::Kill { id, signal })) => kill(&pod, &id, signal),
            Ok(None) | Err(_) => break,
        }
        reporters.retain(|r: &JoinHandle<()>| !r.is_finished());
    }
    pod.stop_all();
    for reporter in reporters {
        let _ = reporter.join();
    }
    128 + stopped.received().unwrap_or(libc::SIGKILL)
}

/// Starts a workload with the files that came with its request; the thread that will report
/// its exit.
fn start(vm: &Vm, pod: &Arc<Pod>, id: String, plan: WorkloadPlan, fds: Option<Vec<OwnedFd>>) -> Option<JoinHandle<()>> {
    let fds = fds.ok_or_else(|| String::from("the start request came without the workload's files"));
    let loaded = fds.and_then(|fds| workload::load(&plan, Opened::from_fds(&plan, fds)?));
    let run = loaded.and_then(|(w, reporter)| Ok((vm.start(w).map_err(|e| error_chain(&e))?, reporter)));
    let (run, exit_reporter) = match run {
        Ok(run) => run,
        Err(message) => {
            pod.send(&Event::Failed { id, message });
            return None;
        }
    };
    let signal = Arc::new(AtomicI32::new(0));
    pod.running().insert(id.clone(), Running { stopper: run.stopper(), signal: signal.clone() });
    // Before the reporter exists, so that the shim hears of the start before of the exit.
    pod.send(&Event::Started { id: id.clone() });
    let reporter_pod = pod.clone();
    let failed_id = id.clone();
    let reporter = std::thread::Builder::new().name("wasmcell-exit".into()).spawn(move || {
        let status = match run.join() {
            Ok(report) => {
                let signal = Some(signal.load(Ordering::Acquire)).filter(|&s| s != 0);
                workload::exit_status(report.outcome, signal, exit_reporter)
            }
            Err(e) => {
                exit_reporter.report(&format!("wasmcell: {}", error_chain(&e)));
                1
            }
        };
        reporter_pod.running().remove(&id);
        reporter_pod.send(&Event::Exited { id, status: status as u32 });
    });
    match reporter {
        Ok(reporter) => Some(reporter),
        Err(e) => {
            // The run went with the closure that could not become a thread: dropping a run stops
            // and joins it.
            eprintln!("wasmcell: cannot watch a workload: {e}");
            pod.running().remove(&failed_id);
            pod.send(&Event::Exited { id: failed_id, status: 128 + libc::SIGKILL as u32 });
            None
        }
    }
}

fn kill(pod: &Pod, id: &str, signal: u32) {
    let stopper = pod.running().get(id).map(|r| {
        let _ = r.signal.compare_exchange(0, signal as i32, Ordering::AcqRel, Ordering::Acquire);
        r.stopper.clone()
    });
    // A workload that has already ended needs nothing: its exit is on its way to the shim. The
    // stop runs on a thread of its own: a vCPU thread stuck outside the guest (a write to a
    // full stdout pipe) must not hold up the requests of the pod's other workloads.
    if let Some(stopper) = stopper {
        let _ = std::thread::Builder::new().name("wasmcell-stop".into()).spawn(move || stopper.stop());
    }
}
