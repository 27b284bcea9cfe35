//! TCP through the socket device against host wasmtime, side by side in one run: the
//! `tcp_echo` component (`images/samples`) serves on loopback in a wasmcell microVM
//! (`wasmcell run --inherit-network`) and in host wasmtime + wasmtime-wasi with the host's
//! network (in this process, as `wasmtime run -S inherit-network` runs it). Measured from the
//! client side: round trips of 64 bytes on one connection (latency: each costs the guest a
//! receive, a send and a poll), and 8 MiB pushed through one connection and back (throughput).
//! `WASMCELL_BENCH_RUNS` sets the round trips (default 2000). `docs/perf.md` quotes the output.

// The tests' host reference: the same component in wasmtime + wasmtime-wasi, in this process.
#[path = "../tests/host_network/mod.rs"]
mod host_network;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn component() -> String {
    let status = Command::new(root().join("images/build.sh")).stdout(Stdio::null()).status().expect("images/build.sh");
    assert!(status.success(), "images/build.sh failed");
    root().join("target/images/wasm32-wasip2/release/tcp_echo.wasm").to_string_lossy().into_owned()
}

/// µs per round trip of 64 bytes, and MiB/s for 8 MiB echoed, against the server on `port`
/// (which serves two connections and exits).
fn measure(port: u16, round_trips: usize) -> (f64, f64) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (message, mut back) = ([7u8; 64], [0u8; 64]);
    for _ in 0..round_trips / 10 {
        stream.write_all(&message).unwrap();
        stream.read_exact(&mut back).unwrap();
    }
    let began = Instant::now();
    for _ in 0..round_trips {
        stream.write_all(&message).unwrap();
        stream.read_exact(&mut back).unwrap();
    }
    let latency = began.elapsed().as_secs_f64() * 1e6 / round_trips as f64;
    drop(stream);

    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let total = 8 << 20;
    let mut writer = stream.try_clone().unwrap();
    let began = Instant::now();
    let push = std::thread::spawn(move || {
        let chunk = vec![1u8; 64 * 1024];
        for _ in 0..total / chunk.len() {
            writer.write_all(&chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = stream;
    loop {
        match reader.read(&mut buf).unwrap() {
            0 => break,
            n => received += n,
        }
    }
    push.join().unwrap();
    assert_eq!(received, total);
    (latency, total as f64 / (1 << 20) as f64 / began.elapsed().as_secs_f64())
}

fn wasmcell(component: &str, round_trips: usize) -> (f64, f64) {
    let wasmcell = root().join("target/release/wasmcell");
    let mut server = Command::new(wasmcell)
        .args(["run", "--inherit-network", component, "--", "127.0.0.1:0", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run wasmcell");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().trim_start_matches("listening on ").parse().unwrap();
    let figures = measure(port, round_trips);
    assert!(server.wait().unwrap().success());
    figures
}

fn host(component: &str, round_trips: usize) -> (f64, f64) {
    let (server, stdout) = host_network::spawn_on_host(component, &["127.0.0.1:0", "2"]);
    let figures = measure(host_network::host_port(&stdout), round_trips);
    assert_eq!(server.join().unwrap(), 0);
    figures
}

fn main() {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: the benchmark boots real microVMs");
    let round_trips = std::env::var("WASMCELL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let component = component();
    let (cell_latency, cell_rate) = wasmcell(&component, round_trips);
    let (host_latency, host_rate) = host(&component, round_trips);
    println!("tcp echo, 64-byte round trips ({round_trips}), one connection:");
    println!(
        "  wasmcell {cell_latency:.1} µs, host wasmtime {host_latency:.1} µs ({:.2}×)",
        cell_latency / host_latency
    );
    println!("tcp echo, 8 MiB through one connection and back:");
    println!("  wasmcell {cell_rate:.0} MiB/s, host wasmtime {host_rate:.0} MiB/s ({:.2}×)", cell_rate / host_rate);
}
