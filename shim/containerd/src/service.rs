//! containerd's task service (API v2) over [`Instance`]s: the state machine of each task
//! (created → running → stopped → deleted), exit statuses, and the TaskCreate/Start/Exit/Delete
//! events. Nothing here knows about VMs; the tests drive it in-process with a fake instance.

use crate::instance::{CreateRequest, Instance, InstanceError};
use crate::rootfs::RootfsMount;
use containerd_shim::api;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc;
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where events go: containerd's publisher in the shim, a recorder in tests.
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>);
}

/// The task service for instances of type `I`.
pub struct Service<I: Instance> {
    tasks: Arc<Mutex<HashMap<String, Arc<TaskEntry<I>>>>>,
    events: Arc<dyn EventSink>,
    exit: Arc<ExitSignal>,
}

impl<I: Instance> Clone for Service<I> {
    fn clone(&self) -> Self {
        Self { tasks: self.tasks.clone(), events: self.events.clone(), exit: self.exit.clone() }
    }
}

struct TaskEntry<I> {
    instance: I,
    bundle: String,
    stdio: (String, String, String),
    state: Mutex<TaskState>,
}

impl<I> TaskEntry<I> {
    /// Records the exit; the first report publishes TaskExit, under the state lock, so that no
    /// caller sees the task stopped (or deletes it) before containerd has been told it exited.
    fn record_exit(&self, id: &str, status: u32, events: &dyn EventSink) -> SystemTime {
        let mut state = self.state.lock().unwrap();
        if let Some((_, at)) = state.exit {
            return at;
        }
        let at = SystemTime::now();
        state.exit = Some((status, at));
        let event = TaskExit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: state.pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        };
        events.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event));
        at
    }
}

#[derive(Clone, Copy, Default)]
struct TaskState {
    pid: u32,
    started: bool,
    exit: Option<(u32, SystemTime)>,
}

/// A ttrpc status: containerd maps its code to an errdefs class and shows the message.
fn status(code: ttrpc::Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

fn not_found(id: &str) -> ttrpc::Error {
    status(ttrpc::Code::NOT_FOUND, format!("task {id} not found"))
}

fn unsupported(what: &str) -> ttrpc::Error {
    status(ttrpc::Code::UNIMPLEMENTED, format!("{what} is not supported by wasmcell"))
}

fn timestamp(at: SystemTime) -> containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}

impl<I: Instance> Service<I> {
    pub fn new(events: Arc<dyn EventSink>, exit: Arc<ExitSignal>) -> Self {
        Self { tasks: Arc::default(), events, exit }
    }

