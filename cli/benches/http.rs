//! `wasmcell serve` against `wasmtime serve`, side by side in one run: the `http_hello`
//! component (`images/samples`) served from a wasmcell microVM, by the `wasmtime serve` CLI
//! 48.0.8 when it is at hand (`$WASMTIME`, else `target/wasmtime-cli/bin/wasmtime`, which
//! `cargo bench --bench cli` installs), and by wasmtime-wasi-http 48 on hyper in this process
//! (an instance per request, keep-alive, a tokio thread pool: what `wasmtime serve` is made
//! of). Clients on loopback, each with one keep-alive connection, send `GET /` back to back
//! for a fixed time; requests per second and the p50/p99 latency at 1, 16 and 64 connections.
//! `WASMCELL_BENCH_SECONDS` sets the time per point (default 3). `docs/perf.md` quotes the
//! output.

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

/// `wasmtime serve` (the CLI) on a free port of loopback, if the CLI is at hand.
fn spawn_wasmtime_serve(component: &str) -> Option<(std::process::Child, u16)> {
    let cli = std::env::var("WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/wasmtime-cli/bin/wasmtime"));
    if !cli.exists() {
        return None;
    }
    // A free port, then ours to give: the CLI's "Serving HTTP" line is not flushed to a pipe.
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    // `-Scli`: the component is a Rust program whose std imports wasi:cli, as wasmcell links it.
    let child = Command::new(cli)
        .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}"), component])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let ready = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if !ready {
        return None;
    }
    Some((child, port))
}

fn main() {
    let seconds: u64 = std::env::var("WASMCELL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let time = Duration::from_secs(seconds);
    let component = component();
    let cache = root().join("target/bench-cache");
    let (mut served, port) = http::spawn_wasmcell_serve(&component, &cache.to_string_lossy());
    let mut servers = vec![("wasmcell serve", port)];
    let mut cli = spawn_wasmtime_serve(&component);
    match &cli {
        Some((_, port)) => servers.push(("wasmtime serve", *port)),
        None => eprintln!("no wasmtime 48.0.8 CLI at hand: comparing with the in-process reference only"),
    }
    servers.push(("wasi-http+hyper", http::spawn_host_serve(&component)));
    println!("GET / on keep-alive connections, {seconds} s per point: requests/s, p50 / p99 latency (µs)");
    print!("{:<12}", "connections");
    for (name, _) in &servers {
        print!(" {name:>30}");
    }
    println!(" {:>8}", "ratio");
    for connections in [1, 16, 64] {
        print!("{connections:<12}");
        let mut rates = Vec::new();
        for (_, port) in &servers {
            let (rate, p50, p99) = measure(*port, connections, time);
            print!(" {:>30}", format!("{rate:.0} req/s {p50:.0} / {p99:.0}"));
            rates.push(rate);
        }
        // wasmcell against the first reference (the CLI when there is one).
        println!(" {:>8.2}", rates[0] / rates[1]);
    }
    for child in [Some(&mut served), cli.as_mut().map(|(c, _)| c)].into_iter().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
