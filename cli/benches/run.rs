//! `wasmcell run` against host wasmtime, side by side in one run (issue targets in brackets):
//! - hello, whole process, warm caches on both sides  [wasmcell ≤ 2× host]
//! - CPU-bound modules, time in `_start`: n-body (float), sha256 (integer)  [≤ 1.10× host]
//! - 100 000 one-byte `fd_write`s to /dev/null: cost per WASI call that leaves the sandbox
//! - files (`--dir`): a 16 MiB read, 10 000 small-file opens, a 16 MiB write; whole process
//!   (wasmcell packs the directory at start) and time in `_start`
//!
//! The host side is `examples/host_run.rs` (std wasmtime + wasmtime-wasi, default settings, the
//! module precompiled for the host as `wasmtime run` does with its cache). `WASMCELL_BENCH_RUNS`
//! sets the hello runs (default 40). `docs/perf.md` quotes the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo(args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo).args(args).current_dir(root()).status().expect("run cargo");
    assert!(status.success(), "cargo {args:?} failed");
}

fn sample(name: &str) -> String {
    root().join(format!("target/images/wasm32-wasip1/release/{name}.wasm")).to_string_lossy().into_owned()
}

/// Runs a command with stdout to /dev/null; returns (wall ms, stderr).
fn time(program: &str, args: &[&str], envs: &[(&str, &str)]) -> (f64, String) {
    let began = Instant::now();
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    let ms = began.elapsed().as_secs_f64() * 1e3;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{program} {args:?} failed: {err}");
    (ms, err)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Milliseconds after `marker` in `stderr`.
fn field(stderr: &str, marker: &str) -> f64 {
    let rest = stderr.split(marker).nth(1).unwrap_or_else(|| panic!("no {marker:?} in {stderr}"));
    rest.trim_start().split(' ').next().unwrap().parse().unwrap()
}

fn main() {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: the benchmark boots real microVMs");
    cargo(&["build", "--release", "-p", "wasmcell", "--example", "host_run"]);
    let built = Command::new(root().join("images/build.sh")).stdout(std::process::Stdio::null()).status();
    assert!(built.expect("run images/build.sh").success(), "building the samples failed");
    let wasmcell = env!("CARGO_BIN_EXE_wasmcell");
    let host = root().join("target/release/examples/host_run").to_string_lossy().into_owned();
    let cache = std::env::temp_dir().join("wasmcell-bench-cache");
    let cache = cache.to_string_lossy().into_owned();
    let runs = std::env::var("WASMCELL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);

    // Host "warm cache": the module precompiled for the host engine once.
    let host_cwasm = |name: &str| {
        let engine = wasmtime::Engine::default();
        let artifact = engine.precompile_module(&std::fs::read(sample(name)).unwrap()).unwrap();
        let path = std::env::temp_dir().join(format!("wasmcell-bench-{name}.host.cwasm"));
        std::fs::write(&path, artifact).unwrap();
        path.to_string_lossy().into_owned()
    };
    let run_args = |name: &str, rest: &[&str]| -> Vec<String> {
        let mut v = vec!["run".to_string(), "--cache-dir".into(), cache.clone(), "--stats".into(), sample(name)];
        if !rest.is_empty() {
            v.push("--".into());
            v.extend(rest.iter().map(|s| s.to_string()));
        }
        v
    };

    // 1. hello, whole process.
    let hello_host = host_cwasm("hello");
    let hello_args = run_args("hello", &[]);
    let hello_args: Vec<&str> = hello_args.iter().map(String::as_str).collect();
    time(wasmcell, &hello_args, &[]); // warm the cache
    let guest: Vec<f64> = (0..runs).map(|_| time(wasmcell, &hello_args, &[]).0).collect();
    let reference: Vec<f64> = (0..runs).map(|_| time(&host, &[&hello_host], &[]).0).collect();
    let (g, h) = (median(guest), median(reference));
    println!("hello, whole process ({runs} runs, warm caches)");
    println!("  wasmcell run   median {g:8.3} ms");
    println!("  host wasmtime  median {h:8.3} ms");
    println!("  ratio {:.2}x", g / h);

    // 2. CPU-bound, time in `_start` (guest: VM run time minus boot time).
    for (name, args) in [("nbody", &["5000000"][..]), ("sha256", &["64", "1"][..])] {
        let cwasm = host_cwasm(name);
        let guest_args = run_args(name, args);
        let guest_args: Vec<&str> = guest_args.iter().map(String::as_str).collect();
        time(wasmcell, &guest_args, &[]);
        let mut host_args = vec![cwasm.as_str()];
        host_args.extend_from_slice(args);
        let mut guest_ms = Vec::new();
        let mut host_ms = Vec::new();
        for _ in 0..3 {
            let (_, err) = time(wasmcell, &guest_args, &[]);
            guest_ms.push(field(&err, ", run ") - field(&err, "boot "));
            let (_, err) = time(&host, &host_args, &[("HOST_RUN_STATS", "1")]);
            host_ms.push(field(&err, "_start"));
        }
        let (g, h) = (median(guest_ms), median(host_ms));
        println!("{name} {}: time in _start, median of 3", args.join(" "));
        println!("  wasmcell guest {g:8.1} ms");
        println!("  host wasmtime  {h:8.1} ms");
        println!("  ratio {:.3}x", g / h);
    }

    // 3. WASI call cost: 100 000 one-byte fd_writes to /dev/null.
    let cwasm = host_cwasm("fd_write_loop");
    let guest_args = run_args("fd_write_loop", &["100000"]);
    let guest_args: Vec<&str> = guest_args.iter().map(String::as_str).collect();
    time(wasmcell, &guest_args, &[]);
    let (_, err) = time(wasmcell, &guest_args, &[]);
    let g = field(&err, ", run ") - field(&err, "boot ");
    let (_, err) = time(&host, &[&cwasm, "100000"], &[("HOST_RUN_STATS", "1")]);
    let h = field(&err, "_start");
    println!("100000 one-byte fd_write to /dev/null: time in _start");
    println!("  wasmcell guest {g:8.1} ms ({:.2} us per call)", g / 100.0);
    println!("  host wasmtime  {h:8.1} ms ({:.2} us per call)", h / 100.0);
    println!("  ratio {:.1}x", g / h);

    // 4. Files through a preopened directory: a `--dir` snapshot, then a write-through
    //    `--volume` (the file device; host wasmtime's `--dir` writes through too).
    for how in ["--dir", "--volume"] {
        files(wasmcell, &host, &host_cwasm("file_io"), &run_args("file_io", &[]), how);
    }
}

/// `file_io` with `/data` given by `how`: whole process and time in `_start`, median of 5,
/// and the workload's VM exits.
fn files(wasmcell: &str, host: &str, cwasm: &str, run_args: &[String], how: &str) {
    let data = std::env::temp_dir().join(format!("wasmcell-bench-files-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("blob"), vec![7u8; 16 << 20]).unwrap();
    std::fs::write(data.join("small.txt"), "a small file\n").unwrap();
    let dir = format!("{}::/data", data.display());
    let mut guest_args = run_args.to_vec();
    guest_args.splice(1..1, [how.to_string(), dir.clone()]);
    let guest_args: Vec<&str> = guest_args.iter().map(String::as_str).collect();
    time(wasmcell, &guest_args, &[]);
    let (mut guest_whole, mut guest_start, mut host_whole, mut host_start) = (vec![], vec![], vec![], vec![]);
    let mut exits = 0.0;
    for _ in 0..5 {
        let (ms, err) = time(wasmcell, &guest_args, &[]);
        guest_whole.push(ms);
        guest_start.push(field(&err, ", run ") - field(&err, "boot "));
        exits = field(&err, "stop), ");
        let (ms, err) = time(host, &[cwasm], &[("HOST_RUN_STATS", "1"), ("HOST_RUN_DIR", &dir)]);
        host_whole.push(ms);
        host_start.push(field(&err, "_start"));
    }
    std::fs::remove_dir_all(&data).unwrap();
    println!("files ({how}): 16 MiB read, 10000 small-file opens, 16 MiB write; median of 5");
    println!(
        "  wasmcell       whole {:8.1} ms, in _start {:8.1} ms, {exits} VM exits",
        median(guest_whole.clone()),
        median(guest_start.clone())
    );
    println!(
        "  host wasmtime  whole {:8.1} ms, in _start {:8.1} ms",
        median(host_whole.clone()),
        median(host_start.clone())
    );
    println!("  ratio in _start {:.2}x", median(guest_start) / median(host_start));
}
