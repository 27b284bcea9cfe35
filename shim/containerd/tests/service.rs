//! The task service in-process, over a fake instance: the state machine, exit statuses and
//! events containerd relies on, without containerd or KVM.

use containerd_shim::api;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::ExitSignal;
use std::sync::{Arc, Condvar, Mutex};
use wasmcell_shim::instance::{CreateRequest, Instance, InstanceError};
use wasmcell_shim::service::{EventSink, Service};

/// Exits with the signal's 128 + n when killed; `create` fails for bundles named "bad".
struct FakeInstance {
    exit: Mutex<Option<u32>>,
    exited: Condvar,
    deleted: Mutex<bool>,
}

impl Instance for FakeInstance {
    fn create(request: &CreateRequest) -> Result<Self, InstanceError> {
        if request.bundle.ends_with("bad") {
            return Err(InstanceError::Terminal);
        }
        Ok(Self { exit: Mutex::new(None), exited: Condvar::new(), deleted: Mutex::new(false) })
    }
    fn start(&self) -> Result<u32, InstanceError> {
        Ok(4242)
    }
    fn kill(&self, signal: u32) -> Result<(), InstanceError> {
        let mut exit = self.exit.lock().unwrap();
        if exit.is_some() {
            return Err(InstanceError::NotRunning);
        }
        *exit = Some(128 + signal);
        self.exited.notify_all();
        Ok(())
    }
    fn wait(&self) -> u32 {
        let mut exit = self.exit.lock().unwrap();
        while exit.is_none() {
            exit = self.exited.wait(exit).unwrap();
        }
        exit.unwrap()
    }
    fn delete(&self) {
        *self.deleted.lock().unwrap() = true;
    }
    fn stats(&self) -> Result<Any, InstanceError> {
        if self.exit.lock().unwrap().is_some() {
            return Err(InstanceError::NotRunning);
        }
        Ok(Any { type_url: "fake".into(), ..Default::default() })
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl EventSink for Recorder {
    fn publish(&self, topic: &str, _event: Box<dyn MessageDyn>) {
        self.0.lock().unwrap().push(topic.to_string());
    }
}

fn service() -> (Service<FakeInstance>, Arc<Recorder>) {
    let events = Arc::new(Recorder::default());
    (Service::new(events.clone(), Arc::new(ExitSignal::default())), events)
}

fn create(service: &Service<FakeInstance>, id: &str, bundle: &str) -> Result<api::CreateTaskResponse, String> {
    let req = api::CreateTaskRequest { id: id.into(), bundle: bundle.into(), ..Default::default() };
    service.create_task(req).map_err(|e| format!("{e:?}"))
}

fn status(service: &Service<FakeInstance>, id: &str) -> api::Status {
    let state = service.task_state(api::StateRequest { id: id.into(), ..Default::default() }).unwrap();
    state.status.enum_value().unwrap()
}

fn kill(service: &Service<FakeInstance>, id: &str, signal: u32) -> Result<(), String> {
    let req = api::KillRequest { id: id.into(), signal, ..Default::default() };
    service.kill_task(req).map(drop).map_err(|e| format!("{e:?}"))
}

#[test]
fn a_task_goes_created_running_stopped_deleted_with_its_events() {
    let (service, events) = service();
    create(&service, "t1", "/bundles/t1").unwrap();
    assert_eq!(status(&service, "t1"), api::Status::CREATED);
    let started = service.start_task(api::StartRequest { id: "t1".into(), ..Default::default() }).unwrap();
    assert_eq!(started.pid, 4242);
    assert_eq!(status(&service, "t1"), api::Status::RUNNING);
    kill(&service, "t1", 15).unwrap();
    let waited = service.wait_task(api::WaitRequest { id: "t1".into(), ..Default::default() }).unwrap();
    assert_eq!(waited.exit_status, 143);
    // The exit watcher records the status right after `wait` returns.
    while status(&service, "t1") != api::Status::STOPPED {
        std::thread::yield_now();
    }
    assert!(kill(&service, "t1", 9).unwrap_err().contains("NOT_FOUND"), "killing an exited task");
    let deleted = service.delete_task(api::DeleteRequest { id: "t1".into(), ..Default::default() }).unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (4242, 143));
    assert!(service.task_state(api::StateRequest { id: "t1".into(), ..Default::default() }).is_err());
    let topics = events.0.lock().unwrap().clone();
    assert_eq!(topics, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
}

#[test]
fn a_bad_container_fails_in_create_and_leaves_no_task() {
    let (service, events) = service();
    let err = create(&service, "t2", "/bundles/bad").unwrap_err();
    assert!(err.contains("A terminal (TTY) is not supported"), "{err}");
    assert!(service.task_state(api::StateRequest { id: "t2".into(), ..Default::default() }).is_err());
    assert!(events.0.lock().unwrap().is_empty());
}

#[test]
fn ids_are_unique_and_starting_twice_is_refused() {
    let (service, _) = service();
    create(&service, "t3", "/bundles/t3").unwrap();
    assert!(create(&service, "t3", "/bundles/t3").unwrap_err().contains("ALREADY_EXISTS"));
    service.start_task(api::StartRequest { id: "t3".into(), ..Default::default() }).unwrap();
    assert!(service.start_task(api::StartRequest { id: "t3".into(), ..Default::default() }).is_err());
    let pids = service.task_pids(api::PidsRequest { id: "t3".into(), ..Default::default() }).unwrap();
    assert_eq!(pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [4242]);
    let stats = service.task_stats(api::StatsRequest { id: "t3".into(), ..Default::default() }).unwrap();
    assert_eq!(stats.stats.type_url, "fake");
    kill(&service, "t3", 9).unwrap();
    let err = service.task_stats(api::StatsRequest { id: "t3".into(), ..Default::default() }).unwrap_err();
    assert!(format!("{err:?}").contains("NOT_FOUND"), "stats of an exited task: {err:?}");
    service.delete_task(api::DeleteRequest { id: "t3".into(), ..Default::default() }).unwrap();
    assert!(service.delete_task(api::DeleteRequest { id: "t3".into(), ..Default::default() }).is_err(), "deleted once");
}

#[test]
fn exec_is_refused_with_a_clear_error() {
    let (service, _) = service();
    create(&service, "t4", "/bundles/t4").unwrap();
    let req = api::StartRequest { id: "t4".into(), exec_id: "e1".into(), ..Default::default() };
    let err = format!("{:?}", service.start_task(req).unwrap_err());
    assert!(err.contains("exec is not supported by wasmcell"), "{err}");
}
