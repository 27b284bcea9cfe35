//! `wasmcell serve` against `wasmtime serve`'s parts, side by side in one run: the `http_hello`
//! component (`images/samples`) served from a wasmcell microVM, and by wasmtime-wasi-http 48
//! on hyper in this process (an instance per request, keep-alive, a tokio thread pool: what
//! `wasmtime serve` is made of). Clients on loopback, each with one keep-alive connection,
//! send `GET /` back to back for a fixed time; requests per second and the p50/p99 latency at
//! 1, 16 and 64 connections. `WASMCELL_BENCH_SECONDS` sets the time per point (default 3).
//! `docs/perf.md` quotes the output.

#[path = "../tests/http/mod.rs"]
mod http;

use http::{request_bytes, Client};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn component() -> String {
    let status = Command::new(root().join("images/build.sh")).stdout(Stdio::null()).status().expect("images/build.sh");
    assert!(status.success(), "images/build.sh failed");
    root().join("target/images/wasm32-wasip2/release/http_hello.wasm").to_string_lossy().into_owned()
}

/// Requests per second and the latencies' p50 and p99 (µs) with `connections` clients for
/// `time`.
fn measure(port: u16, connections: usize, time: Duration) -> (f64, f64, f64) {
    let request = request_bytes("GET", "/", &[], b"");
    let began = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                let mut latencies = Vec::new();
                // Warm: the first requests pay for connection setup.
                for _ in 0..10 {
                    client.send(&request);
                    client.response(false).expect("a response");
                }
                while began.elapsed() < time {
                    let sent = Instant::now();
                    client.send(&request);
                    let response = client.response(false).expect("a response");
                    assert_eq!(response.status, 200);
                    latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let elapsed = began.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (latencies.len() as f64 / elapsed, at(0.5), at(0.99))
}

fn main() {
    let seconds: u64 = std::env::var("WASMCELL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let time = Duration::from_secs(seconds);
    let component = component();
    let cache = root().join("target/bench-cache");
    let (mut served, port) = http::spawn_wasmcell_serve(&component, &cache.to_string_lossy());
    let reference = http::spawn_host_serve(&component);
    println!("GET / on keep-alive connections, {seconds} s per point; reference: wasmtime-wasi-http 48 on hyper");
    println!(
        "{:<12} {:>14} {:>14} {:>7} {:>22} {:>22}",
        "connections", "wasmcell req/s", "wasmtime req/s", "ratio", "wasmcell p50/p99 µs", "wasmtime p50/p99 µs"
    );
    for connections in [1, 16, 64] {
        let ours = measure(port, connections, time);
        let theirs = measure(reference, connections, time);
        println!(
            "{:<12} {:>14.0} {:>14.0} {:>7.2} {:>22} {:>22}",
            connections,
            ours.0,
            theirs.0,
            ours.0 / theirs.0,
            format!("{:.0} / {:.0}", ours.1, ours.2),
            format!("{:.0} / {:.0}", theirs.1, theirs.2)
        );
    }
    let _ = served.kill();
    let _ = served.wait();
}
