//! Clocks and randomness: `clock_time_get`, `clock_res_get`, `random_get`.
//!
//! Time is the TSC (readable in CPL 3, no VM exit) counted from the sample the VMM took just
//! before the workload's vCPU started (`clock_tsc` ↔ `clock_realtime_ns`). The CPU-time clocks
//! count the same way: a workload has its vCPU to itself, so its CPU time is the time since it
//! started, including any time the host descheduled the vCPU. Randomness is ChaCha20 seeded
//! from the host's getrandom, a seed per workload.

use super::errno::{to_errno, Errno};
use super::{write_bytes, WasiCtx, WasiLinker, MODULE};
use crate::arch;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wasmcell_abi::vcpu::VcpuInfo;
use wasmtime::Caller;

const REALTIME: u32 = 0;
const MONOTONIC: u32 = 1;
const PROCESS_CPUTIME: u32 = 2;
const THREAD_CPUTIME: u32 = 3;

/// The guest's clocks.
pub struct Clocks {
    tsc_base: u64,
    realtime_base_ns: u64,
    tsc_khz: u64,
}

impl Clocks {
    pub fn new(info: &VcpuInfo) -> Self {
        Self { tsc_base: info.clock_tsc, realtime_base_ns: info.clock_realtime_ns, tsc_khz: info.tsc_khz }
    }

    /// Nanoseconds since the VMM's sample; `None` without a known TSC frequency.
    fn elapsed_ns(&self) -> Option<u64> {
        if self.tsc_khz == 0 {
            return None;
        }
        let ticks = arch::timestamp().saturating_sub(self.tsc_base);
        Some((u128::from(ticks) * 1_000_000 / u128::from(self.tsc_khz)) as u64)
    }

    /// Monotonic nanoseconds since the VMM's sample.
    pub fn monotonic_ns(&self) -> Option<u64> {
        self.elapsed_ns()
    }

    /// The realtime clock now, ns since the Unix epoch (file timestamps).
    pub fn realtime_ns(&self) -> u64 {
        self.now(REALTIME).unwrap_or(self.realtime_base_ns)
    }

    /// The realtime clock at the VMM's sample (monotonic 0).
    pub fn realtime_at_boot_ns(&self) -> u64 {
        self.realtime_base_ns
    }

    fn now(&self, id: u32) -> Result<u64, Errno> {
        let elapsed = self.elapsed_ns().ok_or(Errno::NoSys)?;
        match id {
            REALTIME => Ok(self.realtime_base_ns.saturating_add(elapsed)),
            MONOTONIC | PROCESS_CPUTIME | THREAD_CPUTIME => Ok(elapsed),
            _ => Err(Errno::Inval),
        }
    }

    fn resolution(&self, id: u32) -> Result<u64, Errno> {
        if id > THREAD_CPUTIME {
            return Err(Errno::Inval);
        }
        Ok(self.resolution_ns())
    }

    /// Every clock's resolution: one TSC tick, rounded up to a nanosecond.
    pub fn resolution_ns(&self) -> u64 {
        1_000_000u64.div_ceil(self.tsc_khz.max(1)).max(1)
    }
}

/// The guest's CSPRNG.
pub fn new_rng(info: &VcpuInfo) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(info.random_seed)
}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "clock_time_get", |mut c: Caller<'_, WasiCtx>, id: u32, _precision: u64, ptr: u32| {
        let result = c.data().clocks.now(id).and_then(|ns| write_bytes(&mut c, ptr, &ns.to_le_bytes()));
        to_errno(result)
    })?;
    linker.func_wrap(MODULE, "clock_res_get", |mut c: Caller<'_, WasiCtx>, id: u32, ptr: u32| {
        let result = c.data().clocks.resolution(id).and_then(|ns| write_bytes(&mut c, ptr, &ns.to_le_bytes()));
        to_errno(result)
    })?;
    linker.func_wrap(MODULE, "random_get", |mut c: Caller<'_, WasiCtx>, ptr: u32, len: u32| {
        let mut chunk = [0u8; 256];
        let mut done = 0u32;
        let result = loop {
            if done == len {
                break Ok(());
            }
            let n = (len - done).min(chunk.len() as u32);
            c.data_mut().rng.fill_bytes(&mut chunk[..n as usize]);
            let Some(at) = ptr.checked_add(done) else { break Err(Errno::Fault) };
            if let Err(e) = write_bytes(&mut c, at, &chunk[..n as usize]) {
                break Err(e);
            }
            done += n;
        };
        to_errno(result)
    })?;
    Ok(())
}
