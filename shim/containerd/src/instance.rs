//! The seam between the task service and what runs a workload: [`Instance`]. The service
//! (containerd's task API) knows only this trait; [`VmInstance`] is the real one and the
//! service's tests use a fake. A `VmInstance` is one of three things:
//! - a container of its own (`ctr run`): its VMM is a child process that runs its VM;
//! - a Kubernetes pod's sandbox: its VMM child is the pod's VM, which runs no workload itself;
//! - a container of a pod: a workload in its pod's VM, started over the VMM's control channel.

use crate::plan::{JailPlan, Plan, PlanKind, ServedKind, ServedVolume, WorkloadPlan, FILES_FD, MAX_SERVED_VOLUMES};
use crate::pod::{self, client::PodVm};
use crate::process::Process;
use crate::rootfs::{self, RootfsMount};
use crate::spec::ContainerSpec;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use wasmcell_aot::{Cache, Compiler, CompilerProcess, Entry, Limits, Pin};

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
    #[error(
        "{0} is a precompiled artifact: wasmcell compiles images' Wasm itself and never runs native code from an image"
    )]
    Precompiled(String),
    #[error(transparent)]
    Limits(#[from] wasmcell_aot::limits::LimitError),
    #[error("A terminal (TTY) is not supported: Wasm workloads use plain stdio")]
    Terminal,
    #[error("Cannot write the VM plan {0}")]
    WritePlan(PathBuf, #[source] std::io::Error),
    #[error("Cannot start the VMM process")]
    Spawn(#[source] std::io::Error),
    #[error("Cannot pack the root filesystem")]
    Pack(#[source] std::io::Error),
    #[error("Cannot pack the root filesystem: {0}")]
    Files(String),
    #[error("The volume at {destination} cannot be mounted: its source {source_path} {reason}")]
    Volume { destination: String, source_path: PathBuf, reason: &'static str },
    #[error("WASMCELL_VMM_USER must be UID:GID (numbers), not {0:?}")]
    VmmUser(String),
    #[error("Cannot watch the VMM process")]
    Monitor(String),
    #[error("Cannot signal the VMM process")]
    Signal(#[source] std::io::Error),
    #[error("The pod sandbox {0} has no running VM in this shim")]
    NoPod(String),
    #[error("Cannot run the workload in the pod's VM: {0}")]
    PodWorkload(String),
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

/// A wasmcell task: a container's VM, a pod's VM, or a workload in a pod's VM.
pub struct VmInstance {
    bundle: PathBuf,
    process: Arc<Process>,
    kind: Kind,
    /// Keeps the workload's artifact in the cache until the instance is gone: the plan names
    /// it, and the VMM reads it at start, after other shims may have evicted entries.
    _artifact: Option<Pin>,
}

enum Kind {
    /// Its own VMM child, running `plan`, with its root filesystem's archive.
    Container { plan: PathBuf, files: Option<File> },
    /// The pod's VMM child; `pod` once its VM is up.
    Sandbox { plan: PathBuf, sandbox_id: String, pod: Mutex<Option<Arc<PodVm>>> },
    /// A workload in the pod's VM, with its root filesystem's archive.
    PodContainer { id: String, pod: Arc<PodVm>, workload: Box<WorkloadPlan>, files: Option<File> },
}

/// Who jailed VMMs run as: `WASMCELL_VMM_USER=UID:GID` in the shim's environment (containerd's),
/// by default nobody (65534:65534). The VMM needs no file of the host's once jailed: any
/// unprivileged ids do, and ids no other process uses are best.
pub fn jail_plan() -> Result<JailPlan, InstanceError> {
    let nobody = JailPlan { uid: 65534, gid: 65534, groups: Vec::new() };
    let Ok(user) = std::env::var("WASMCELL_VMM_USER") else { return Ok(nobody) };
    let parsed = user
        .split_once(':')
        .and_then(|(u, g)| Some(JailPlan { uid: u.parse().ok()?, gid: g.parse().ok()?, groups: Vec::new() }));
    parsed.ok_or(InstanceError::VmmUser(user))
}

/// The supplementary groups a VMM's jail keeps of `groups`: all but root's (0), which opens
/// too much of a node to hand a process that serves a tenant (runc would keep it).
fn jail_groups(groups: &[u32]) -> Vec<u32> {
    groups.iter().copied().filter(|&gid| gid != 0).collect()
}

impl VmInstance {
    /// Finds, checks and compiles the module. An image brings Wasm and nothing else: a
    /// precompiled artifact would be native code the guest runs as it is.
    fn prepare_workload(
        request: &CreateRequest,
        spec: &ContainerSpec,
        rootfs: PathBuf,
    ) -> Result<(WorkloadPlan, Pin, File), InstanceError> {
        let limits = Limits::from_env()?;
        let module = rootfs::read_module(&rootfs, &spec.cwd, &spec.args[0], limits.max_module_size)?;
        if wasmcell_aot::is_precompiled(&module) {
            return Err(InstanceError::Precompiled(spec.args[0].clone()));
        }
        // Images carry binary modules; text is not compiled as `.wat`.
        if !module.starts_with(b"\0asm") {
            return Err(InstanceError::NotWasm(spec.args[0].clone()));
        }
        let entry = match (spec.serve, spec.listen.is_empty()) {
            (Some(_), _) => Entry::Serve,
            (None, false) => Entry::RunWithListeners,
            (None, true) => Entry::Run,
        };
        wasmcell_aot::check_entry(&module, entry)?;
        let (packed, served) = sort_volumes(&spec.volumes)?;
        let compiler = Compiler::for_host()?;
        // The compiler and the packer are charged to the tenant: moved into its pod's (or
        // container's) cgroup as they start, before they read what the tenant wrote.
        let mut process = CompilerProcess::this_executable().map_err(InstanceError::Spawn)?;
        let charged = spec.cgroup.as_deref().and_then(|c| crate::cgroup::charged_to(c, spec.sandbox_id.is_some()));
        if let Some(cgroup) = charged.clone() {
            process = process.on_spawn(move |pid| crate::cgroup::move_into(&cgroup, pid));
        }
        let cache = Cache::open(Cache::default_dir(), &limits)?.with_compiler_process(process);
        let compiled = cache.get_or_compile(&compiler, &module)?;
        let vmm = crate::vmm_binary().map_err(InstanceError::Pack)?;
        let files =
            crate::packer::pack(&vmm, &request.bundle, &rootfs, &packed, spec.memory_mib << 20, charged.as_deref())?;
        let plan = WorkloadPlan {
            artifact: compiled.path,
            cpu_features: compiler.cpu_features(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            memory_mib: spec.memory_mib,
            files: true,
            stdin: request.stdin.clone(),
            stdout: request.stdout.clone(),
            stderr: request.stderr.clone(),
            resolv_conf: read_text(spec.resolv_conf.as_deref()),
            hosts: read_text(spec.hosts.as_deref()),
            serve: spec.serve,
            listen: spec.listen.clone(),
            volumes: served,
        };
        Ok((plan, compiled.pin, files))
    }

    /// Mounts the root filesystem and prepares the workload; unmounts again on failure.
    fn mount_and_prepare(
        request: &CreateRequest,
        spec: &ContainerSpec,
    ) -> Result<(WorkloadPlan, Pin, File), InstanceError> {
        let rootfs = rootfs::mount(&request.bundle, &request.rootfs)?;
        Self::prepare_workload(request, spec, rootfs).inspect_err(|_| {
            let _ = rootfs::unmount(&request.bundle);
        })
    }

    /// The VMM's plan for `spec`: its cgroup and limits, OOM score, network namespace, jail.
    fn plan(spec: &ContainerSpec, jail: Option<JailPlan>, kind: PlanKind) -> Plan {
        Plan {
            cgroup: spec.cgroup.clone(),
            limits: spec.limits,
            oom_score_adj: spec.oom_score_adj,
            netns: spec.netns.clone(),
            jail,
            probe_seccomp: false,
            kind,
        }
    }

    fn write_plan(request: &CreateRequest, plan: &Plan) -> Result<PathBuf, InstanceError> {
        let path = request.bundle.join("wasmcell-plan.json");
        plan.write(&path).map_err(|e| InstanceError::WritePlan(path.clone(), e))?;
        Ok(path)
    }

    /// Spawns `wasmcell-vmm PLAN` in the bundle; its exit goes to `process`.
    fn spawn_vmm(&self, plan: &Path) -> Result<u32, InstanceError> {
        let exe = crate::vmm_binary().map_err(InstanceError::Spawn)?;
        // Subscribe before spawning: the shim's reaper reports the exit to subscribers only.
        let subscription = containerd_shim::monitor::monitor_subscribe(containerd_shim::monitor::Topic::Pid)
            .map_err(|e| InstanceError::Monitor(e.to_string()))?;
        let watch = |pid: u32| {
            self.process.started(pid);
            let process = self.process.clone();
            std::thread::spawn(move || {
                let status = containerd_shim::monitor::wait_pid(pid as i32, subscription);
                process.record_exit(status as u32);
            });
        };
        match &self.kind {
            Kind::Sandbox { sandbox_id, pod, .. } => {
                let vm = PodVm::spawn(&exe, plan, &self.bundle, watch).inspect_err(|_| self.kill_vmm())?;
                let pid = vm.pid();
                pod::register(sandbox_id, vm.clone());
                *pod.lock().unwrap_or_else(|e| e.into_inner()) = Some(vm);
                Ok(pid)
            }
            Kind::Container { files, .. } => {
                let mut command = Command::new(exe);
                command
                    .arg(plan)
                    .current_dir(&self.bundle)
                    .env_clear()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit());
                if let Some(files) = files {
                    wasmcell_vmm::jail::give_descriptor(&mut command, files.as_raw_fd(), FILES_FD);
                }
                let child = command.spawn().map_err(InstanceError::Spawn)?;
                let pid = child.id();
                // The reaper waits for it, not `child`: dropping `child` neither waits nor kills.
                drop(child);
                watch(pid);
                Ok(pid)
            }
            Kind::PodContainer { .. } => unreachable!("a pod's container runs in its pod's VMM"),
        }
    }

    /// SIGKILLs the VMM child if it is still running (a pod VM that failed to come up).
    fn kill_vmm(&self) {
        if let Some(pid) = self.process.running_pid() {
            // SAFETY: `kill` only sends a signal; `pid` is our child, not yet reaped (its exit
            // status is unknown), so the number cannot have been reused.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

impl Instance for VmInstance {
    fn create(request: &CreateRequest) -> Result<Self, InstanceError> {
        let spec = ContainerSpec::load(&request.bundle)?;
        if request.terminal || spec.terminal {
            return Err(InstanceError::Terminal);
        }
        let process = Arc::default();
        let bundle = request.bundle.clone();
        let jail = jail_plan()?;
        // A pod's sandbox runs no image (CRI's pause container): its VMM is the pod's VM.
        if spec.sandbox {
            // It serves the pod's volumes with the pod's groups (the kubelet's `fsGroup` and
            // `supplementalGroups` for the sandbox): a PVC prepared for the fsGroup is writable.
            let jail = Some(JailPlan { groups: jail_groups(&spec.groups), ..jail });
            // The sandbox's resources describe the pause process CRI would have run (CPU shares
            // of 2, say), not the pod: its VM holds every container, and the kubelet's pod
            // cgroup above the sandbox's holds the pod to its limits.
            let pod_spec = ContainerSpec { limits: Default::default(), ..spec.clone() };
            let plan = Self::write_plan(request, &Self::plan(&pod_spec, jail, PlanKind::Pod))?;
            let sandbox_id = spec.sandbox_id.clone().unwrap_or_else(|| request.id.clone());
            let kind = Kind::Sandbox { plan, sandbox_id, pod: Mutex::default() };
            return Ok(Self { bundle, process, kind, _artifact: None });
        }
        // A container of a pod runs in the pod's VM, which its sandbox started in this shim.
        if let Some(sandbox_id) = &spec.sandbox_id {
            let pod = pod::find(sandbox_id).ok_or_else(|| InstanceError::NoPod(sandbox_id.clone()))?;
            let (workload, pin, files) = Self::mount_and_prepare(request, &spec)?;
            let kind =
                Kind::PodContainer { id: request.id.clone(), pod, workload: Box::new(workload), files: Some(files) };
            return Ok(Self { bundle, process, kind, _artifact: Some(pin) });
        }
        // A compile charged to the container's cgroup created it: it goes if the create fails.
        let (workload, pin, files) = Self::mount_and_prepare(request, &spec).inspect_err(|_| {
            if let Some(cgroup) = &spec.cgroup {
                crate::cgroup::remove(cgroup);
            }
        })?;
        // A container's VMM takes its groups only to serve volumes with them.
        let groups = if workload.volumes.is_empty() { Vec::new() } else { jail_groups(&spec.groups) };
        let plan = Self::plan(&spec, Some(JailPlan { groups, ..jail }), PlanKind::Container(workload));
        let plan = Self::write_plan(request, &plan).inspect_err(|_| {
            let _ = rootfs::unmount(&request.bundle);
        })?;
        Ok(Self { bundle, process, kind: Kind::Container { plan, files: Some(files) }, _artifact: Some(pin) })
    }

    fn start(&self) -> Result<u32, InstanceError> {
        match &self.kind {
            Kind::Container { plan, .. } | Kind::Sandbox { plan, .. } => self.spawn_vmm(plan),
            Kind::PodContainer { id, pod, workload, files } => {
                let files = files.as_ref().map(File::try_clone).transpose().map_err(InstanceError::Spawn)?;
                let opened = crate::workload::Opened::open(workload, files).map_err(InstanceError::PodWorkload)?;
                pod.start(id, (**workload).clone(), opened, self.process.clone())
                    .map_err(InstanceError::PodWorkload)?;
                self.process.started(pod.pid());
                Ok(pod.pid())
            }
        }
    }

    fn kill(&self, signal: u32) -> Result<(), InstanceError> {
        if self.process.has_exited() {
            return Err(InstanceError::NotRunning);
        }
        if !self.process.was_started() {
            self.process.record_exit(128 + signal);
            return Ok(());
        }
        match &self.kind {
            Kind::PodContainer { id, pod, .. } => pod.kill(id, signal).map_err(InstanceError::PodWorkload),
            Kind::Container { .. } | Kind::Sandbox { .. } => {
                let pid = self.process.running_pid().ok_or(InstanceError::NotRunning)?;
                // SAFETY: `kill` only sends a signal; `pid` is our child, not yet reaped (its exit
                // status is unknown), so the number cannot have been reused.
                if unsafe { libc::kill(pid as i32, signal as i32) } != 0 {
                    return Err(InstanceError::Signal(std::io::Error::last_os_error()));
                }
                Ok(())
            }
        }
    }

    fn wait(&self) -> u32 {
        let status = self.process.wait();
        if let Kind::Sandbox { sandbox_id, .. } = &self.kind {
            pod::unregister(sandbox_id);
        }
        status
    }

    fn delete(&self) {
        if self.process.running_pid().is_some() {
            let _ = self.kill(libc::SIGKILL as u32);
            self.wait();
        }
        if let Kind::Sandbox { sandbox_id, .. } = &self.kind {
            pod::unregister(sandbox_id);
        }
        cleanup_bundle(&self.bundle);
    }

    fn stats(&self) -> Result<Any, InstanceError> {
        let pid = self.process.running_pid().ok_or(InstanceError::NotRunning)?;
        // The VMM process holds all of the workload's memory and CPU time: its cgroup's numbers
        // are the container's (for a container of a pod, the pod's: its VM is shared).
        let metrics = containerd_shim::cgroup::get_cgroup(pid)
            .and_then(|cgroup| containerd_shim::cgroup::collect_metrics(&cgroup))
            .map_err(|e| InstanceError::Metrics(e.to_string()))?;
        containerd_shim::util::convert_to_any(Box::new(metrics)).map_err(|e| InstanceError::Metrics(e.to_string()))
    }
}

/// The spec's volumes, by what their sources are: read-only directories are packed with the
/// root filesystem (snapshots, read at memory speed); writable directories and single files
/// are served by the VMM's file device, write-through. A missing source, or one that is
/// neither a directory nor a regular file (a socket, a device, a FIFO), fails the start, as do
/// more than [`MAX_SERVED_VOLUMES`] served ones.
fn sort_volumes(
    volumes: &[crate::spec::Volume],
) -> Result<(Vec<crate::spec::Volume>, Vec<ServedVolume>), InstanceError> {
    let (mut packed, mut served) = (Vec::new(), Vec::new());
    for volume in volumes {
        let refused = |reason| InstanceError::Volume {
            destination: volume.destination.clone(),
            source_path: volume.source.clone(),
            reason,
        };
        let kind = match std::fs::metadata(&volume.source) {
            Ok(meta) if meta.is_dir() && volume.read_only => {
                packed.push(volume.clone());
                continue;
            }
            Ok(meta) if meta.is_dir() => ServedKind::Dir,
            Ok(meta) if meta.is_file() && volume.read_only => ServedKind::ReadOnlyFile,
            Ok(meta) if meta.is_file() => ServedKind::File,
            Ok(_) => return Err(refused("is neither a directory nor a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(refused("does not exist")),
            Err(_) => return Err(refused("cannot be read")),
        };
        if served.len() == MAX_SERVED_VOLUMES {
            return Err(refused("is one volume too many: at most 16 writable or single-file volumes are served"));
        }
        served.push(ServedVolume { source: volume.source.clone(), destination: volume.destination.clone(), kind });
    }
    Ok((packed, served))
}

/// A resolver file the spec mounts, as text (empty for none).
fn read_text(path: Option<&Path>) -> String {
    let bytes = path.map(wasmcell_vmm::Resolver::read_file).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Removes what the shim put in `bundle`: a VMM still running in the plan's cgroup, the cgroup,
/// the root filesystem mount and the plan. Also run by the binary's `delete` action, so it must
/// work on a bundle whose shim is gone (for a pod, killing the sandbox's VMM ends the pod's VM).
pub fn cleanup_bundle(bundle: &Path) {
    let plan = bundle.join("wasmcell-plan.json");
    if let Some(cgroup) = Plan::read(&plan).ok().and_then(|plan| plan.cgroup) {
        crate::cgroup::remove(&cgroup);
    }
    let _ = rootfs::unmount(bundle);
    let _ = std::fs::remove_file(bundle.join("wasmcell-plan.json"));
}
