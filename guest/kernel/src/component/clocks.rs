//! `wasi:clocks` and `wasi:random`: preview 1's clock (the TSC from the VMM's sample) and its
//! ChaCha20 generator (seeded from the host per workload), under their WASI 0.2 names.

use super::bindings::wasi::clocks::{monotonic_clock, wall_clock};
use super::bindings::wasi::random::{insecure, insecure_seed, random};
use super::{ComponentCtx, Pollable};
use alloc::vec;
use alloc::vec::Vec;
use rand_chacha::rand_core::Rng;
use wall_clock::Datetime;
use wasmtime::component::Resource;

/// Most random bytes one call returns; larger requests are a trap, not a guest heap exhausted.
const MAX_RANDOM_BYTES: u64 = 64 << 20;

impl ComponentCtx {
    fn monotonic_now(&self) -> u64 {
        self.wasi.clocks.monotonic_ns().unwrap_or(0)
    }

    fn random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            wasmtime::bail!("a request for {len} random bytes is more than the guest gives ({MAX_RANDOM_BYTES})");
        }
        let mut bytes = vec![0; len as usize];
        self.wasi.rng.fill_bytes(&mut bytes);
        Ok(bytes)
    }
}

/// A time in ns since the Unix epoch as a WASI 0.2 datetime.
pub(super) fn datetime(ns: u64) -> Datetime {
    Datetime { seconds: ns / 1_000_000_000, nanoseconds: (ns % 1_000_000_000) as u32 }
}

impl monotonic_clock::Host for ComponentCtx {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.monotonic_now())
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(self.wasi.clocks.resolution_ns())
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push(Pollable::Deadline(when))?)
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<Pollable>> {
        let when = self.monotonic_now().saturating_add(duration);
        Ok(self.table.push(Pollable::Deadline(when))?)
    }
}

impl wall_clock::Host for ComponentCtx {
    fn now(&mut self) -> wasmtime::Result<Datetime> {
        Ok(datetime(self.wasi.clocks.realtime_ns()))
    }

    fn resolution(&mut self) -> wasmtime::Result<Datetime> {
        Ok(datetime(self.wasi.clocks.resolution_ns()))
    }
}

impl random::Host for ComponentCtx {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.random_bytes(len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.wasi.rng.next_u64())
    }
}

impl insecure::Host for ComponentCtx {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.random_bytes(len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.wasi.rng.next_u64())
    }
}

impl insecure_seed::Host for ComponentCtx {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok(self.insecure_seed)
    }
}
