//! `containerd-shim-wasmcell-v1 vmm PLAN`: the VMM process of one container, a child of the
//! shim. It joins the container's cgroup and network namespace, opens containerd's stdio FIFOs,
//! boots the VM from the plan and exits with the workload's status — containerd sees this
//! process as the task's pid. SIGTERM/SIGINT stop the guest (status 128 + signal); SIGKILL kills
//! the process (137, reported by the shim's reaper). A pod sandbox's plan has no VM: the process
//! only holds the pod until it is stopped.

use crate::plan::Plan;
use crate::service::error_chain;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use wasmcell_abi::boot_info::LOG_OFF;
use wasmcell_vmm::{Input, MemorySize, Outcome, Preopen, Vm, VmConfig, Workload};

/// Runs the VM of the plan at `path`; returns the exit status.
pub fn run(path: &Path) -> i32 {
    let plan = match Plan::read(path) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("wasmcell: cannot read the plan {}: {e}", path.display());
            return 1;
        }
    };
    let stderr_fifo = plan.stderr.clone();
    match boot(plan) {
        Ok(status) => status,
        Err(message) => {
            // Where the container's user looks (`ctr run`, `kubectl logs`).
            if let Ok(mut err) = output(&stderr_fifo) {
                let _ = writeln!(err, "wasmcell: {message}");
            }
            1
        }
    }
}

fn boot(plan: Plan) -> Result<i32, String> {
    // First, so that everything the VM allocates is charged to the container. Both joins happen
    // while the process is single-threaded: every thread the VMM starts inherits them.
    if let Some(cgroup) = &plan.cgroup {
        crate::cgroup::join(cgroup)?;
    }
    if let Some(netns) = &plan.netns {
        join_network_namespace(netns)?;
    }
    let Some(vm_plan) = plan.vm else {
        return Ok(hold_pod());
    };
    let artifact =
        std::fs::read(&vm_plan.artifact).map_err(|e| format!("cannot read {}: {e}", vm_plan.artifact.display()))?;
    let stdout = output(&plan.stdout)?;
    let stderr = output(&plan.stderr)?;
    let config = VmConfig {
        workload: Some(Workload {
            artifact,
            cpu_features: vm_plan.cpu_features,
            args: vm_plan.args,
            env: vm_plan.env,
            preopens: vec![Preopen { host: vm_plan.rootfs, guest: "/".into() }],
            memory: MemorySize::from_mib(vm_plan.memory_mib).map_err(|e| e.to_string())?,
            stdin: input(&plan.stdin)?,
            stdout,
            stderr,
        }),
        log_level: LOG_OFF,
        ..Default::default()
    };
    let vm = Vm::try_from(config).map_err(|e| error_chain(&e))?;
    let signals = wasmcell_vmm::signals::forward_to(vm.handle()).map_err(|e| e.to_string())?;
    let report = vm.run().map_err(|e| error_chain(&e))?;
    Ok(match report.outcome {
        Outcome::Exited(code) => (code & 0xff) as i32,
        Outcome::WasmTrap(message) => {
            // The trap goes to the container's stderr, as `wasmtime run` prints it.
            if let Ok(mut err) = output(&plan.stderr) {
                let _ = writeln!(err, "Error: {message}");
            }
            134
        }
        Outcome::Killed => 128 + signals.received().unwrap_or(libc::SIGKILL),
        Outcome::Timeout => 124,
        other => return Err(format!("the guest failed: {other}")),
    })
}

/// A pod sandbox's process: holds the pod's cgroup and network namespace until SIGTERM or
/// SIGINT (status 128 + signal); SIGKILL ends it as any process.
fn hold_pod() -> i32 {
    // SAFETY: the signal set is a local, initialised by `sigemptyset` before use; blocking
    // SIGTERM/SIGINT in this single-threaded process makes `sigwait` the only way they arrive.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut signal = 0;
        if libc::sigwait(&set, &mut signal) != 0 {
            return 1;
        }
        128 + signal
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

fn output(fifo: &str) -> Result<Box<dyn Write + Send>, String> {
    if fifo.is_empty() {
        return Ok(Box::new(std::io::sink()));
    }
    // Read-write, as runc's shim also holds a read end: the open does not wait for a reader
    // (`ctr run -d` has none), and a reader that goes away does not end the workload with EPIPE.
    let file = OpenOptions::new().read(true).write(true).open(fifo).map_err(|e| format!("cannot open {fifo}: {e}"))?;
    Ok(Box::new(file))
}

fn input(fifo: &str) -> Result<Input, String> {
    if fifo.is_empty() {
        return Ok(Input::Empty);
    }
    // Non-blocking open: a FIFO with no writer yet would block the open itself.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| format!("cannot open {fifo}: {e}"))?;
    Ok(Input::from_fd(file.into()))
}
