//! A pod's VM through the library, in the flow the shim drives it: a VM booted without a
//! workload (its boot vCPU parks), then workloads started while it runs, side by side, each on a
//! vCPU and in a window of its own; a workload started after another ended runs on that one's
//! vCPU, reset. The emulated-arm64 CI stage runs it with artifacts compiled on x86-64
//! (`ci/arm64/test.sh`); it is also the shortest tour of the pod API.
//!
//! ```text
//! pod [--then] ARTIFACT [ARG...] [-- [--then] ARTIFACT [ARG...]]...
//! ```
//!
//! Each `--`-separated group is a workload: a precompiled `.cwasm` for this machine (baseline
//! CPU features) and its arguments. Each starts at once, while the others run, except one marked
//! `--then`, which starts when the workload before it has ended. Their stdout and stderr are
//! this process's. Prints `workload N: OUTCOME` for each once all have ended; exits 1 unless
//! every workload exited 0.

use std::os::fd::AsFd;
use std::time::Duration;
use wasmcell_vmm::{Artifact, MemorySize, Outcome, Output, VcpuRun, Vm, VmConfig, Workload};

fn workload(args: &[String]) -> Workload {
    let artifact = std::fs::read(&args[0]).unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().expect("dup stdout");
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().expect("dup stderr");
    Workload {
        artifact: Artifact::from(artifact),
        args: args.to_vec(),
        memory: MemorySize::from_mib(64).expect("64 MiB"),
        stdout: Output::from_fd(stdout),
        stderr: Output::from_fd(stderr),
        ..Default::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let groups: Vec<&[String]> = args.split(|a| a == "--").filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        eprintln!("usage: pod [--then] ARTIFACT [ARG...] [-- [--then] ARTIFACT [ARG...]]...");
        std::process::exit(2);
    }
    let vm = Vm::try_from(VmConfig { timeout: Some(Duration::from_secs(300)), ..Default::default() })
        .expect("create the pod's VM");
    vm.boot().expect("boot the pod's VM");
    let mut runs: Vec<Option<VcpuRun>> = Vec::new();
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    for group in groups {
        let (then, group) = match group.split_first() {
            Some((first, rest)) if first == "--then" => (true, rest),
            _ => (false, group),
        };
        if let Some(previous) = runs.last_mut().filter(|_| then).and_then(Option::take) {
            *outcomes.last_mut().expect("one per run") = Some(previous.join().expect("join a workload").outcome);
        }
        runs.push(Some(vm.start(workload(group)).expect("start a workload")));
        outcomes.push(None);
    }
    let mut all_exited = true;
    for (index, (run, outcome)) in runs.into_iter().zip(outcomes).enumerate() {
        let outcome = match (run, outcome) {
            (Some(run), _) => run.join().expect("join a workload").outcome,
            (None, Some(outcome)) => outcome,
            (None, None) => unreachable!("a run is joined once, with its outcome kept"),
        };
        all_exited &= outcome == Outcome::Exited(0);
        println!("workload {index}: {outcome}");
    }
    std::process::exit(if all_exited { 0 } else { 1 });
}
