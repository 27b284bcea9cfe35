//! The reference the network tests compare with: a component run in-process by host wasmtime
//! and `wasmtime-wasi` with the host's network, as `wasmtime run -S inherit-network` runs it.

#![allow(dead_code)]

use std::time::Duration;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

/// The same component in host wasmtime with the host's network (`wasmtime run -S inherit-network`):
/// runs on a thread; its stdout can be read while it runs.
pub fn spawn_on_host(component: &str, args: &[&str]) -> (std::thread::JoinHandle<i32>, MemoryOutputPipe) {
    spawn(component, args, false)
}

fn spawn(component: &str, args: &[&str], name_lookup: bool) -> (std::thread::JoinHandle<i32>, MemoryOutputPipe) {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let argv: Vec<String> = std::iter::once(component).chain(args.iter().copied()).map(String::from).collect();
    let (component, out) = (component.to_string(), stdout.clone());
    let thread = std::thread::spawn(move || {
        let engine = wasmtime::Engine::default();
        let component = wasmtime::component::Component::from_file(&engine, &component).unwrap();
        let mut linker = wasmtime::component::Linker::<Host>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        let mut builder = WasiCtxBuilder::new();
        builder.args(&argv).stdout(out).inherit_stderr().inherit_network().allow_tcp(true).allow_udp(true);
        builder.allow_ip_name_lookup(name_lookup);
        let host = Host { ctx: builder.build(), table: wasmtime::component::ResourceTable::new() };
        let mut store = wasmtime::Store::new(&engine, host);
        let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker).unwrap();
        match command.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => 0,
            _ => 1,
        }
    });
    (thread, stdout)
}

struct Host {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for Host {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// Waits for the host run's `listening on PORT` line.
pub fn host_port(stdout: &MemoryOutputPipe) -> u16 {
    for _ in 0..2000 {
        let text = String::from_utf8_lossy(&stdout.contents()).into_owned();
        if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
            return line.strip_prefix("listening on ").unwrap().parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the host server never listened");
}

/// Runs the component on the host to its end → its status and stdout.
pub fn host_run(component: &str, args: &[&str]) -> (i32, String) {
    finish(spawn(component, args, false))
}

/// [`host_run`] with name lookups allowed (`-S allow-ip-name-lookup`).
pub fn host_run_with_lookup(component: &str, args: &[&str]) -> (i32, String) {
    finish(spawn(component, args, true))
}

fn finish((thread, stdout): (std::thread::JoinHandle<i32>, MemoryOutputPipe)) -> (i32, String) {
    let status = thread.join().unwrap();
    (status, String::from_utf8_lossy(&stdout.contents()).into_owned())
}