    fn task(&self, id: &str) -> TtrpcResult<Arc<TaskEntry<I>>> {
        self.tasks.lock().unwrap().get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// Waits for the task's exit in the background and records it.
    fn watch_exit(&self, id: String, entry: Arc<TaskEntry<I>>) {
        let events = self.events.clone();
        std::thread::spawn(move || {
            let status = entry.instance.wait();
            entry.record_exit(&id, status, events.as_ref());
        });
    }
}

/// The task API, callable without ttrpc (the [`Task`] impl below forwards to these).
impl<I: Instance> Service<I> {
    pub fn create_task(&self, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        if self.tasks.lock().unwrap().contains_key(&req.id) {
            return Err(status(ttrpc::Code::ALREADY_EXISTS, format!("task {} already exists", req.id)));
        }
        let request = CreateRequest {
            id: req.id.clone(),
            bundle: req.bundle.clone().into(),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| RootfsMount { fs_type: m.type_.clone(), source: m.source.clone(), options: m.options.clone() })
                .collect(),
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let instance =
            I::create(&request).map_err(|e: InstanceError| status(ttrpc::Code::INVALID_ARGUMENT, error_chain(&e)))?;
        let entry = Arc::new(TaskEntry {
            instance,
            bundle: req.bundle.clone(),
            stdio: (req.stdin.clone(), req.stdout.clone(), req.stderr.clone()),
            state: Mutex::default(),
        });
        self.tasks.lock().unwrap().insert(req.id.clone(), entry);
        let event = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: Some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.events.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event));
        Ok(api::CreateTaskResponse { pid: 0, ..Default::default() })
    }

    pub fn start_task(&self, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        if !req.exec_id.is_empty() {
            return Err(unsupported("exec"));
        }
        let entry = self.task(&req.id)?;
        {
            let state = entry.state.lock().unwrap();
            if state.started || state.exit.is_some() {
                return Err(status(ttrpc::Code::FAILED_PRECONDITION, format!("task {} was already started", req.id)));
            }
        }
        let pid = entry.instance.start().map_err(|e| status(ttrpc::Code::INTERNAL, error_chain(&e)))?;
        {
            let mut state = entry.state.lock().unwrap();
            state.pid = pid;
            state.started = true;
        }
        self.watch_exit(req.id.clone(), entry);
        let event = TaskStart { container_id: req.id.clone(), pid, ..Default::default() };
        self.events.publish(topics::TASK_START_EVENT_TOPIC, Box::new(event));
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    pub fn task_state(&self, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let entry = self.task(&req.id)?;
        let state = *entry.state.lock().unwrap();
        let status = match (state.started, state.exit) {
            (_, Some(_)) => api::Status::STOPPED,
            (true, None) => api::Status::RUNNING,
            (false, None) => api::Status::CREATED,
        };
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: entry.bundle.clone(),
            pid: state.pid,
            status: status.into(),
            stdin: entry.stdio.0.clone(),
            stdout: entry.stdio.1.clone(),
            stderr: entry.stdio.2.clone(),
            exit_status: state.exit.map_or(0, |e| e.0),
            exited_at: state.exit.map(|e| timestamp(e.1)).into(),
            ..Default::default()
        })
    }

    pub fn wait_task(&self, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let entry = self.task(&req.id)?;
        let status = entry.instance.wait();
        // Recorded here too, not only by the exit watcher: a client that calls `state` right
        // after `wait` returns (as `ctr run --rm` does before `delete`) must see STOPPED.
        let at = entry.record_exit(&req.id, status, self.events.as_ref());
        Ok(api::WaitResponse { exit_status: status, exited_at: Some(timestamp(at)).into(), ..Default::default() })
    }

    pub fn kill_task(&self, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        if !req.exec_id.is_empty() {
            return Err(unsupported("exec"));
        }
        let entry = self.task(&req.id)?;
        match entry.instance.kill(req.signal) {
            Ok(()) => Ok(api::Empty::new()),
            Err(InstanceError::NotRunning) => {
                Err(status(ttrpc::Code::NOT_FOUND, format!("task {} is not running", req.id)))
            }
            Err(e) => Err(status(ttrpc::Code::INTERNAL, error_chain(&e))),
        }
    }

    pub fn delete_task(&self, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            return Err(unsupported("exec"));
        }
        let entry = self.tasks.lock().unwrap().remove(&req.id).ok_or_else(|| not_found(&req.id))?;
        entry.instance.delete();
        let state = *entry.state.lock().unwrap();
        let (status, at) = state.exit.unwrap_or((137, SystemTime::now()));
        let event = TaskDelete {
            container_id: req.id.clone(),
            id: req.id.clone(),
            pid: state.pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        };
        self.events.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(event));
        Ok(api::DeleteResponse {
            pid: state.pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    pub fn task_pids(&self, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let entry = self.task(&req.id)?;
        let pid = entry.state.lock().unwrap().pid;
        let processes = (pid != 0)
            .then(|| containerd_shim::protos::api::ProcessInfo { pid, ..Default::default() })
            .into_iter()
            .collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    pub fn connect_task(&self, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.tasks.lock().unwrap().get(&req.id).map_or(0, |e| e.state.lock().unwrap().pid);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    pub fn task_stats(&self, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        let entry = self.task(&req.id)?;
        match entry.instance.stats() {
            Ok(stats) => Ok(api::StatsResponse { stats: Some(stats).into(), ..Default::default() }),
            Err(InstanceError::NotRunning) => {
                Err(status(ttrpc::Code::NOT_FOUND, format!("task {} is not running", req.id)))
            }
            Err(e) => Err(status(ttrpc::Code::INTERNAL, error_chain(&e))),
        }
    }

    pub fn shutdown_service(&self, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.tasks.lock().unwrap().is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}

impl<I: Instance> Task for Service<I> {
    fn create(&self, _: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        self.create_task(req)
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        self.start_task(req)
    }

    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        self.task_state(req)
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        self.wait_task(req)
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.kill_task(req)
    }

    fn delete(&self, _: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        self.delete_task(req)
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        self.task_pids(req)
    }

    fn connect(&self, _: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        self.connect_task(req)
    }

    fn shutdown(&self, _: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        self.shutdown_service(req)
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        self.task_stats(req)
    }

    fn exec(&self, _: &TtrpcContext, _: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        Err(unsupported("exec"))
    }

    fn resize_pty(&self, _: &TtrpcContext, _: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        Err(unsupported("a terminal"))
    }

    fn pause(&self, _: &TtrpcContext, _: api::PauseRequest) -> TtrpcResult<api::Empty> {
        Err(unsupported("pause"))
    }

    fn resume(&self, _: &TtrpcContext, _: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        Err(unsupported("resume"))
    }

    fn checkpoint(&self, _: &TtrpcContext, _: api::CheckpointTaskRequest) -> TtrpcResult<api::Empty> {
        Err(unsupported("checkpoint"))
    }
}

/// An error and its causes on one line, as `ctr` shows it (of a multi-line cause, such as a
/// compiler's source excerpt, only the first line).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let first_line =
        |e: &dyn std::error::Error| e.to_string().lines().next().unwrap_or_default().trim_end().to_string();
    let mut message = first_line(error);
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&first_line(cause));
        source = cause.source();
    }
    message
}
