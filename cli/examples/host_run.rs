//! The host reference for benchmarks: runs a WASI module in std wasmtime + wasmtime-wasi the way
//! `wasmtime run` does (default engine, inherited stdio), from a module or a host `.cwasm`.
//! With `HOST_RUN_STATS=1` it prints how long `_start` took on stderr; with
//! `HOST_RUN_LIKE_GUEST=1` it compiles with the guest's memory settings (explicit bounds checks,
//! no guard pages, no signal handlers). `HOST_RUN_DIR=HOST::GUEST` preopens a directory.
//!
//! Usage: `host_run <module.wasm|module.cwasm> [args...]`

use anyhow::Context;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().context("usage: host_run <module> [args...]")?;
    let engine = if std::env::var_os("HOST_RUN_LIKE_GUEST").is_some_and(|v| !v.is_empty()) {
        // The guest's code-generation settings on the host: tells the cost of explicit bounds
        // checks apart from the cost of running in the microVM.
        let mut config = wasmtime::Config::new();
        config.signals_based_traps(false).memory_reservation(0).memory_guard_size(0).memory_reservation_for_growth(0);
        wasmtime::Engine::new(&config)?
    } else {
        wasmtime::Engine::default()
    };
    let bytes = std::fs::read(path)?;
    let module = match wasmtime::Engine::detect_precompiled(&bytes) {
        // SAFETY: the benchmark precompiled this file with the same wasmtime and settings.
        Some(_) => unsafe { wasmtime::Module::deserialize(&engine, &bytes)? },
        None => wasmtime::Module::new(&engine, &bytes)?,
    };
    let mut linker = wasmtime::Linker::<WasiP1Ctx>::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().args(&args);
    if let Some(dir) = std::env::var("HOST_RUN_DIR").ok().filter(|d| !d.is_empty()) {
        let (host, guest) = dir.split_once("::").context("HOST_RUN_DIR is HOST::GUEST")?;
        wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)?;
    }
    let wasi = wasi.build_p1();
    let mut store = wasmtime::Store::new(&engine, wasi);
    let start = linker.instantiate(&mut store, &module)?.get_typed_func::<(), ()>(&mut store, "_start")?;
    let began = std::time::Instant::now();
    let result = start.call(&mut store, ());
    if std::env::var_os("HOST_RUN_STATS").is_some() {
        eprintln!("host_run: _start {:.3} ms", began.elapsed().as_secs_f64() * 1e3);
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => std::process::exit(exit.0),
            None => Err(anyhow::anyhow!("{e:?}")),
        },
    }
}
