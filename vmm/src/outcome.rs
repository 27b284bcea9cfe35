//! How a VM run ended ([`Outcome`]) and what it measured ([`RunReport`]).

use std::fmt;
use std::time::Duration;
use wasmcell_abi::exit;

/// Why the guest stopped. Every way a guest can end is one of these; none of them is an error of
/// the VMM itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote an exit code. 0–255 are the workload's; higher codes are the guest
    /// kernel's verdicts (`wasmcell_abi::exit`).
    Exited(u32),
    /// The guest panicked with this message (lossy UTF-8, capped in length).
    GuestPanic(String),
    /// The guest took an exception: a CPL 0 stub reported it and the VM stopped.
    GuestFault {
        /// Exception vector (`wasmcell_abi::exit::VECTOR_TRIPLE_FAULT` for a triple fault).
        vector: u8,
        /// The error code the CPU pushed, 0 for vectors without one.
        error_code: u64,
        /// Faulting instruction.
        rip: u64,
        /// Faulting address for page faults.
        cr2: u64,
    },
    /// The Wasm module trapped; the message has the trap and its Wasm backtrace.
    WasmTrap(String),
    /// The workload could not start (unknown import, no `_start`, module rejected).
    WorkloadError(String),
    /// The workload drove one of its devices outside what it may touch (rings or buffers
    /// outside its own memory, a corrupt ring): only broken or hostile native code does that.
    DeviceError(String),
    /// The configured timeout passed first; the VMM stopped the vCPU.
    Timeout,
    /// Someone stopped the run (through its [`crate::VmHandle`] or [`crate::Stopper`]).
    Killed,
    /// The vCPU had nothing to run and parked (a pod's boot vCPU once the kernel is up).
    Parked,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(code) => match exit::describe(*code) {
                Some(what) => write!(f, "guest exited with code {code} ({what})"),
                None => write!(f, "guest exited with code {code}"),
            },
            Outcome::GuestPanic(msg) => write!(f, "guest panicked: {msg}"),
            Outcome::GuestFault { vector, error_code, rip, cr2 } => write!(
                f,
                "guest fault: vector {vector} ({}), error code {error_code:#x}, rip {rip:#x}, cr2 {cr2:#x}",
                crate::arch::fault_name(*vector)
            ),
            Outcome::WasmTrap(msg) => write!(f, "wasm trap: {msg}"),
            Outcome::WorkloadError(msg) => write!(f, "workload could not start: {msg}"),
            Outcome::DeviceError(msg) => write!(f, "workload misused its device: {msg}"),
            Outcome::Timeout => write!(f, "guest timed out"),
            Outcome::Killed => write!(f, "guest killed"),
            Outcome::Parked => write!(f, "guest parked its vCPU"),
        }
    }
}

/// The outcome of a run and its timings, measured from the start of [`crate::Vm::try_from`] for
/// [`crate::Vm::run`], from [`crate::Vm::start`] for a workload started later.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// How the guest ended.
    pub outcome: Outcome,
    /// → the guest's boot-done marker; `None` if the guest never wrote it.
    pub boot_time: Option<Duration>,
    /// → the guest stopped.
    pub run_time: Duration,
    /// Times the workload's vCPU left the guest (`KVM_RUN` returned): what its I/O cost.
    pub exits: u64,
}
