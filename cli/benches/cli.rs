//! `wasmcell run` against the `wasmtime run` CLI (48.0.8, the version the guest embeds), whole
//! processes side by side, alternating, in one run: wall time and peak memory (max RSS) for
//! hello, n-body (5 M steps), sha256 (64 MiB) and 100 000 one-byte `fd_write`s to /dev/null, each
//! as a WASI preview 1 module and as a WASI 0.2 component (`p2` rows: the same source built for
//! `wasm32-wasip2`).
//! Both sides warm: wasmcell's compilation cache, and wasmtime's module precompiled once and run
//! with `--allow-precompiled` (what its cache gives).
//!
//! The CLI is `$WASMTIME` if set, else `wasmtime` on PATH if it is 48.0.8, else installed into
//! `target/wasmtime-cli` with `cargo install` (once; ~15 minutes on 2 cores).
//! `WASMCELL_BENCH_RUNS` sets the hello runs (default 40). `docs/perf.md` quotes the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const WASMTIME_VERSION: &str = "48.0.8";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Sample `name` built for `target` (`wasm32-wasip1`: a module; `wasm32-wasip2`: a component).
fn sample(target: &str, name: &str) -> String {
    root().join(format!("target/images/{target}/release/{name}.wasm")).to_string_lossy().into_owned()
}

/// The `wasmtime` CLI of the right version, installed if missing.
fn wasmtime_cli() -> String {
    if let Ok(path) = std::env::var("WASMTIME") {
        return path;
    }
    let version_of = |program: &str| {
        Command::new(program).arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if version_of("wasmtime").is_some_and(|v| v.contains(WASMTIME_VERSION)) {
        return "wasmtime".into();
    }
    let install = root().join("target/wasmtime-cli");
    let installed = install.join("bin/wasmtime").to_string_lossy().into_owned();
    if !version_of(&installed).is_some_and(|v| v.contains(WASMTIME_VERSION)) {
        eprintln!("installing wasmtime-cli {WASMTIME_VERSION} into {}", install.display());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["install", "wasmtime-cli", "--locked", "--version", WASMTIME_VERSION, "--root"])
            .arg(&install)
            .status()
            .expect("run cargo install");
        assert!(status.success(), "cannot install wasmtime-cli {WASMTIME_VERSION}");
    }
    installed
}

/// Runs a command to its end with stdout to /dev/null: (wall ms, max RSS in KiB).
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its peak memory
fn measure(program: &str, args: &[&str]) -> (f64, u64) {
    let began = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for this child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid for the call.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let ms = began.elapsed().as_secs_f64() * 1e3;
    assert_eq!(waited, child.id() as libc::pid_t);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{program} {args:?} failed");
    (ms, usage.ru_maxrss as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: the benchmark boots real microVMs");
    let status = Command::new(root().join("images/build.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run images/build.sh");
    assert!(status.success(), "building the samples failed");
    let wasmtime = wasmtime_cli();
    let wasmcell = env!("CARGO_BIN_EXE_wasmcell");
    let scratch = std::env::temp_dir().join(format!("wasmcell-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let cache = scratch.join("cache").to_string_lossy().into_owned();
    let runs: usize = std::env::var("WASMCELL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);

    println!("whole processes, median (wall ms) and peak memory (max RSS MiB); wasmtime {WASMTIME_VERSION}");
    println!("{:<40} {:>12} {:>12} {:>7} {:>10} {:>10}", "", "wasmcell", "wasmtime", "ratio", "RSS wc", "RSS wt");
    let cases = [
        ("hello", &[][..], runs),
        ("nbody", &["5000000"][..], 5),
        ("sha256", &["64", "1"][..], 5),
        ("fd_write_loop", &["100000"][..], 5),
    ];
    let kinds = [("", "wasm32-wasip1"), (" p2", "wasm32-wasip2")];
    for ((name, args, count), (kind, target)) in cases.iter().flat_map(|case| kinds.iter().map(move |k| (case, k))) {
        let (name, count) = (*name, *count);
        let module = sample(target, name);
        let cwasm = scratch.join(format!("{name}-{target}.cwasm")).to_string_lossy().into_owned();
        measure(&wasmtime, &["compile", &module, "-o", &cwasm]);
        let mut ours = vec!["run", "--cache-dir", cache.as_str(), module.as_str(), "--"];
        ours.extend_from_slice(args);
        let mut theirs = vec!["run", "--allow-precompiled", cwasm.as_str()];
        theirs.extend_from_slice(args);
        measure(wasmcell, &ours); // warms the cache
        let (mut a, mut b, mut rss_a, mut rss_b) = (vec![], vec![], 0, 0);
        for _ in 0..count {
            let (ms, rss) = measure(wasmcell, &ours);
            a.push(ms);
            rss_a = rss_a.max(rss);
            let (ms, rss) = measure(&wasmtime, &theirs);
            b.push(ms);
            rss_b = rss_b.max(rss);
        }
        let (a, b) = (median(a), median(b));
        let label = format!("{name}{kind} {} ({count} runs)", args.join(" "));
        println!(
            "{label:<40} {a:>12.2} {b:>12.2} {:>6.2}x {:>10.1} {:>10.1}",
            a / b,
            rss_a as f64 / 1024.0,
            rss_b as f64 / 1024.0
        );
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}
