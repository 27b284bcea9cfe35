//! `wasmcell`: the command line. `wasmcell boot` boots the guest unikernel in a KVM microVM with
//! no workload (or a self-test) and prints the guest's log, how it ended and how long boot took.
//! `wasmcell run app.wasm` runs a module through the same path with the host AOT compiler in
//! front; `wasmcell serve app.wasm` serves a `wasi:http` component from one; `wasmcell compile` is that compiler on its own; `wasmcell image build` packs a module
//! as an OCI image for containerd; `wasmcell install` sets a node's containerd up for it.

mod cli;
mod image;
mod install;
mod run;
mod serve;

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use wasmcell_abi::boot_info::{LOG_INFO, LOG_OFF};
use wasmcell_vmm::{Outcome, RunReport, Vm, VmConfig};

fn main() -> ExitCode {
    // Before clap: `wasmcell __compile` is a compiler process, not a command.
    wasmcell_aot::run_if_compile_action();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return cli::report_usage_error(e),
    };
    let result = match args.command {
        cli::Command::Run(run) => run::run(run),
        cli::Command::Serve(serve) => serve::serve(serve),
        cli::Command::Compile(compile) => run::compile(compile),
        cli::Command::Boot(boot) => run_boot(boot),
        cli::Command::Image(cli::ImageCommand::Build(build)) => image::build(build),
        cli::Command::Install(install) => install::install(install),
    };
    result.unwrap_or_else(|e| {
        eprintln!("wasmcell: error: {}", one_line(&format!("{e:#}")));
        ExitCode::from(1)
    })
}

fn run_boot(args: cli::BootArgs) -> anyhow::Result<ExitCode> {
    let (selftest, abi_version) = args.selftest.unwrap_or_default().into_request(args.selftest_arg);
    let config = VmConfig {
        memory: args.memory,
        guest_image: args.guest.map(wasmcell_vmm::GuestImage::Path).unwrap_or_default(),
        timeout: args.timeout,
        log: Box::new(std::io::stdout()),
        selftest,
        log_level: if args.quiet { LOG_OFF } else { LOG_INFO },
        abi_version,
        workload: None,
        ..Default::default()
    };
    let vm = Vm::try_from(config)?;
    let signals = wasmcell_vmm::signals::forward_to(vm.handle()).context("Cannot watch for SIGINT/SIGTERM")?;
    let report = vm.run()?;
    eprintln!("wasmcell: {}", report.outcome);
    print_timings(&report);
    Ok(exit_code(&report.outcome, signals.received()))
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// An error as one line: some causes (a `.wat` syntax error) carry a multi-line source excerpt,
/// of which only the first line and the `--> line:column` location are kept.
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    match text.lines().find_map(|l| l.trim().strip_prefix("--> ")) {
        Some(location) => format!("{first} (at {})", location.trim_start_matches("<anon>:")),
        None => first.to_string(),
    }
}

/// The VMM's timing line.
fn print_timings(report: &RunReport) {
    let boot = report.boot_time.map_or_else(|| "-".to_string(), millis);
    eprintln!(
        "wasmcell: boot {boot} (VM create → boot-done), run {} (VM create → stop), {} VM exits",
        millis(report.run_time),
        report.exits
    );
}

/// The process's status: the guest's own code, 124 on timeout (as `timeout(1)`), 128 + the
/// signal when stopped by one, 70 (EX_SOFTWARE) when the guest failed.
fn exit_code(outcome: &Outcome, signal: Option<i32>) -> ExitCode {
    match outcome {
        Outcome::Exited(code) => u8::try_from(*code).map_or(ExitCode::from(70), ExitCode::from),
        Outcome::Timeout => ExitCode::from(124),
        Outcome::Killed => ExitCode::from(128 + signal.unwrap_or(libc::SIGKILL) as u8),
        Outcome::GuestPanic(_)
        | Outcome::GuestFault { .. }
        | Outcome::WasmTrap(_)
        | Outcome::WorkloadError(_)
        | Outcome::DeviceError(_)
        | Outcome::Parked => ExitCode::from(70),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn multi_line_errors_become_one_line() {
        let wat = "Cannot compile: unknown operator\n     --> <anon>:1:34\n      |\n    1 | (module)\n      |  ^\n";
        assert_eq!(super::one_line(wat), "Cannot compile: unknown operator (at 1:34)");
        assert_eq!(super::one_line("plain"), "plain");
    }
}
