//! A workload as a VMM child runs it, in a container's VM or a pod's: its plan turned into the
//! VMM library's [`Workload`] (the artifact read, containerd's FIFOs opened), and its outcome
//! turned into the exit status containerd reports, with the cause on the container's stderr.

use crate::plan::WorkloadPlan;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use wasmcell_vmm::{Artifact, Input, MemorySize, Outcome, Output, Preopen, Workload};

/// The status of a workload that trapped, as `wasmtime run` gives it (128 + SIGABRT).
const TRAP_STATUS: i32 = 134;

/// The VMM library's workload for `plan`.
pub fn load(plan: &WorkloadPlan) -> Result<Workload, String> {
    // Mapped, not read: the pod's containers running one module share its pages.
    let artifact = File::open(&plan.artifact)
        .and_then(Artifact::map)
        .map_err(|e| format!("cannot read {}: {e}", plan.artifact.display()))?;
    Ok(Workload {
        artifact,
        cpu_features: plan.cpu_features,
        args: plan.args.clone(),
        env: plan.env.clone(),
        preopens: vec![Preopen { host: plan.rootfs.clone(), guest: "/".into() }],
        memory: MemorySize::from_mib(plan.memory_mib).map_err(|e| e.to_string())?,
        stdin: input(&plan.stdin)?,
        stdout: output(&plan.stdout)?,
        stderr: output(&plan.stderr)?,
    })
}

/// The exit status for `outcome`; `signal` is the one that stopped the workload, if any. Why a
/// workload failed goes to its stderr, where the container's user looks (`ctr run`,
/// `kubectl logs`).
pub fn exit_status(outcome: Outcome, signal: Option<i32>, stderr: &str) -> i32 {
    match outcome {
        Outcome::Exited(code) => (code & 0xff) as i32,
        Outcome::WasmTrap(message) => {
            // As `wasmtime run` prints it.
            report(stderr, &format!("Error: {message}"));
            TRAP_STATUS
        }
        Outcome::Killed => 128 + signal.unwrap_or(libc::SIGKILL),
        Outcome::Timeout => 124,
        other => {
            report(stderr, &format!("wasmcell: the guest failed: {other}"));
            1
        }
    }
}

/// Writes `line` to the stderr FIFO at `path`, if the FIFO has room for it (a full FIFO nobody
/// reads must not hold up the report of the exit), and gives a reader that has not attached yet
/// a bounded time to take it.
pub fn report(path: &str, line: &str) {
    if let Ok(mut err) = output(path) {
        let _ = err.write(format!("{line}\n").as_bytes());
        err.finish();
    }
}

fn output(fifo: &str) -> Result<Output, String> {
    if fifo.is_empty() {
        return Ok(Output::null());
    }
    // Read-write, as runc's shim also holds a read end: the open does not wait for a reader
    // (`ctr run -d` has none), and a reader that goes away does not end the workload with EPIPE.
    // The VMM writes it through a non-blocking description of its own.
    let file = OpenOptions::new().read(true).write(true).open(fifo).map_err(|e| format!("cannot open {fifo}: {e}"))?;
    Ok(Output::fifo(file.into()))
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
