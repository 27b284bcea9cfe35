//! `wasmcell-vmm PLAN`: a VMM process, a child of the shim. It joins its
//! cgroup and network namespace, then either runs one container's VM and exits with the
//! workload's status — containerd sees this process as the task's pid — or, for a Kubernetes
//! pod, boots the pod's VM and serves its workloads ([`crate::pod::server`]) until the pod is
//! stopped. SIGTERM/SIGINT stop the guest (status 128 + signal); SIGKILL kills the process (137,
//! reported by the shim's reaper).

use crate::plan::{Plan, PlanKind, WorkloadPlan};
use crate::service::error_chain;
use crate::workload;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use wasmcell_abi::boot_info::LOG_OFF;
use wasmcell_vmm::{Vm, VmConfig};

/// Runs the plan at `path`; returns the exit status.
pub fn run(path: &Path) -> i32 {
    let plan = match Plan::read(path) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("wasmcell: cannot read the plan {}: {e}", path.display());
            return 1;
        }
    };
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
                Some(stderr) => workload::report(&stderr, &format!("wasmcell: {message}")),
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
        crate::cgroup::join(cgroup)?;
    }
    if let Some(netns) = &plan.netns {
        join_network_namespace(netns)?;
    }
    match plan.kind {
        PlanKind::Container(workload) => run_container(workload),
        PlanKind::Pod => Ok(crate::pod::server::serve()),
    }
}

/// A container's VM, to the end of its workload.
fn run_container(plan: WorkloadPlan) -> Result<i32, String> {
    let config = VmConfig { workload: Some(workload::load(&plan)?), log_level: LOG_OFF, ..Default::default() };
    let vm = Vm::try_from(config).map_err(|e| error_chain(&e))?;
    let signals = wasmcell_vmm::signals::forward_to(vm.handle()).map_err(|e| e.to_string())?;
    let report = vm.run().map_err(|e| error_chain(&e))?;
    Ok(workload::exit_status(report.outcome, signals.received(), &plan.stderr))
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
