//! Boot benchmark: runs `wasmcell boot` as a fresh process many times, as a user would, and
//! reports the median and spread of
//! - VM create → the guest's boot-done marker,
//! - VM create → the guest stopped (exit 0),
//! - the process's peak RSS (VMM + guest memory it touched),
//! - the whole process, fork to reap.
//!
//! `WASMCELL_BENCH_RUNS` sets the number of runs (default 200). `docs/perf.md` quotes its output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

struct Sample {
    boot_ms: f64,
    run_ms: f64,
    rss_kib: f64,
    process_ms: f64,
}

// The child is reaped with wait4, not `Child::wait`, to get its resource usage.
#[allow(clippy::zombie_processes)]
fn run_once(args: &[&str]) -> Sample {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasmcell");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; the pid is our own un-reaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; wait4 writes only to `status` and `usage`.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let process_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "wasmcell failed: {err}");
    let timing = err.lines().find(|l| l.contains("VM create → boot-done")).expect("timing line");
    let millis = |after: &str| -> f64 {
        let rest = timing.split(after).nth(1).expect("field");
        rest.split(' ').next().unwrap().parse().expect("number")
    };
    Sample { boot_ms: millis("boot "), run_ms: millis(", run "), rss_kib: usage.ru_maxrss as f64, process_ms }
}

fn report(name: &str, unit: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<34} median {:>8.3} {unit}  p10 {:>8.3}  p90 {:>8.3}  min {:>8.3}  max {:>8.3}",
        at(0.5),
        at(0.1),
        at(0.9),
        values[0],
        values[values.len() - 1]
    );
}

fn scenario(title: &str, args: &[&str], runs: usize) {
    // Warm the page cache and the binary before measuring.
    for _ in 0..5 {
        run_once(args);
    }
    let samples: Vec<Sample> = (0..runs).map(|_| run_once(args)).collect();
    println!("{title} ({runs} runs: wasmcell {})", args.join(" "));
    report("  VM create → boot-done", "ms", samples.iter().map(|s| s.boot_ms).collect());
    report("  VM create → guest stopped", "ms", samples.iter().map(|s| s.run_ms).collect());
    report("  whole process (spawn → reap)", "ms", samples.iter().map(|s| s.process_ms).collect());
    report("  peak RSS of the VMM process", "MiB", samples.iter().map(|s| s.rss_kib / 1024.0).collect());
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let runs = std::env::var("WASMCELL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    assert!(std::path::Path::new("/dev/kvm").exists(), "/dev/kvm is missing: the benchmark boots real microVMs");
    scenario("idle guest, no log", &["boot", "--quiet"], runs);
    scenario("idle guest, one log line (60 bytes over the 16550)", &["boot"], runs / 4);
}
