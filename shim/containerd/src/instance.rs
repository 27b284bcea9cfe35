//! The seam between the task service and what runs a workload: [`Instance`]. The service
//! (containerd's task API) knows only this trait; [`VmInstance`] is the real one, a wasmcell
//! microVM whose VMM runs in its own child process, and the service's tests use a fake.

use crate::plan::{Plan, VmPlan};
use crate::rootfs::{self, RootfsMount};
use crate::spec::ContainerSpec;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use wasmcell_aot::{Cache, Compiler};

/// What `create` is given.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<RootfsMount>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Why an instance could not be created or driven; the message reaches `ctr`'s user.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Compile(#[from] wasmcell_aot::AotError),
    #[error(transparent)]
    Cache(#[from] wasmcell_aot::CacheError),
    #[error("{0} is not a WebAssembly module")]
    NotWasm(String),
    #[error("A terminal (TTY) is not supported: Wasm workloads use plain stdio")]
    Terminal,
    #[error("Cannot write the VM plan {0}")]
    WritePlan(PathBuf, #[source] std::io::Error),
    #[error("Cannot start the VMM process")]
    Spawn(#[source] std::io::Error),
    #[error("Cannot watch the VMM process")]
    Monitor(String),
    #[error("Cannot signal the VMM process")]
    Signal(#[source] std::io::Error),
    #[error("The task is not running")]
    NotRunning,
    #[error("Cannot read the VMM's cgroup metrics: {0}")]
    Metrics(String),
}

/// One container's workload.
pub trait Instance: Send + Sync + Sized + 'static {
    /// Validates and prepares everything that can fail (spec, root filesystem, module,
    /// compilation): a bad container fails here, fast, and leaves nothing behind.
    fn create(request: &CreateRequest) -> Result<Self, InstanceError>;
    /// Starts the workload; returns the pid containerd reports for it.
    fn start(&self) -> Result<u32, InstanceError>;
    /// Delivers `signal`: SIGTERM/SIGINT stop the guest cleanly, SIGKILL at once.
    fn kill(&self, signal: u32) -> Result<(), InstanceError>;
    /// Blocks until the workload has exited; its exit status.
    fn wait(&self) -> u32;
    /// Releases everything the instance holds (process, mounts, files). Idempotent.
    fn delete(&self);
    /// Resource usage of the running workload, as containerd's `Metrics` message.
    fn stats(&self) -> Result<Any, InstanceError>;
}

/// A wasmcell microVM; its VMM is `containerd-shim-wasmcell-v1 vmm PLAN`, a child of the shim.
pub struct VmInstance {
    bundle: PathBuf,
    plan: PathBuf,
    process: Arc<Process>,
}

/// The VMM process, shared with the thread that waits for its exit.
#[derive(Default)]
struct Process {
    state: Mutex<State>,
    exited: Condvar,
}

#[derive(Default)]
struct State {
    pid: Option<u32>,
    exit_status: Option<u32>,
}

impl Process {
    fn record_exit(&self, status: u32) {
        let mut state = self.state.lock().unwrap();
        state.exit_status.get_or_insert(status);
        self.exited.notify_all();
    }

    fn wait(&self) -> u32 {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(status) = state.exit_status {
                return status;
            }
            state = self.exited.wait(state).unwrap();
        }
    }
}

impl VmInstance {
    fn prepare(request: &CreateRequest) -> Result<Plan, InstanceError> {
        let spec = ContainerSpec::load(&request.bundle)?;
        if request.terminal || spec.terminal {
            return Err(InstanceError::Terminal);
        }
        let mut plan = Plan {
            cgroup: spec.cgroup.clone(),
            netns: spec.netns.clone(),
            stdin: request.stdin.clone(),
            stdout: request.stdout.clone(),
            stderr: request.stderr.clone(),
            vm: None,
        };
        // A pod's sandbox runs no image (CRI's pause container): its process holds the pod.
        if spec.sandbox {
            return Ok(plan);
        }
        let rootfs = rootfs::mount(&request.bundle, &request.rootfs)?;
        match Self::prepare_vm(request, &spec, rootfs) {
            Ok(vm) => {
                plan.vm = Some(vm);
                Ok(plan)
            }
            Err(e) => {
                let _ = rootfs::unmount(&request.bundle);
                Err(e)
            }
        }
    }

    /// Finds, checks and compiles the module.
    fn prepare_vm(request: &CreateRequest, spec: &ContainerSpec, rootfs: PathBuf) -> Result<VmPlan, InstanceError> {
        let module = rootfs::read_module(&rootfs, &spec.cwd, &spec.args[0])?;
        // Images carry binary modules (or guest artifacts); text is not compiled as `.wat`.
        if !module.starts_with(b"\0asm") && !wasmcell_aot::is_precompiled(&module) {
            return Err(InstanceError::NotWasm(spec.args[0].clone()));
        }
        wasmcell_aot::check_imports(&module)?;
        let compiler = Compiler::for_host()?;
        let artifact = if wasmcell_aot::is_precompiled(&module) {
            let path = request.bundle.join("module.cwasm");
            std::fs::write(&path, &module).map_err(|e| InstanceError::WritePlan(path.clone(), e))?;
            path
        } else {
            Cache::open(Cache::default_dir())?.get_or_compile(&compiler, &module)?.path
        };
        Ok(VmPlan {
            artifact,
            cpu_features: compiler.cpu_features(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            memory_mib: spec.memory_mib,
            rootfs,
        })
    }
}

impl Instance for VmInstance {
    fn create(request: &CreateRequest) -> Result<Self, InstanceError> {
        let plan = Self::prepare(request)?;
        let path = request.bundle.join("wasmcell-plan.json");
        if let Err(e) = plan.write(&path) {
            let _ = rootfs::unmount(&request.bundle);
            return Err(InstanceError::WritePlan(path, e));
        }
        Ok(Self { bundle: request.bundle.clone(), plan: path, process: Arc::default() })
    }

    fn start(&self) -> Result<u32, InstanceError> {
        // Subscribe before spawning: the shim's reaper reports the exit to subscribers only.
        let subscription = containerd_shim::monitor::monitor_subscribe(containerd_shim::monitor::Topic::Pid)
            .map_err(|e| InstanceError::Monitor(e.to_string()))?;
        let exe = std::env::current_exe().map_err(InstanceError::Spawn)?;
        let child = Command::new(exe)
            .arg(crate::VMM_ACTION)
            .arg(&self.plan)
            .current_dir(&self.bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(InstanceError::Spawn)?;
        let pid = child.id();
        // The reaper waits for it, not `child`: dropping `child` neither waits nor kills.
        drop(child);
        self.process.state.lock().unwrap().pid = Some(pid);
        let process = self.process.clone();
        std::thread::spawn(move || {
            let status = containerd_shim::monitor::wait_pid(pid as i32, subscription);
            process.record_exit(status as u32);
        });
        Ok(pid)
    }

    fn kill(&self, signal: u32) -> Result<(), InstanceError> {
        let state = self.process.state.lock().unwrap();
        match (state.pid, state.exit_status) {
            (Some(pid), None) => {
                // SAFETY: `kill` only sends a signal; `pid` is our child, not yet reaped (its exit
                // status is unknown), so the number cannot have been reused.
                if unsafe { libc::kill(pid as i32, signal as i32) } != 0 {
                    return Err(InstanceError::Signal(std::io::Error::last_os_error()));
                }
                Ok(())
            }
            (None, None) => {
                drop(state);
                self.process.record_exit(128 + signal);
                Ok(())
            }
            (_, Some(_)) => Err(InstanceError::NotRunning),
        }
    }

    fn wait(&self) -> u32 {
        self.process.wait()
    }

    fn delete(&self) {
        let running = {
            let state = self.process.state.lock().unwrap();
            state.pid.filter(|_| state.exit_status.is_none())
        };
        if let Some(pid) = running {
            // SAFETY: as in `kill`.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            self.wait();
        }
        cleanup_bundle(&self.bundle);
    }

    fn stats(&self) -> Result<Any, InstanceError> {
        let pid = {
            let state = self.process.state.lock().unwrap();
            state.pid.filter(|_| state.exit_status.is_none()).ok_or(InstanceError::NotRunning)?
        };
        // The VMM process holds all of the workload's memory and CPU time: its cgroup's numbers
        // are the container's.
        let metrics = containerd_shim::cgroup::get_cgroup(pid)
            .and_then(|cgroup| containerd_shim::cgroup::collect_metrics(&cgroup))
            .map_err(|e| InstanceError::Metrics(e.to_string()))?;
        containerd_shim::util::convert_to_any(Box::new(metrics)).map_err(|e| InstanceError::Metrics(e.to_string()))
    }
}

/// Removes what the shim put in `bundle`: a VMM still running in the container's cgroup, the
/// cgroup, the root filesystem mount and the plan. Also run by the binary's `delete` action, so
/// it must work on a bundle whose shim is gone.
pub fn cleanup_bundle(bundle: &Path) {
    let plan = bundle.join("wasmcell-plan.json");
    if let Some(cgroup) = Plan::read(&plan).ok().and_then(|plan| plan.cgroup) {
        crate::cgroup::remove(&cgroup);
    }
    let _ = rootfs::unmount(bundle);
    let _ = std::fs::remove_file(bundle.join("wasmcell-plan.json"));
    let _ = std::fs::remove_file(bundle.join("module.cwasm"));
}
