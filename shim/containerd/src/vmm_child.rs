//! `wasmcell-vmm PLAN`: a VMM process, a child of the shim. It closes what it inherited by
//! accident, joins its cgroup and network namespace, opens what it was given, builds its VM,
//! and then closes its jail (`wasmcell_vmm::jail`, then the VMM seccomp filter) before the
//! guest runs a single instruction. Then it either runs one container's VM and exits with the
//! workload's status — containerd sees this process as the task's pid — or, for a Kubernetes
//! pod, boots the pod's VM and serves its workloads ([`crate::pod::server`]) until the pod is
//! stopped. SIGTERM/SIGINT stop the guest (status 128 + signal); SIGKILL kills the process
//! (137, reported by the shim's reaper); a thread that breaks its seccomp filter ends it with
//! 159 (`wasmcell_vmm::seccomp::VIOLATION_STATUS`) and a line on stderr.

use crate::plan::{JailPlan, Plan, PlanKind, WorkloadPlan, FILES_FD};
use crate::pod::protocol::CHANNEL_FD;
use crate::service::error_chain;
use crate::workload::{self, Opened};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use wasmcell_abi::boot_info::LOG_OFF;
use wasmcell_vmm::jail::{Jail, JailRoot};
use wasmcell_vmm::seccomp::{self, ThreadKind};
use wasmcell_vmm::{Vm, VmConfig};

/// Descriptors a VMM may hold: a pod's 32 workloads, each with a handful, its volumes and at
/// most its sockets and open files (`wasmcell_abi::socket::MAX_SOCKETS`,
/// `wasmcell_abi::file::MAX_HANDLES`, volumes included), and the VM's own. So no workload's
/// sockets or files can leave another without descriptors.
const MAX_FDS: u64 = wasmcell_abi::memory_map::MAX_VCPUS as u64
    * (wasmcell_abi::socket::MAX_SOCKETS as u64 + wasmcell_abi::file::MAX_HANDLES as u64 + 16)
    + 64;

/// Runs the plan at `path`; returns the exit status.
pub fn run(path: &Path) -> i32 {
    let plan = match Plan::read(path) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("wasmcell: cannot read the plan {}: {e}", path.display());
            return 1;
        }
    };
    // Before anything else is opened: the standard streams, and the pod's channel or the
    // container's archive, are the only descriptors this process was meant to get.
    let given = match &plan.kind {
        PlanKind::Pod => Some(CHANNEL_FD),
        PlanKind::Container(w) => w.files.then_some(FILES_FD),
    };
    let keep: Vec<i32> = [0, 1, 2].into_iter().chain(given).collect();
    if let Err(e) = wasmcell_vmm::jail::close_inherited_descriptors(&keep) {
        eprintln!("wasmcell: {}", error_chain(&e));
        return 1;
    }
    let stderr = match &plan.kind {
        PlanKind::Container(w) => Some(w.stderr.clone()),
        PlanKind::Pod => None,
    };
    match boot(plan) {
        Ok(status) => status,
        Err(message) => {
            eprintln!("wasmcell: {message}");
            match stderr {
                // Where the container's user looks (`ctr run`, `kubectl logs`).
                Some(stderr) => workload::report_to_path(&stderr, &format!("wasmcell: {message}")),
                // A pod's VM has no stdio of its own: its containers' starts say why.
                None => crate::pod::server::not_ready(&message),
            }
            1
        }
    }
}

fn boot(plan: Plan) -> Result<i32, String> {
    // First, so that everything the VM allocates is charged to the container (or pod). Both
    // joins happen while the process is single-threaded: every thread the VMM starts inherits
    // them.
    if let Some(cgroup) = &plan.cgroup {
        crate::cgroup::join(cgroup, &plan.limits)?;
    }
    if let Some(score) = plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| format!("cannot set the OOM score adjustment to {score}: {e}"))?;
    }
    if let Some(netns) = &plan.netns {
        join_network_namespace(netns)?;
    }
    let jail = Confinement { jail: plan.jail, probe: plan.probe_seccomp };
    match plan.kind {
        PlanKind::Container(workload) => run_container(workload, jail),
        PlanKind::Pod => Ok(crate::pod::server::serve(jail)),
    }
}

/// A container's VM, to the end of its workload.
fn run_container(plan: WorkloadPlan, jail: Confinement) -> Result<i32, String> {
    // SAFETY: the shim hands the archive over as FILES_FD when the plan has files, and nothing
    // else in this process uses that number.
    let files = plan.files.then(|| unsafe { File::from_raw_fd(FILES_FD) });
    let (workload, reporter) = workload::load(&plan, Opened::open(&plan, files)?)?;
    report_violations_to_container(&plan.stderr);
    let config = VmConfig { workload: Some(workload), log_level: LOG_OFF, ..Default::default() };
    let vm = Vm::try_from(config).map_err(|e| error_chain(&e))?;
    jail.close()?;
    let signals = wasmcell_vmm::signals::forward_to(vm.handle()).map_err(|e| e.to_string())?;
    let report = vm.run().map_err(|e| error_chain(&e))?;
    Ok(workload::exit_status(report.outcome, signals.received(), reporter))
}

/// How a VMM process is confined: its plan's jail, and the plan's test hook.
pub struct Confinement {
    jail: Option<JailPlan>,
    probe: bool,
}

impl Confinement {
    /// Closes the jail around this process (its VM exists, no guest instruction has run, no
    /// other thread exists yet), then confines every thread it will start to the VMM filter.
    pub fn close(self) -> Result<(), String> {
        let Some(JailPlan { uid, gid, groups }) = self.jail else { return Ok(()) };
        let jail = Jail { root: JailRoot::Empty, uid, gid, groups, keep_caps: Vec::new(), max_fds: MAX_FDS };
        jail.enter().map_err(|e| error_chain(&e))?;
        seccomp::apply(ThreadKind::Vmm).map_err(|e| error_chain(&e))?;
        if self.probe {
            // The test hook: a vCPU-filtered thread opens a blocking socket (the socket device
            // makes only non-blocking ones), as a hijacked one might.
            let _ = std::thread::Builder::new().name("wasmcell-probe".into()).spawn(|| {
                if seccomp::apply(ThreadKind::Vcpu).is_ok() {
                    // SAFETY: the forbidden call itself; the filter ends the process on it.
                    unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                }
            });
        }
        Ok(())
    }
}

/// Has a seccomp violation reported on the container's stderr too, where its user looks,
/// through a non-blocking description of our own (a full FIFO must not hold up the exit).
fn report_violations_to_container(stderr: &str) {
    if stderr.is_empty() {
        return;
    }
    let fifo = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(stderr);
    if let Ok(fifo) = fifo {
        seccomp::report_violations_to(std::os::fd::IntoRawFd::into_raw_fd(fifo));
    }
}

/// Moves this process into the network namespace at `path` (the pod's).
fn join_network_namespace(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open network namespace {}: {e}", path.display()))?;
    // SAFETY: `setns` on a descriptor we own; it changes only this thread's namespace, and the
    // process has no other thread yet.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("cannot join network namespace {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}
