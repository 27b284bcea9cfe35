//! The shim's side of a pod's VMM ([`PodVm`]): it spawns the VMM with a control channel, then
//! starts and stops the pod's workloads in it and hands each exit to the container it belongs
//! to. The sandbox's start does not wait for the VM to come up: the VMM reads requests only once
//! it is, so a container's start queues behind the boot, which overlaps with what CRI does in
//! between; a VM that fails to come up fails that start with its reason (and the sandbox task
//! exits). If the VMM goes away, every workload still known is reported exited with 137, as for
//! a process killed with SIGKILL.

use super::protocol::{self, Event, Request, CHANNEL_FD};
use crate::instance::InstanceError;
use crate::plan::WorkloadPlan;
use crate::process::Process;
use crate::workload::Opened;
use std::collections::HashMap;
use std::io::BufReader;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the VM may take to come up and a workload to start.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The status of a workload whose VMM went away.
const GONE_STATUS: u32 = 128 + libc::SIGKILL as u32;

/// A running pod VMM.
pub struct PodVm {
    pid: u32,
    requests: Mutex<UnixStream>,
    shared: Arc<Shared>,
}

/// What the request side and the event reader share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Starts waiting for their answer, by container id.
    starting: HashMap<String, SyncSender<Result<(), String>>>,
    /// Workloads started (or starting), by container id.
    workloads: HashMap<String, Arc<Process>>,
    /// The channel closed: the VMM is gone.
    closed: bool,
    /// Why the VM did not come up, if it said.
    boot_failure: Option<String>,
}

impl State {
    /// Why requests cannot be answered any more.
    fn gone_reason(&self) -> String {
        match &self.boot_failure {
            Some(message) => format!("the pod's VM did not start: {message}"),
            None => "the pod's VMM exited".into(),
        }
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the VMM's events until its channel closes.
    fn read_events(&self, mut events: BufReader<UnixStream>) {
        while let Ok(Some(event)) = protocol::receive::<Event>(&mut events) {
            let mut state = self.state();
            match event {
                Event::Started { id } => {
                    if let Some(answer) = state.starting.remove(&id) {
                        let _ = answer.send(Ok(()));
                    }
                }
                Event::Failed { id, message } => {
                    state.workloads.remove(&id);
                    if let Some(answer) = state.starting.remove(&id) {
                        let _ = answer.send(Err(message));
                    }
                }
                Event::Exited { id, status } => {
                    if let Some(process) = state.workloads.remove(&id) {
                        process.record_exit(status);
                    }
                }
                Event::Ready { .. } => {}
                Event::NotReady { message } => state.boot_failure = Some(message),
            }
        }
        // A line that is not a message (too long, not JSON) ends the channel for both sides:
        // the VMM, reading end of file, stops what it runs and exits.
        let _ = events.get_ref().shutdown(std::net::Shutdown::Both);
        let mut state = self.state();
        state.closed = true;
        let reason = state.gone_reason();
        for (_, answer) in state.starting.drain() {
            let _ = answer.send(Err(reason.clone()));
        }
        for (_, process) in state.workloads.drain() {
            process.record_exit(GONE_STATUS);
        }
    }
}

impl PodVm {
    /// Spawns `exe PLAN` (the VMM binary) in `bundle` (the sandbox's) with the control channel as its fd 3.
    /// `on_spawn` gets the pid right after the spawn (to watch for its exit).
    pub fn spawn(
        exe: &Path,
        plan: &Path,
        bundle: &Path,
        on_spawn: impl FnOnce(u32),
    ) -> Result<Arc<Self>, InstanceError> {
        let (ours, theirs) = UnixStream::pair().map_err(InstanceError::Spawn)?;
        let events = BufReader::new(ours.try_clone().map_err(InstanceError::Spawn)?);
        let their_fd = theirs.as_raw_fd();
        let mut command = Command::new(exe);
        command
            .arg(plan)
            .current_dir(bundle)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        wasmcell_vmm::jail::give_descriptor(&mut command, their_fd, CHANNEL_FD);
        let child = command.spawn().map_err(InstanceError::Spawn)?;
        drop(theirs);
        let pid = child.id();
        // The reaper waits for it, not `child`: dropping `child` neither waits nor kills.
        drop(child);
        on_spawn(pid);
        let pod = Arc::new(Self { pid, requests: Mutex::new(ours), shared: Arc::default() });
        let shared = pod.shared.clone();
        std::thread::Builder::new()
            .name("wasmcell-pod-events".into())
            .spawn(move || shared.read_events(events))
            .map_err(InstanceError::Spawn)?;
        Ok(pod)
    }

    /// The VMM's pid (every container of the pod reports it).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn send(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        protocol::send_with_fds(&requests, request, fds)
    }

    /// Starts container `id`'s workload with its files (`opened`, sent as descriptors: the VMM
    /// opens nothing by name); `process` gets its exit.
    pub fn start(&self, id: &str, workload: WorkloadPlan, opened: Opened, process: Arc<Process>) -> Result<(), String> {
        let (answer, answered) = mpsc::sync_channel(1);
        {
            let mut state = self.shared.state();
            if state.closed {
                return Err(state.gone_reason());
            }
            state.starting.insert(id.to_string(), answer);
            state.workloads.insert(id.to_string(), process);
        }
        // A request the VMM cannot take any more (its end closed) is answered all the same: the
        // event reader, seeing the channel close, fails every start still waiting, with the
        // reason the VMM gave if it gave one.
        let sent = self.send(&Request::Start { id: id.to_string(), workload }, &opened.fds());
        drop(opened);
        // A request refused before it was written gets no answer: do not wait for one.
        let answer = match &sent {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(mpsc::RecvTimeoutError::Disconnected),
            _ => answered.recv_timeout(ANSWER_TIMEOUT),
        };
        if !matches!(answer, Ok(Ok(()))) {
            let mut state = self.shared.state();
            state.starting.remove(id);
            state.workloads.remove(id);
        }
        match (answer, sent) {
            (Ok(result), _) => result,
            (Err(_), Err(e)) => Err(send_error(&e)),
            (Err(_), Ok(())) => Err("the pod's VMM did not answer".into()),
        }
    }

    /// Asks for container `id`'s workload to be stopped; its exit follows.
    pub fn kill(&self, id: &str, signal: u32) -> Result<(), String> {
        self.send(&Request::Kill { id: id.to_string(), signal }, &[]).map_err(|e| send_error(&e))
    }
}

/// Why a request could not be sent.
fn send_error(error: &std::io::Error) -> String {
    match error.kind() {
        // Refused before anything was written (`protocol::send`): the channel is fine.
        std::io::ErrorKind::InvalidInput => format!("the request is too large for the pod's VMM: {error}"),
        _ => format!("the pod's VMM cannot be reached: {error}"),
    }
}

impl Drop for PodVm {
    /// Closes the channel (the event reader's copy too): a VMM whose shim let go of it stops
    /// what it runs and exits, as when the shim dies.
    fn drop(&mut self) {
        let requests = self.requests.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = requests.shutdown(std::net::Shutdown::Both);
    }
}
