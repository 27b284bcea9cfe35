//! `wasmcell run` and `wasmcell compile`: module → AOT (cached; a miss compiles in a compiler
//! process with the operator's time and memory limits) → VMM → guest wasmtime → exit status,
//! with `wasmtime run`'s conventions: the module's `proc_exit` code, 0 when `_start` returns,
//! 134 and the trap on stderr when it traps. As with `wasmtime run`, a precompiled artifact
//! runs only with `--allow-precompiled`: it is native code that nothing checks.

use crate::cli::{CompileArgs, RunArgs};
use anyhow::{bail, Context};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wasmcell_abi::boot_info::LOG_OFF;
use wasmcell_aot::{Cache, Compiler, Entry, Limits, Target};
use wasmcell_vmm::signals;
use wasmcell_vmm::{Artifact, HostVolume, Input, Network, Outcome, Outgoing, Output, Resolver, Vm, VmConfig, Workload};

/// The status `wasmtime run` gives a trap on Unix (128 + SIGABRT).
const TRAP_STATUS: u8 = 134;

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("Cannot read module {}", path.display()))
}

/// A module compiled (or taken as it is) for the guest, with what keeps its cache entry.
pub struct Prepared {
    pub artifact: Artifact,
    pub cpu_features: u64,
    /// Keeps the cache entry (mapped into the VM, not read) while the VM runs.
    _pin: Option<wasmcell_aot::Pin>,
}

/// Reads `path`, checks it can be entered by `entry`, and compiles it through the cache (a
/// precompiled artifact only with `allow_precompiled`).
pub fn prepare(
    path: &Path,
    entry: Entry,
    allow_precompiled: bool,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<Prepared> {
    let module = read_module(path)?;
    let compiler = Compiler::for_host()?;
    let cpu_features = compiler.cpu_features();
    if wasmcell_aot::is_precompiled(&module) {
        if !allow_precompiled {
            bail!(
                "{} is a precompiled artifact (native code): run it with --allow-precompiled if you trust it",
                path.display()
            );
        }
        if let Some(target) = wasmcell_aot::precompiled_target(&module).filter(|&t| t != Target::NATIVE) {
            bail!(
                "{} was compiled for {}, not for this {} machine",
                path.display(),
                target.name(),
                Target::NATIVE.name()
            );
        }
        return Ok(Prepared { artifact: Artifact::from(module), cpu_features, _pin: None });
    }
    wasmcell_aot::check_entry(&module, entry)?;
    let cache = Cache::open(cache_dir.unwrap_or_else(Cache::default_dir), &Limits::from_env()?)?;
    let compiled = cache.get_or_compile(&compiler, &module)?;
    let file = compiled.file().context("Cannot open the compiled module")?;
    let artifact = Artifact::map(file).context("Cannot open the compiled module")?;
    Ok(Prepared { artifact, cpu_features, _pin: Some(compiled.pin) })
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Before compiling, whose worker threads would otherwise take a SIGTERM and die of it.
    signals::block_stop_signals().context("Cannot watch for SIGINT/SIGTERM")?;
    let entry = if args.tcplisten.is_empty() { Entry::Run } else { Entry::RunWithListeners };
    // Opened first: a missing or odd volume fails before anything is compiled.
    let volumes = args
        .volumes
        .iter()
        .map(|v| HostVolume::open_either(&v.host, &v.guest, v.read_only))
        .collect::<Result<Vec<_>, _>>()?;
    let prepared = prepare(&args.module, entry, args.allow_precompiled, args.cache_dir)?;
    // Preopened listeners alone give a network that answers and never connects out: a
    // preview-1 module can only accept on what it was handed.
    let outgoing = if args.inherit_network { Outgoing::Allowed } else { Outgoing::Denied };
    let network = (args.inherit_network || !args.tcplisten.is_empty())
        .then(|| Network { outgoing, name_lookup: args.allow_ip_name_lookup.then(Resolver::system) });
    let argv0 = args.module.to_string_lossy().into_owned();
    let workload = Workload {
        artifact: prepared.artifact,
        cpu_features: prepared.cpu_features,
        args: std::iter::once(argv0).chain(args.args).collect(),
        env: args.env,
        preopens: args.dirs,
        archive: None,
        memory: args.memory,
        stdin: stdin(),
        stdout: output(std::io::stdout().as_fd()),
        stderr: output(std::io::stderr().as_fd()),
        network,
        serve: None,
        listen: args.tcplisten,
        volumes,
    };
    let config = VmConfig { timeout: args.timeout, workload: Some(workload), log_level: LOG_OFF, ..Default::default() };
    let vm = Vm::try_from(config)?;
    let signals = signals::forward_to(vm.handle()).context("Cannot watch for SIGINT/SIGTERM")?;
    let report = vm.run()?;
    if args.stats {
        crate::print_timings(&report);
    }
    Ok(match report.outcome {
        Outcome::Exited(code) => ExitCode::from(code as u8),
        Outcome::WasmTrap(message) => {
            eprintln!("Error: {message}");
            ExitCode::from(TRAP_STATUS)
        }
        Outcome::WorkloadError(message) => bail!("Cannot run {}: {message}", args.module.display()),
        Outcome::Timeout => {
            eprintln!("wasmcell: {} did not finish within the timeout; the VM was stopped", args.module.display());
            ExitCode::from(124)
        }
        Outcome::Killed => ExitCode::from(128 + signals.received().unwrap_or(libc::SIGKILL) as u8),
        outcome @ (Outcome::GuestPanic(_) | Outcome::GuestFault { .. } | Outcome::DeviceError(_) | Outcome::Parked) => {
            bail!("The guest failed: {outcome}")
        }
    })
}

/// One of this process's output streams for the module (a duplicate: the VMM writes it through
/// a non-blocking description of its own); nowhere if closed.
pub fn output(fd: std::os::fd::BorrowedFd<'_>) -> Output {
    fd.try_clone_to_owned().map_or_else(|_| Output::null(), Output::from_fd)
}

/// This process's stdin for the module (a duplicate, so the VM owns its copy); none if closed.
fn stdin() -> Input {
    std::io::stdin().as_fd().try_clone_to_owned().map_or(Input::Empty, Input::from_fd)
}

pub fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let module = read_module(&args.module)?;
    let compiler = match args.target {
        Some(target) if target != Target::NATIVE => Compiler::for_target(target, 0)?,
        _ => Compiler::for_host()?,
    };
    let artifact = compiler.compile_isolated(&module, Limits::from_env()?.compile)?;
    std::fs::write(&args.output, artifact).with_context(|| format!("Cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
