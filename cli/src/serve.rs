//! `wasmcell serve`: a `wasi:http/proxy` component answering HTTP in a microVM, as `wasmtime
//! serve` does. The host compiles the component (it must export `wasi:http/incoming-handler`)
//! and boots a VM whose workload has this process's network and the address to serve; the
//! guest binds it with the workload's own socket, parses HTTP itself and makes an instance per
//! request (`guest/kernel/src/serve`). Nothing HTTP runs on the host. Runs until stopped
//! (SIGINT/SIGTERM: status 128 + the signal).

use crate::cli::ServeArgs;
use crate::run::{output, prepare};
use anyhow::{bail, Context};
use std::os::fd::AsFd;
use std::process::ExitCode;
use wasmcell_abi::boot_info::LOG_OFF;
use wasmcell_aot::Entry;
use wasmcell_vmm::{signals, Input, Network, Outcome, Resolver, Vm, VmConfig, Workload};

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    signals::block_stop_signals().context("Cannot watch for SIGINT/SIGTERM")?;
    let prepared = prepare(&args.component, Entry::Serve, args.allow_precompiled, args.cache_dir)?;
    let workload = Workload {
        artifact: prepared.artifact,
        cpu_features: prepared.cpu_features,
        args: vec![args.component.to_string_lossy().into_owned()],
        env: args.env,
        preopens: args.dirs,
        archive: None,
        memory: args.memory,
        stdin: Input::Empty,
        stdout: output(std::io::stdout().as_fd()),
        stderr: output(std::io::stderr().as_fd()),
        network: Some(Network { name_lookup: args.allow_ip_name_lookup.then(Resolver::system), ..Network::default() }),
        serve: Some(args.addr),
        listen: Vec::new(),
        volumes: Vec::new(),
    };
    let config = VmConfig { workload: Some(workload), log_level: LOG_OFF, ..Default::default() };
    let vm = Vm::try_from(config)?;
    let signals = signals::forward_to(vm.handle()).context("Cannot watch for SIGINT/SIGTERM")?;
    let report = vm.run()?;
    match report.outcome {
        Outcome::Killed => Ok(ExitCode::from(128 + signals.received().unwrap_or(libc::SIGKILL) as u8)),
        Outcome::WorkloadError(message) => bail!("Cannot serve {}: {message}", args.component.display()),
        outcome => bail!("The guest failed: {outcome}"),
    }
}
