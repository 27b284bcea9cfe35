//! A pod's VM on real KVM, through the VMM library in-process as the shim drives it: one VM,
//! workloads started while it runs, each on its own vCPU in its own window, side by side; a
//! stopped or finished workload gives its vCPU, window and memory back, and none of it leaks.
//! One test function, so that nothing else in this process changes the counts it checks.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmcell_aot::{Cache, Compiler, CompilerProcess, Limits};
use wasmcell_vmm::{Artifact, Error, MemorySize, Outcome, Output, Preopen, Vm, VmConfig, Workload};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Compiles samples once, through the tests' cache.
struct Samples {
    compiler: Compiler,
    cache: Cache,
}

impl Samples {
    fn new() -> Self {
        // Misses compile in a compiler process: the `wasmcell` binary's, as `wasmcell run` does.
        let process = CompilerProcess::binary(env!("CARGO_BIN_EXE_wasmcell"));
        let cache = Cache::open(common::cache_dir(), &Limits::default()).unwrap().with_compiler_process(process);
        Self { compiler: Compiler::for_host().unwrap(), cache }
    }

    /// A workload running sample `name` with `args`, its stdout and stderr captured.
    fn workload(&self, name: &str, args: &[&str]) -> (Workload, Capture, Capture) {
        let module = std::fs::read(common::sample(name)).unwrap();
        let compiled = self.cache.get_or_compile(&self.compiler, &module).unwrap();
        let artifact = Artifact::map(compiled.file().unwrap()).unwrap();
        let (out, err) = (Capture::default(), Capture::default());
        let workload = Workload {
            artifact,
            cpu_features: self.compiler.cpu_features(),
            args: std::iter::once(name).chain(args.iter().copied()).map(String::from).collect(),
            memory: MemorySize::from_mib(64).unwrap(),
            stdout: Output::writer(Box::new(out.clone())),
            stderr: Output::writer(Box::new(err.clone())),
            ..Default::default()
        };
        (workload, out, err)
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Open fds and threads of this process.
fn resources() -> (usize, usize) {
    (count("/proc/self/fd"), count("/proc/self/task"))
}

/// A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`), MiB.
fn memory_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

fn rss_mib() -> u64 {
    memory_mib("VmRSS:")
}

/// The tests of this file run one at a time: one counts this process's fds and threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits (bounded) until `check` holds.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_pod_vm_runs_workloads_side_by_side_and_gives_everything_back() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let samples = Samples::new();
    // Warm up lazily created process-wide state (the CPUID cache, the kick handler, the
    // compilation cache) so that it does not count as a leak.
    {
        let vm = Vm::try_from(VmConfig::default()).unwrap();
        vm.boot().unwrap();
        vm.start(samples.workload("hello", &[]).0).unwrap().join().unwrap();
        for name in ["exit_code", "spin", "args", "fill_files"] {
            samples.workload(name, &[]);
        }
    }
    let baseline = resources();

    let log = Capture::default();
    let vm = Vm::try_from(VmConfig { log: Box::new(log.clone()), ..Default::default() }).unwrap();
    let boot_time = vm.boot().unwrap();
    assert!(boot_time > Duration::ZERO);
    assert!(log.text().contains(": ready ("), "the boot vCPU came up: {:?}", log.text());

    // Two workloads at once: each its own output and exit code.
    let (hello, hello_out, _) = samples.workload("hello", &[]);
    let (exit3, exit3_out, exit3_err) = samples.workload("exit_code", &["3"]);
    let (hello, exit3) = (vm.start(hello).unwrap(), vm.start(exit3).unwrap());
    let (hello, exit3) = (hello.join().unwrap(), exit3.join().unwrap());
    assert_eq!((hello.outcome, exit3.outcome), (Outcome::Exited(0), Outcome::Exited(3)));
    assert_eq!(hello_out.text(), "Hello, world!\n");
    assert_eq!((exit3_out.text(), exit3_err.text()), ("exiting with 3\n".into(), "bye\n".into()));
    assert!(hello.boot_time.unwrap() <= hello.run_time);

    // A workload that never stops is stopped; the one beside it is not disturbed, and the VM
    // takes new workloads afterwards.
    let (spin, spin_out, _) = samples.workload("spin", &[]);
    let spin = vm.start(spin).unwrap();
    eventually("the spinning workload started", || spin_out.text() == "spinning\n");
    let (args, args_out, _) = samples.workload("args", &["a b", "c"]);
    let args = vm.start(args).unwrap();
    spin.stopper().stop();
    assert_eq!(spin.join().unwrap().outcome, Outcome::Killed);
    assert_eq!(args.join().unwrap().outcome, Outcome::Exited(0));
    assert_eq!(args_out.text(), "0: args\n1: a b\n2: c\n");

    // Twelve at once, more than the machine has cores: all finish, each with its own code.
    let runs: Vec<_> = (0..12)
        .map(|i| {
            let (w, out, _) = samples.workload("exit_code", &[&i.to_string()]);
            (i, vm.start(w).unwrap(), out)
        })
        .collect();
    for (i, run, out) in runs {
        assert_eq!(run.join().unwrap().outcome, Outcome::Exited(i));
        assert_eq!(out.text(), format!("exiting with {i}\n"));
    }

    // A workload's memory goes back to the host when it ends: fill_files fills its in-memory
    // file system (its 64 MiB window) until ENOSPC, then exits.
    let data = std::env::temp_dir().join(format!("wasmcell-pod-test-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    let before = rss_mib();
    // Resets the peak (VmHWM) to the current RSS, so the peak below is this workload's.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (mut fill, fill_out, _) = samples.workload("fill_files", &[]);
    fill.preopens = vec![Preopen { host: data.clone(), guest: "/data".into() }];
    let fill = vm.start(fill).unwrap().join().unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    assert_eq!(fill.outcome, Outcome::Exited(0), "{}", fill_out.text());
    assert!(fill_out.text().contains("full after more than 8 MiB"), "{}", fill_out.text());
    let peak = memory_mib("VmHWM:");
    // The file system full near half the window: a file grows by doubling its buffer.
    assert!(peak >= before + 24, "the workload's memory was host memory while it ran: {before} → peak {peak} MiB");
    eventually("the window's memory went back to the host", || rss_mib() < before + 16);

    // Bad workloads are refused before they touch the VM, which stays usable.
    let too_small =
        Workload { artifact: vec![0; 16 << 20].into(), memory: MemorySize::from_mib(8).unwrap(), ..Default::default() };
    assert!(matches!(vm.start(too_small), Err(Error::Workload(_))));
    assert!(matches!(vm.start(Workload::default()), Err(Error::Workload(_))));

    // Many workloads in sequence reuse vCPUs and windows; nothing accumulates.
    for _ in 0..20 {
        let (w, out, _) = samples.workload("hello", &[]);
        assert_eq!(vm.start(w).unwrap().join().unwrap().outcome, Outcome::Exited(0));
        assert_eq!(out.text(), "Hello, world!\n");
    }
    let running = resources();
    drop(vm);
    assert!(running.0 > baseline.0, "the VM holds fds while it lives");
    assert_eq!(resources(), baseline, "a pod VM leaves no fd or thread behind");
}

#[test]
fn a_workload_that_faults_never_disturbs_its_neighbour() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let samples = Samples::new();
    let vm = Vm::try_from(VmConfig::default()).unwrap();
    vm.boot().unwrap();
    let (sleeper, slept, _) = samples.workload("sleep", &["300"]);
    let sleeper = vm.start(sleeper).unwrap();
    let (faulter, printed, _) = samples.workload("oob", &[]);
    let report = vm.start(faulter).unwrap().join().unwrap();
    match report.outcome {
        Outcome::WasmTrap(message) => assert!(message.contains("out of bounds memory access"), "{message}"),
        other => panic!("the out-of-bounds read should trap: {other:?}"),
    }
    assert_eq!(printed.text(), "reading at 0xfffffff0\n");
    // The neighbour sleeps on to its own end, and the VM takes the next workload.
    assert!(matches!(sleeper.join().unwrap().outcome, Outcome::Exited(0)));
    assert_eq!(slept.text(), "slept at least 300 ms\n");
    let (hello, out, _) = samples.workload("hello", &[]);
    assert!(matches!(vm.start(hello).unwrap().join().unwrap().outcome, Outcome::Exited(0)));
    assert_eq!(out.text(), "Hello, world!\n");
}
