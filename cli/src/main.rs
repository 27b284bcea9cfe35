//! `wasmcell`: the command line. `wasmcell boot` boots the guest unikernel in a KVM microVM with
//! no workload (or a self-test) and prints the guest's log, how it ended and how long boot took.
//! `wasmcell run app.wasm` builds on the same path.

mod cli;
mod signals;

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use wasmcell_abi::boot_info::{LOG_INFO, LOG_OFF};
use wasmcell_vmm::{Outcome, RunReport, Vm, VmConfig};

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return cli::report_usage_error(e),
    };
    match args.command {
        cli::Command::Boot(boot) => match run_boot(boot) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("wasmcell: error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
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
    };
    let vm = Vm::try_from(config)?;
    let signals = signals::forward_to(vm.handle()).context("Cannot watch for SIGINT/SIGTERM")?;
    let report = vm.run()?;
    print_report(&report);
    Ok(exit_code(&report.outcome, signals.received()))
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn print_report(report: &RunReport) {
    eprintln!("wasmcell: {}", report.outcome);
    let boot = report.boot_time.map_or_else(|| "-".to_string(), millis);
    eprintln!("wasmcell: boot {boot} (VM create → boot-done), run {} (VM create → stop)", millis(report.run_time));
}

/// The process's status: the guest's own code, 124 on timeout (as `timeout(1)`), 128 + the
/// signal when stopped by one, 70 (EX_SOFTWARE) when the guest failed.
fn exit_code(outcome: &Outcome, signal: Option<i32>) -> ExitCode {
    match outcome {
        Outcome::Exited(code) => u8::try_from(*code).map_or(ExitCode::from(70), ExitCode::from),
        Outcome::Timeout => ExitCode::from(124),
        Outcome::Killed => ExitCode::from(128 + signal.unwrap_or(libc::SIGKILL) as u8),
        Outcome::GuestPanic(_) | Outcome::GuestFault { .. } => ExitCode::from(70),
    }
}
