//! Process calls: `proc_exit` and `sched_yield`.

use super::{WasiCtx, WasiLinker, MODULE};
use core::fmt;
use wasmtime::Caller;

/// `proc_exit(code)`: unwinds out of `_start` as an error carrying the code.
#[derive(Debug)]
pub struct WasiExit(pub u32);

impl fmt::Display for WasiExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit with status {}", self.0)
    }
}

impl core::error::Error for WasiExit {}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "proc_exit", |_: Caller<'_, WasiCtx>, code: u32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(WasiExit(code)))
    })?;
    // One workload per vCPU: there is no one to yield to.
    linker.func_wrap(MODULE, "sched_yield", |_: Caller<'_, WasiCtx>| -> i32 { 0 })?;
    Ok(())
}
